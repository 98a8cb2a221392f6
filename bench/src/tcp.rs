//! Load over plain TCP: a request is `<payload>\n`, a reply `[<stamp>] <payload>\n`.

use timecho_shared::{Frame, LineDecoder};

use super::session::{Codec, ProtocolError, REPLY_OVERHEAD};

/// Newline framing, with the same decoder the server uses.
pub struct LineCodec {
    decoder: LineDecoder,
}

impl LineCodec {
    /// Replies longer than a `size`-byte payload plus any stamp are reported as too long.
    pub fn new(size: usize) -> LineCodec {
        LineCodec {
            decoder: LineDecoder::new(size + REPLY_OVERHEAD),
        }
    }
}

impl Codec for LineCodec {
    #[inline]
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(payload);
        out.push(b'\n');
    }

    #[inline]
    fn decode<F: FnMut(Frame<'_>)>(
        &mut self,
        input: &[u8],
        _control: &mut Vec<u8>,
        mut on_reply: F,
    ) -> Result<usize, ProtocolError> {
        let mut frames = self.decoder.frames(input);
        for frame in &mut frames {
            on_reply(frame);
        }
        Ok(frames.consumed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_across_reads_are_reassembled() {
        let mut codec = LineCodec::new(16);
        let mut control = Vec::new();
        let mut lines = Vec::new();
        let mut input = b"[t] one\n[t] tw".to_vec();
        let used = codec
            .decode(&input, &mut control, |f| lines.push(format!("{f:?}")))
            .unwrap();
        assert_eq!(used, 8);
        input.drain(..used);
        input.extend_from_slice(b"o\r\n");
        let used = codec
            .decode(&input, &mut control, |f| lines.push(format!("{f:?}")))
            .unwrap();
        assert_eq!(used, input.len());
        assert_eq!(
            lines,
            [
                format!("{:?}", Frame::Line(b"[t] one")),
                format!("{:?}", Frame::Line(b"[t] two"))
            ]
        );
        assert!(control.is_empty());
    }

    #[test]
    fn requests_end_in_a_newline() {
        let mut out = Vec::new();
        LineCodec::new(5).encode(b"hello", &mut out);
        assert_eq!(out, b"hello\n");
    }
}
