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

/// What the server writes before it closes a connection that was quiet for
/// its idle timeout, `error: idle for 300s; closing`: whole seconds as they
/// always were, a timeout with a fraction in milliseconds (`idle for 500ms`),
/// so a sub-second `--idle-timeout` is not reported as `0s`. The gateway reads
/// it back with [`is_idle_notice`] to close the WebSocket as routine.
pub fn write_idle_notice(out: &mut Vec<u8>, idle: core::time::Duration) {
    use std::io::Write;
    let (amount, unit) = if idle.subsec_nanos() == 0 {
        (u128::from(idle.as_secs()), "s")
    } else {
        (idle.as_millis().max(1), "ms")
    };
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        out,
        "{ERROR_PREFIX}{IDLE_NOTICE_START}{amount}{unit}{IDLE_NOTICE_END}"
    );
}

const IDLE_NOTICE_START: &str = "idle for ";
const IDLE_NOTICE_END: &str = "; closing";

/// Whether a reply line (without its newline) is the server's idle notice
/// ([`write_idle_notice`]); returns the reason, `idle for 300s; closing`.
pub fn is_idle_notice(line: &[u8]) -> Option<&str> {
    let reason = line.strip_prefix(ERROR_PREFIX.as_bytes())?;
    let amount = reason
        .strip_prefix(IDLE_NOTICE_START.as_bytes())?
        .strip_suffix(IDLE_NOTICE_END.as_bytes())?;
    let digits = amount
        .strip_suffix(b"ms")
        .or_else(|| amount.strip_suffix(b"s"))?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(reason).ok()
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
        // The byte parser cuts the line only next to ASCII bytes (`[`, `] `,
        // `error: `), so each part it returns is a str slice of `line`, found by
        // its length: no second UTF-8 check, no unwrap.
        let tail = |part: &[u8]| &line[line.len() - part.len()..];
        match ReplyBytes::parse(line.as_bytes()) {
            ReplyBytes::Stamped { stamp, text } => Reply::Stamped {
                stamp: &line[1..1 + stamp.len()],
                text: tail(text),
            },
            ReplyBytes::Error(reason) => Reply::Error(tail(reason)),
            ReplyBytes::Other(_) => Reply::Other(line),
        }
    }
}

/// One reply line (without its newline) as bytes: the server echoes bytes
/// exactly, so the echoed text need not be UTF-8. The one parser of replies
/// for the page, the client, the load generator and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBytes<'a> {
    /// An echo: the stamp and the echoed bytes. The stamp is left as bytes, as
    /// most callers check only the text (the load generator, on every reply).
    Stamped { stamp: &'a [u8], text: &'a [u8] },
    /// The server refused something; the reason is meant for people.
    Error(&'a [u8]),
    /// Anything else (another server's output).
    Other(&'a [u8]),
}

impl<'a> ReplyBytes<'a> {
    #[inline]
    pub fn parse(line: &'a [u8]) -> ReplyBytes<'a> {
        let Some(rest) = line.strip_prefix(b"[") else {
            return match line.strip_prefix(ERROR_PREFIX.as_bytes()) {
                Some(reason) => ReplyBytes::Error(reason),
                None => ReplyBytes::Other(line),
            };
        };
        // The built-in stamp formats never contain "] ", so the first one ends it.
        match rest.windows(2).position(|w| w == b"] ") {
            Some(end) => ReplyBytes::Stamped {
                stamp: &rest[..end],
                text: &rest[end + 2..],
            },
            None => match rest.strip_suffix(b"]") {
                Some(stamp) => ReplyBytes::Stamped {
                    stamp,
                    text: &rest[rest.len()..],
                },
                None => ReplyBytes::Other(line),
            },
        }
    }

    /// The echoed bytes, if this is an echo.
    #[inline]
    pub fn echoed(&self) -> Option<&'a [u8]> {
        match *self {
            ReplyBytes::Stamped { text, .. } => Some(text),
            ReplyBytes::Error(_) | ReplyBytes::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_idle_notice_says_seconds_or_milliseconds_and_is_read_back() {
        let mut out = Vec::new();
        write_idle_notice(&mut out, core::time::Duration::from_secs(300));
        assert_eq!(out, b"error: idle for 300s; closing\n");
        out.clear();
        write_idle_notice(&mut out, core::time::Duration::from_millis(500));
        assert_eq!(out, b"error: idle for 500ms; closing\n");
        out.clear();
        write_idle_notice(&mut out, core::time::Duration::from_micros(10));
        assert_eq!(out, b"error: idle for 1ms; closing\n");
        assert_eq!(
            is_idle_notice(b"error: idle for 300s; closing"),
            Some("idle for 300s; closing")
        );
        assert_eq!(
            is_idle_notice(b"error: idle for 500ms; closing"),
            Some("idle for 500ms; closing")
        );
        for not in [
            &b"[Tue Nov 24 21:35:36 2026] error: idle for 300s; closing"[..],
            b"idle for 300s; closing",
            b"error: idle for s; closing",
            b"error: idle for 3x0s; closing",
            b"error: idle for 300; closing",
            b"error: idle for 300s",
            b"error: line longer than 65536 bytes; discarded",
        ] {
            assert_eq!(
                is_idle_notice(not),
                None,
                "{}",
                String::from_utf8_lossy(not)
            );
        }
    }

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
        assert_eq!(
            Reply::parse("[Wed Nov 25 08:47:03 2026] ok"),
            Reply::Stamped {
                stamp: "Wed Nov 25 08:47:03 2026",
                text: "ok"
            }
        );
        assert_eq!(
            Reply::parse("[ü]"),
            Reply::Stamped {
                stamp: "ü",
                text: ""
            }
        );
        assert_eq!(Reply::parse("[x"), Reply::Other("[x"));
        assert_eq!(Reply::parse(""), Reply::Other(""));
    }

    #[test]
    fn byte_replies_keep_text_that_is_not_utf8() {
        assert_eq!(
            ReplyBytes::parse(b"[Tue Nov 24 21:35:36 2026] \x00\xff] y"),
            ReplyBytes::Stamped {
                stamp: b"Tue Nov 24 21:35:36 2026",
                text: b"\x00\xff] y"
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[1793783101.005] "),
            ReplyBytes::Stamped {
                stamp: b"1793783101.005",
                text: b""
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[ab]"),
            ReplyBytes::Stamped {
                stamp: b"ab",
                text: b""
            }
        );
        assert_eq!(
            ReplyBytes::parse(b"[]"),
            ReplyBytes::Stamped {
                stamp: b"",
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
        assert_eq!(ReplyBytes::parse(b"x[s] y"), ReplyBytes::Other(b"x[s] y"));
    }

    #[test]
    fn only_echoes_have_echoed_bytes() {
        assert_eq!(ReplyBytes::parse(b"[s] \xfe").echoed(), Some(&b"\xfe"[..]));
        assert_eq!(ReplyBytes::parse(b"[s]").echoed(), Some(&b""[..]));
        assert_eq!(ReplyBytes::parse(b"error: no").echoed(), None);
        assert_eq!(ReplyBytes::parse(b"s] x").echoed(), None);
    }
}
