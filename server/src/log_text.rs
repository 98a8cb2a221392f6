//! Text a peer chose (user names, headers, paths, close reasons), made safe to
//! put in a log line.
//!
//! Logged raw, such text can forge log lines (a newline), drive the terminal
//! that shows the log (escape sequences), or fill the disk (a 2 MB user name
//! makes a 2 MB line). [`untrusted`] shows at most [`SHOWN`] bytes of it, with
//! anything that is not plain printable text escaped, so that one log line stays
//! one short line whatever the peer sent.

use std::fmt;

/// Bytes of a peer's text shown in a log line; the rest is only counted.
pub const SHOWN: usize = 128;

/// Peer-controlled bytes, shown (with `%`/`Display`) at most [`SHOWN`] bytes
/// long, escaped Rust-style: `\n`, `\r`, `\t`, `\\`, `\"` (the quote that
/// delimits values in log formats; `'` is left as it is); other ASCII control
/// characters as `\xNN` (ESC is `\x1b`, as tracing's own sanitising writes it);
/// other characters that are not printable (C1 controls, bidi overrides, line
/// separators, combining marks, as Rust's `{:?}` judges them) as `\u{NNNN}`;
/// bytes that are not UTF-8 as `\xNN` (always `\x80` or above, so never
/// mistaken for a character). A cut is shown as `…(+K bytes)`, K counting the
/// input bytes not shown. Formatting writes straight into the formatter: no
/// allocation.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a [u8]);

/// Wraps a peer's text (`&str`, `&[u8]`, a header value...) for a log field:
/// `info!(user = %untrusted(&credentials.user), "signed in")`.
pub fn untrusted<T: AsRef<[u8]> + ?Sized>(text: &T) -> Untrusted<'_> {
    Untrusted(text.as_ref())
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A character that starts before the limit ends at most 3 bytes after
        // it, so this window holds every character that can be shown, and
        // validating it costs the same however long the input is.
        let window = &self.0[..self.0.len().min(SHOWN + 3)];
        let mut shown = 0;
        'chunks: for chunk in window.utf8_chunks() {
            let valid = chunk.valid();
            let mut plain = 0;
            for (i, c) in valid.char_indices() {
                if shown + i + c.len_utf8() > SHOWN {
                    f.write_str(&valid[plain..i])?;
                    shown += i;
                    break 'chunks;
                }
                if !needs_escape(c) {
                    continue;
                }
                f.write_str(&valid[plain..i])?;
                write_escaped(f, c)?;
                plain = i + c.len_utf8();
            }
            f.write_str(&valid[plain..])?;
            shown += valid.len();
            for &byte in chunk.invalid() {
                if shown == SHOWN {
                    break 'chunks;
                }
                write!(f, "\\x{byte:02x}")?;
                shown += 1;
            }
        }
        match self.0.len() - shown {
            0 => Ok(()),
            cut => write!(f, "…(+{cut} bytes)"),
        }
    }
}

/// Quoted, for `?` fields: where the peer's text starts and ends is visible.
impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

fn needs_escape(c: char) -> bool {
    match c {
        '\\' | '"' => true,
        ' '..='~' => false,
        // Not printable by the rules of Rust's `{:?}`, which the escape uses.
        c => c.is_ascii() || c.escape_debug().len() > 1,
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\\' => f.write_str("\\\\"),
        '"' => f.write_str("\\\""),
        c if c.is_ascii() => write!(f, "\\x{:02x}", c as u32),
        c => write!(f, "\\u{{{:x}}}", c as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    /// Formats into a fixed buffer on the stack, as a log writer would.
    struct StackText {
        buf: [u8; 1024],
        len: usize,
    }

    impl fmt::Write for StackText {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
            self.buf[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    fn shown(input: &[u8]) -> String {
        let mut out = StackText {
            buf: [0; 1024],
            len: 0,
        };
        write!(out, "{}", Untrusted(input)).unwrap();
        String::from_utf8(out.buf[..out.len].to_vec()).unwrap()
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(shown(b"ada lovelace"), "ada lovelace");
        assert_eq!(
            shown("Zoë Åström, 東京 🙂".as_bytes()),
            "Zoë Åström, 東京 🙂"
        );
        assert_eq!(shown(b"it's ~/path?q=1&r=[2]"), "it's ~/path?q=1&r=[2]");
        assert_eq!(shown(b""), "");
    }

    #[test]
    fn newlines_cannot_forge_a_log_line() {
        let forged = b"ada\n2026-11-25T13:02:50Z  INFO timecho: signed in user=root\r\n";
        assert_eq!(
            shown(forged),
            r"ada\n2026-11-25T13:02:50Z  INFO timecho: signed in user=root\r\n"
        );
    }

    #[test]
    fn terminal_escape_sequences_are_shown_not_sent() {
        assert_eq!(shown(b"\x1b[31mred\x1b[0m\x07"), r"\x1b[31mred\x1b[0m\x07");
        // The 8-bit CSI (U+009B) works as ESC [ on some terminals.
        assert_eq!(shown("\u{9b}31m".as_bytes()), r"\u{9b}31m");
        assert_eq!(shown(b"a\0b\x7f\t"), r"a\x00b\x7f\t");
    }

    #[test]
    fn quotes_backslashes_and_invisible_characters_are_escaped() {
        assert_eq!(shown(br#"a" admin="1\"#), r#"a\" admin=\"1\\"#);
        // Bidi override and line separator: text that reads or breaks differently.
        assert_eq!(
            shown("user\u{202e}gnp.exe\u{2028}x".as_bytes()),
            r"user\u{202e}gnp.exe\u{2028}x"
        );
    }

    #[test]
    fn invalid_utf8_is_shown_as_bytes() {
        assert_eq!(shown(b"ok\xff\xfe then \xc3"), r"ok\xff\xfe then \xc3");
        // A truncated 4-byte sequence.
        assert_eq!(shown(b"\xf0\x9f\x99!"), r"\xf0\x9f\x99!");
    }

    #[test]
    fn long_text_is_cut_with_the_count_of_what_is_not_shown() {
        let long = vec![b'a'; 1_900_000];
        let text = shown(&long);
        assert_eq!(
            text,
            format!("{}…(+{} bytes)", "a".repeat(SHOWN), 1_900_000 - SHOWN)
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 127 ASCII bytes, then a 4-byte character that would straddle the limit.
        let mut input = vec![b'x'; SHOWN - 1];
        input.extend_from_slice("🙂 tail".as_bytes());
        let text = shown(&input);
        assert_eq!(
            text,
            format!("{}…(+{} bytes)", "x".repeat(SHOWN - 1), 4 + 5)
        );
    }

    #[test]
    fn escaped_output_stays_short_and_on_one_line() {
        let hostile: Vec<u8> = b"\n\x1b\xff".repeat(100_000);
        let text = shown(&hostile);
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
        assert!(text.len() <= 4 * SHOWN + 32, "{} bytes", text.len());
        assert!(
            text.ends_with(&format!("…(+{} bytes)", 300_000 - SHOWN)),
            "{text}"
        );
    }

    #[test]
    fn debug_quotes_the_text() {
        assert_eq!(format!("{:?}", untrusted("a\"b")), r#""a\"b""#);
    }

    proptest! {
        /// Whatever the bytes, the output is printable, on one line, short,
        /// and says how much was left out.
        #[test]
        fn any_input_shows_as_one_short_printable_line(
            input in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'\n'), Just(0x1b), Just(b'"')], 0..400),
        ) {
            let text = shown(&input);
            prop_assert!(
                text.chars().all(|c| matches!(c, ' '..='~') || c.escape_debug().len() == 1),
                "{text:?}"
            );
            prop_assert!(text.len() <= 4 * SHOWN + 32, "{} bytes", text.len());
            if input.len() > SHOWN {
                let (_, cut) = text.rsplit_once("…(+").expect("a cut is shown");
                let cut: usize = cut.strip_suffix(" bytes)").unwrap().parse().unwrap();
                prop_assert!((input.len() - SHOWN..=input.len() - SHOWN + 3).contains(&cut));
            }
        }
    }
}
