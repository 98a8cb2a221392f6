//! The reply line: `[<stamp>] <line>\n`, or `error: <reason>\n` when the server
//! refuses something. Both sides of the wire use this module, so the format is
//! written in one place and read in one place.

/// Replies that report a problem instead of echoing start with this.
pub const ERROR_PREFIX: &str = "error: ";

/// Appends `[<stamp>] <line>\n` to `out`.
#[inline]
pub fn write_stamped(out: &mut Vec<u8>, stamp: &str, line: &[u8]) {
    out.reserve(stamp.len() + line.len() + 4);
    out.push(b'[');
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Appends `[<stamp>] <data>` with no newline added: the tutorial's raw framing.
#[inline]
pub fn write_raw(out: &mut Vec<u8>, stamp: &str, data: &[u8]) {
    out.reserve(stamp.len() + data.len() + 3);
    out.push(b'[');
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(data);
}

/// One reply line (without its newline), as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// An echo: the stamp text and the echoed text.
    Stamped { stamp: &'a str, text: &'a str },
    /// The server refused something; the reason is meant for people.
    Error(&'a str),
    /// Anything else (another server's output).
    Other(&'a str),
}

impl<'a> Reply<'a> {
    pub fn parse(line: &'a str) -> Reply<'a> {
        if let Some(reason) = line.strip_prefix(ERROR_PREFIX) {
            return Reply::Error(reason);
        }
        // The built-in stamp formats never contain "] ", so the first one ends it.
        if let Some(rest) = line.strip_prefix('[') {
            if let Some((stamp, text)) = rest.split_once("] ") {
                return Reply::Stamped { stamp, text };
            }
            if let Some(stamp) = rest.strip_suffix(']') {
                return Reply::Stamped { stamp, text: "" };
            }
        }
        Reply::Other(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_reply_round_trips() {
        let mut out = Vec::new();
        write_stamped(&mut out, "Tue Nov 24 21:35:36 2026", b"hello [x] y");
        assert_eq!(out, b"[Tue Nov 24 21:35:36 2026] hello [x] y\n");
        let line = std::str::from_utf8(&out[..out.len() - 1]).unwrap();
        assert_eq!(
            Reply::parse(line),
            Reply::Stamped {
                stamp: "Tue Nov 24 21:35:36 2026",
                text: "hello [x] y"
            }
        );
    }

    #[test]
    fn stamped_reply_is_appended_after_what_is_already_buffered() {
        let mut out = b"[a] 1\n".to_vec();
        write_stamped(&mut out, "b", b"");
        assert_eq!(out, b"[a] 1\n[b] \n");
    }

    #[test]
    fn raw_reply_is_the_stamp_and_the_bytes_as_they_came() {
        let mut out = b"[a] 1".to_vec();
        write_raw(&mut out, "1793783101.005", b"\x00\xffno newline\r");
        assert_eq!(out, b"[a] 1[1793783101.005] \x00\xffno newline\r");
    }

    /// A reply is sized before it is written: one allocation of exactly its
    /// length into an empty buffer, none into a buffer that has the room.
    #[test]
    fn replies_reserve_their_exact_length_up_front() {
        type Write = fn(&mut Vec<u8>, &str, &[u8]);
        let stamp = "Tue Nov 24 21:35:36 2026";
        let line = b"twenty bytes of text";
        let cases: [(&str, Write, usize); 2] = [
            ("write_stamped", write_stamped, stamp.len() + line.len() + 4),
            ("write_raw", write_raw, stamp.len() + line.len() + 3),
        ];
        for (name, write, len) in cases {
            let mut out = Vec::new();
            write(&mut out, stamp, line);
            assert_eq!(out.len(), len, "{name}");
            assert_eq!(
                out.capacity(),
                Vec::<u8>::with_capacity(len).capacity(),
                "{name} sized the buffer wrongly or grew it while writing"
            );

            let mut out = Vec::with_capacity(len);
            let before = (out.as_ptr(), out.capacity());
            write(&mut out, stamp, line);
            assert_eq!(
                (out.as_ptr(), out.capacity()),
                before,
                "{name} reallocated a buffer that had room for the reply"
            );
        }
    }

    #[test]
    fn errors_and_foreign_lines_are_told_apart() {
        assert_eq!(Reply::parse("error: too long"), Reply::Error("too long"));
        assert_eq!(Reply::parse("hello"), Reply::Other("hello"));
        assert_eq!(
            Reply::parse("[x]"),
            Reply::Stamped {
                stamp: "x",
                text: ""
            }
        );
    }
}
