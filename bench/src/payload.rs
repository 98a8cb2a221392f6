//! Request payloads and the check that a reply answers exactly its request.
//!
//! Each payload starts with the request's sequence number in decimal (zero-padded,
//! as many digits as fit) and is filled up to the message size with letters. A
//! connection's numbers start at `connection << 32`, so a reply that strays to the
//! wrong connection, or comes back out of order, does not match. One buffer is
//! rewritten in place for every request, and a reply is checked against the
//! sequence number it should carry without building the expected bytes.

use timecho_shared::reply::ReplyBytes;

/// Most decimal digits a `u64` needs.
const MAX_DIGITS: usize = 20;

/// The payload of one connection's requests.
#[derive(Debug, Clone)]
pub struct Payload {
    bytes: Vec<u8>,
    digits: usize,
}

impl Payload {
    /// A payload of `size` bytes (at least one).
    pub fn new(size: usize) -> Payload {
        let size = size.max(1);
        let digits = size.min(MAX_DIGITS);
        let bytes = (0..size)
            .map(|i| {
                if i < digits {
                    b'0'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        Payload { bytes, digits }
    }

    /// The first sequence number of connection `index`.
    pub fn first_seq(index: usize) -> u64 {
        (index as u64) << 32
    }

    /// Rewrites the payload for request `seq` and returns it.
    pub fn for_seq(&mut self, seq: u64) -> &[u8] {
        write_digits(&mut self.bytes[..self.digits], seq);
        &self.bytes
    }

    /// True when `text` is exactly the payload of request `seq`.
    pub fn matches(&self, text: &[u8], seq: u64) -> bool {
        if text.len() != self.bytes.len() || text[self.digits..] != self.bytes[self.digits..] {
            return false;
        }
        let mut expected = [0u8; MAX_DIGITS];
        write_digits(&mut expected[..self.digits], seq);
        text[..self.digits] == expected[..self.digits]
    }
}

/// Writes `n` right-aligned and zero-padded into `out`, keeping the low digits
/// when it does not fit.
fn write_digits(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A reply line shown in an error message, cut short and made printable; an
/// `error: ` line from the server is named as such.
pub fn describe_reply(line: &[u8]) -> String {
    match ReplyBytes::parse(line) {
        ReplyBytes::Error(reason) => format!("the server's error {}", describe(reason)),
        ReplyBytes::Stamped { .. } | ReplyBytes::Other(_) => describe(line),
    }
}

/// Bytes shown in an error message, cut short and made printable.
pub fn describe(line: &[u8]) -> String {
    const SHOWN: usize = 80;
    let shown = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]).into_owned();
    if line.len() > SHOWN {
        format!("{shown:?}... ({} bytes)", line.len())
    } else {
        format!("{shown:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(text: &[u8]) -> Vec<u8> {
        let mut line = b"[Wed Nov 25 08:47:03 2026] ".to_vec();
        line.extend_from_slice(text);
        line
    }

    #[test]
    fn payload_has_the_requested_size_and_no_newline() {
        for size in [1, 5, 16, 20, 21, 1024] {
            let mut p = Payload::new(size);
            let bytes = p.for_seq(Payload::first_seq(7) + 3).to_vec();
            assert_eq!(bytes.len(), size);
            assert!(!bytes.contains(&b'\n') && !bytes.contains(&b'\r'));
        }
    }

    #[test]
    fn reply_to_the_request_matches() {
        let mut p = Payload::new(16);
        let sent = p.for_seq(42).to_vec();
        assert_eq!(sent, b"0000000000000042");
        p.for_seq(43);
        let reply = stamped(&sent);
        let text = ReplyBytes::parse(&reply).echoed().unwrap();
        assert!(p.matches(text, 42), "the buffer was reused for 43 since");
    }

    #[test]
    fn reply_to_another_request_or_connection_does_not_match() {
        let mut p = Payload::new(16);
        let sent = p.for_seq(Payload::first_seq(1) + 5).to_vec();
        assert!(!p.matches(&sent, Payload::first_seq(1) + 6));
        assert!(!p.matches(&sent, Payload::first_seq(2) + 5));
    }

    #[test]
    fn truncated_padded_or_altered_replies_do_not_match() {
        let mut p = Payload::new(32);
        let sent = p.for_seq(9).to_vec();
        assert!(p.matches(&sent, 9));
        assert!(!p.matches(&sent[..31], 9));
        let mut longer = sent.clone();
        longer.push(b'\n');
        assert!(!p.matches(&longer, 9));
        let mut altered = sent.clone();
        altered[25] = b'X';
        assert!(!p.matches(&altered, 9));
    }

    #[test]
    fn small_payloads_keep_the_low_digits() {
        let mut p = Payload::new(2);
        assert_eq!(p.for_seq(1234), b"34");
        assert!(p.matches(b"34", 1234));
    }

    #[test]
    fn replies_are_shown_short_and_errors_by_name() {
        assert_eq!(describe_reply(b"[t] \xffx"), "\"[t] \u{fffd}x\"");
        assert_eq!(
            describe_reply(b"error: line too long"),
            "the server's error \"line too long\""
        );
        let long = vec![b'y'; 100];
        assert_eq!(
            describe_reply(&long),
            format!("{:?}... (100 bytes)", "y".repeat(80))
        );
    }
}
