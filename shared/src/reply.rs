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

/// One reply line (without its newline), as a client that shows text sees it.
/// A view of [`ReplyBytes`] for a line already known to be UTF-8 (the page's
/// text frames).
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
        // Every part the byte parser returns ends where the line ends, so it is
        // the same-length tail of `line`: no second UTF-8 check, no unwrap.
        let tail = |part: &[u8]| &line[line.len() - part.len()..];
        match ReplyBytes::parse(line.as_bytes()) {
            ReplyBytes::Stamped { stamp, text } => Reply::Stamped {
                stamp,
                text: tail(text),
            },
            ReplyBytes::Error(reason) => Reply::Error(tail(reason)),
            ReplyBytes::Other(_) => Reply::Other(line),
        }
    }
}

/// One reply line (without its newline) as bytes: the server echoes bytes
/// exactly, so the echoed text need not be UTF-8. The one parser of replies
/// for the client, the load generator and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBytes<'a> {
    /// An echo: the stamp (the server writes it, so it is text) and the echoed bytes.
    Stamped { stamp: &'a str, text: &'a [u8] },
    /// The server refused something; the reason is meant for people.
    Error(&'a [u8]),
    /// Anything else (another server's output, or a stamp that is not UTF-8).
    Other(&'a [u8]),
}

impl<'a> ReplyBytes<'a> {
    pub fn parse(line: &'a [u8]) -> ReplyBytes<'a> {
        if let Some(reason) = line.strip_prefix(ERROR_PREFIX.as_bytes()) {
            return ReplyBytes::Error(reason);
        }
        let Some(rest) = line.strip_prefix(b"[") else {
            return ReplyBytes::Other(line);
        };
        // The built-in stamp formats never contain "] ", so the first one ends it.
        let (stamp, text) = match rest.windows(2).position(|w| w == b"] ") {
            Some(end) => (&rest[..end], &rest[end + 2..]),
            None => match rest.strip_suffix(b"]") {
                Some(stamp) => (stamp, &rest[rest.len()..]),
                None => return ReplyBytes::Other(line),
            },
        };
        match std::str::from_utf8(stamp) {
            Ok(stamp) => ReplyBytes::Stamped { stamp, text },
            Err(_) => ReplyBytes::Other(line),
        }
    }

    /// The echoed bytes, if this is an echo.
    pub fn echoed(&self) -> Option<&'a [u8]> {
        match *self {
            ReplyBytes::Stamped { text, .. } => Some(text),
            ReplyBytes::Error(_) | ReplyBytes::Other(_) => None,
        }
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

    #[test]
    fn text_view_keeps_the_parts_of_the_line() {
        assert_eq!(
            Reply::parse("[st] é] x"),
            Reply::Stamped {
                stamp: "st",
                text: "é] x"
            }
        );
        assert_eq!(Reply::parse("error: ü"), Reply::Error("ü"));
        assert_eq!(Reply::parse("[x"), Reply::Other("[x"));
        assert_eq!(Reply::parse(""), Reply::Other(""));
    }

    #[test]
    fn byte_replies_keep_text_that_is_not_utf8() {
        assert_eq!(
            ReplyBytes::parse(b"[Tue Nov 24 21:35:36 2026] \x00\xff] y"),
            ReplyBytes::Stamped {
                stamp: "Tue Nov 24 21:35:36 2026",
                text: b"\x00\xff] y"
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[1793783101.005] "),
            ReplyBytes::Stamped {
                stamp: "1793783101.005",
                text: b""
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[ab]"),
            ReplyBytes::Stamped {
                stamp: "ab",
                text: b""
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[]"),
            ReplyBytes::Stamped {
                stamp: "",
                text: b""
            }
        );
    }

    #[test]
    fn byte_replies_that_are_not_echoes_are_told_apart() {
        assert_eq!(
            ReplyBytes::parse(b"error: line longer than 4 bytes"),
            ReplyBytes::Error(b"line longer than 4 bytes")
        );
        assert_eq!(ReplyBytes::parse(b"error:x"), ReplyBytes::Other(b"error:x"));
        assert_eq!(ReplyBytes::parse(b"hello"), ReplyBytes::Other(b"hello"));
        assert_eq!(ReplyBytes::parse(b""), ReplyBytes::Other(b""));
        assert_eq!(ReplyBytes::parse(b"[x"), ReplyBytes::Other(b"[x"));
        assert_eq!(
            ReplyBytes::parse(b"[no space]x"),
            ReplyBytes::Other(b"[no space]x")
        );
        // A stamp is the server's text; one that is not UTF-8 is no stamp.
        assert_eq!(
            ReplyBytes::parse(b"[\xff] hi"),
            ReplyBytes::Other(b"[\xff] hi")
        );
    }

    #[test]
    fn only_echoes_have_echoed_bytes() {
        assert_eq!(ReplyBytes::parse(b"[s] \xfe").echoed(), Some(&b"\xfe"[..]));
        assert_eq!(ReplyBytes::parse(b"[s]").echoed(), Some(&b""[..]));
        assert_eq!(ReplyBytes::parse(b"error: no").echoed(), None);
        assert_eq!(ReplyBytes::parse(b"s] x").echoed(), None);
    }
}
