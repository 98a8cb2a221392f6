//! Newline framing over a byte buffer the caller owns.
//!
//! Lines are bytes, not text: the server echoes whatever it was sent, UTF-8 or not,
//! so the decoder hands out borrowed slices and never allocates. The length limit
//! lives here (as in `tokio_util::codec::LinesCodec`) so every user of the framing,
//! server, gateway and client alike, enforces it the same way.

use std::ops::Range;

use memchr::memchr;

/// Default maximum line length in bytes, terminator excluded.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// One thing found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its `\n` or `\r\n`.
    Line(&'a [u8]),
    /// A line longer than the limit. Reported once; its bytes are skipped up to
    /// and including the next newline, so the stream stays usable afterwards.
    TooLong,
}

/// Where one [`Frame`] lies in the buffer it was found in, for callers that
/// keep the buffer (as shared `Bytes`) and cut frames out of it by range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// The bytes of a complete line, without its `\n` or `\r\n`.
    Line(Range<usize>),
    /// A line longer than the limit; see [`Frame::TooLong`].
    TooLong,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
///
/// The decoder keeps only a few words of state, so the caller decides how bytes
/// are buffered: feed it the unconsumed part of the buffer, iterate the frames,
/// then drop [`Frames::consumed`] bytes from the front.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    max_len: usize,
    discarding: bool,
    /// How many bytes at the front of the pending partial line are known to hold
    /// no newline, so a long line trickling in is scanned once, not once per read.
    scanned: usize,
}

impl LineDecoder {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            discarding: false,
            scanned: 0,
        }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The most bytes a caller ever needs to buffer: a full line, `\r\n`, and one
    /// more byte to tell that the line is too long.
    pub fn buffer_limit(&self) -> usize {
        self.max_len + 3
    }

    /// True while the rest of an over-long line is being skipped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Iterates the complete frames at the start of `buf`.
    pub fn frames<'d, 'a>(&'d mut self, buf: &'a [u8]) -> Frames<'d, 'a> {
        Frames {
            decoder: self,
            buf,
            pos: 0,
        }
    }

    /// Ends the pending partial line early (end of stream, or the peer went
    /// quiet mid-line) and returns it as a line. `buf` is the unconsumed input;
    /// all of it is consumed.
    pub fn take_partial<'a>(&mut self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.take_partial_span(buf).map(|r| &buf[r])
    }

    /// [`take_partial`](Self::take_partial), as the range of `buf` it covers.
    pub fn take_partial_span(&mut self, buf: &[u8]) -> Option<Range<usize>> {
        self.scanned = 0;
        if self.discarding || buf.is_empty() {
            return None;
        }
        Some(0..strip_cr(buf).len())
    }
}

/// Iterator over the frames of one buffer; see [`LineDecoder::frames`].
pub struct Frames<'d, 'a> {
    decoder: &'d mut LineDecoder,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'_, 'a> {
    /// Bytes of the buffer that are used up and can be dropped by the caller.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'_, 'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        let buf = self.buf;
        self.next_span().map(|span| match span {
            Span::Line(r) => Frame::Line(&buf[r]),
            Span::TooLong => Frame::TooLong,
        })
    }
}

impl Frames<'_, '_> {
    /// The next frame as a [`Span`] of the buffer.
    pub fn next_span(&mut self) -> Option<Span> {
        let d = &mut *self.decoder;
        loop {
            let rest = &self.buf[self.pos..];
            if d.discarding {
                match memchr(b'\n', rest) {
                    Some(i) => {
                        self.pos += i + 1;
                        d.discarding = false;
                        continue;
                    }
                    None => {
                        self.pos = self.buf.len();
                        return None;
                    }
                }
            }
            let from = d.scanned.min(rest.len());
            match memchr(b'\n', &rest[from..]) {
                Some(i) => {
                    let start = self.pos;
                    let end = from + i;
                    self.pos += end + 1;
                    d.scanned = 0;
                    let len = strip_cr(&rest[..end]).len();
                    return Some(if len > d.max_len {
                        Span::TooLong
                    } else {
                        Span::Line(start..start + len)
                    });
                }
                None => {
                    d.scanned = rest.len();
                    // A trailing `\r` may still be the first half of a `\r\n`.
                    let len = rest.len() - usize::from(rest.last() == Some(&b'\r'));
                    if len > d.max_len {
                        d.discarding = true;
                        d.scanned = 0;
                        self.pos = self.buf.len();
                        return Some(Span::TooLong);
                    }
                    return None;
                }
            }
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one at a time through a caller-side buffer, the way the
    /// server does, and returns what the peer would be answered, including the
    /// partial line at end of stream.
    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, ()>> {
        let mut d = LineDecoder::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let mut frames = d.frames(&buf);
            for (n, f) in (&mut frames).enumerate() {
                // Each frame uses up at least one byte; more frames than bytes
                // means a decoder that stopped advancing (and would loop forever).
                assert!(n < buf.len(), "more frames than bytes in {buf:?}");
                out.push(owned(f));
            }
            let used = frames.consumed();
            buf.drain(..used);
            assert!(buf.len() < d.buffer_limit(), "buffer must stay bounded");
        }
        if let Some(l) = d.take_partial(&buf) {
            out.push(Ok(l.to_vec()));
        }
        out
    }

    fn owned(f: Frame) -> Result<Vec<u8>, ()> {
        match f {
            Frame::Line(l) => Ok(l.to_vec()),
            Frame::TooLong => Err(()),
        }
    }

    /// The frames of one buffer, bounded like [`decode_chunks`].
    fn frames_of<'a>(d: &mut LineDecoder, buf: &'a [u8]) -> Vec<Frame<'a>> {
        let frames: Vec<_> = d.frames(buf).take(buf.len() + 1).collect();
        assert!(frames.len() <= buf.len(), "more frames than bytes");
        frames
    }

    #[test]
    fn default_limit_is_the_64_kib_the_readme_promises() {
        assert_eq!(DEFAULT_MAX_LINE, 65_536);
    }

    #[test]
    fn max_len_is_the_longest_line_the_decoder_accepts() {
        for max in [0, 1, 2, 7, 100] {
            let mut d = LineDecoder::new(max);
            assert_eq!(d.max_len(), max);
            let longest = [vec![b'x'; d.max_len()], b"\r\n".to_vec()].concat();
            let too_long = [vec![b'x'; d.max_len() + 1], b"\r\n".to_vec()].concat();
            assert_eq!(
                frames_of(&mut d, &longest),
                [Frame::Line(&longest[..max])],
                "max {max}"
            );
            assert_eq!(frames_of(&mut d, &too_long), [Frame::TooLong], "max {max}");
        }
    }

    /// The read buffer a caller needs and all it ever has to hold: the longest
    /// line, its `\r\n`, and one byte more to tell that a line is too long.
    #[test]
    fn buffer_limit_is_the_longest_line_with_crlf_and_one_byte() {
        for max in [0, 1, 2, 100, DEFAULT_MAX_LINE] {
            assert_eq!(LineDecoder::new(max).buffer_limit(), max + 3, "max {max}");
        }
    }

    #[test]
    fn discarding_lasts_from_a_too_long_partial_line_to_its_newline() {
        let mut d = LineDecoder::new(4);
        assert!(!d.is_discarding());
        assert_eq!(frames_of(&mut d, b"abcdef"), [Frame::TooLong]);
        assert!(d.is_discarding());
        assert_eq!(frames_of(&mut d, b"more"), []);
        assert!(d.is_discarding());
        assert_eq!(frames_of(&mut d, b"end\nok\n"), [Frame::Line(b"ok")]);
        assert!(!d.is_discarding());
        // A too-long line that arrives whole has nothing left to skip.
        assert_eq!(
            frames_of(&mut d, b"abcdefgh\nok\n"),
            [Frame::TooLong, Frame::Line(b"ok")]
        );
        assert!(!d.is_discarding());
    }

    #[test]
    fn splits_lines_and_accepts_crlf() {
        let got = decode_chunks(100, &[b"a\nbb\r\nccc\n"]);
        assert_eq!(
            got,
            vec![Ok(b"a".to_vec()), Ok(b"bb".to_vec()), Ok(b"ccc".to_vec())]
        );
    }

    #[test]
    fn line_split_over_writes_is_one_line() {
        let got = decode_chunks(100, &[b"he", b"l", b"lo\r", b"\n"]);
        assert_eq!(got, vec![Ok(b"hello".to_vec())]);
    }

    #[test]
    fn bytes_come_back_exactly_even_when_not_utf8() {
        let got = decode_chunks(100, &[b"\x00\xff\xfe bin\n"]);
        assert_eq!(got, vec![Ok(b"\x00\xff\xfe bin".to_vec())]);
    }

    #[test]
    fn over_long_line_is_reported_once_and_stream_recovers() {
        let long = vec![b'x'; 50];
        let got = decode_chunks(10, &[&long, &long, b"tail\nok\n"]);
        assert_eq!(got, vec![Err(()), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn over_long_complete_line_is_reported() {
        let got = decode_chunks(3, &[b"abcd\nabc\n"]);
        assert_eq!(got, vec![Err(()), Ok(b"abc".to_vec())]);
    }

    #[test]
    fn line_of_exactly_the_limit_with_crlf_is_accepted_when_split() {
        let got = decode_chunks(3, &[b"abc\r", b"\n"]);
        assert_eq!(got, vec![Ok(b"abc".to_vec())]);
    }

    #[test]
    fn partial_line_at_end_of_stream_is_a_line() {
        let got = decode_chunks(100, &[b"a\nno newline"]);
        assert_eq!(got, vec![Ok(b"a".to_vec()), Ok(b"no newline".to_vec())]);
    }

    #[test]
    fn spans_are_ranges_of_the_buffer() {
        let mut d = LineDecoder::new(3);
        let buf = b"ab\r\nabcd\nc\nre";
        let mut frames = d.frames(buf);
        // Bounded, so a decoder that stopped advancing fails instead of hanging.
        let spans: Vec<Span> = std::iter::from_fn(|| frames.next_span()).take(9).collect();
        assert_eq!(spans, [Span::Line(0..2), Span::TooLong, Span::Line(9..10)]);
        assert_eq!(frames.consumed(), 11);
        assert_eq!(d.take_partial_span(&buf[11..]), Some(0..2));
        assert_eq!(d.take_partial_span(b"x\r"), Some(0..1));
    }

    proptest! {
        /// However a byte stream is split into writes, the decoded frames are the same.
        #[test]
        fn frames_do_not_depend_on_how_the_stream_is_split(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..20),
            max in 1usize..40,
        ) {
            let whole = decode_chunks(max, &[&data]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&data[last..c]);
                last = c;
            }
            chunks.push(&data[last..]);
            prop_assert_eq!(decode_chunks(max, &chunks), whole);
        }

        /// A caller whose read buffer is fixed at `buffer_limit()` bytes, and
        /// reads only into the free part of it, decodes the same frames as one
        /// with unbounded memory: the buffer never fills up without a frame.
        #[test]
        fn a_buffer_of_buffer_limit_bytes_is_enough(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300),
            max in 0usize..40,
        ) {
            let mut d = LineDecoder::new(max);
            let mut buf = vec![0; d.buffer_limit()];
            let (mut filled, mut fed, mut out) = (0, 0, Vec::new());
            while fed < data.len() {
                prop_assert!(filled < buf.len(), "full buffer, no frame: stalled");
                let n = (buf.len() - filled).min(data.len() - fed);
                buf[filled..filled + n].copy_from_slice(&data[fed..fed + n]);
                fed += n;
                let end = filled + n;
                let mut frames = d.frames(&buf[..end]);
                for f in (&mut frames).take(end) {
                    out.push(owned(f));
                }
                let used = frames.consumed();
                buf.copy_within(used..end, 0);
                filled = end - used;
            }
            if let Some(l) = d.take_partial(&buf[..filled]) {
                out.push(Ok(l.to_vec()));
            }
            prop_assert_eq!(out, decode_chunks(max, &[&data]));
        }
    }
}
