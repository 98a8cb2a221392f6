//! The contract between the browser (or any WebSocket client) and the gateway.
//!
//! A text frame is one message; each of its lines goes upstream as its own line.
//! Each reply line from upstream comes back as one text frame without its newline.
//! The gateway ends a session with one of these close codes, and a reason meant
//! for people, which the page shows as it is.

/// WebSocket subprotocols (`Sec-WebSocket-Protocol`) the gateway speaks. A
/// client that offers none gets [`LINES`]'s behaviour; one that offers only
/// others is refused before the upgrade.
pub mod subprotocol {
    /// Today's contract, by name: one text frame is one message (its lines go
    /// upstream one by one), one reply line comes back as one text frame.
    pub const LINES: &str = "timecho-lines";
    /// websockify's: binary frames carry the TCP byte stream unchanged both
    /// ways, any bytes, no line splitting (so websockify's and noVNC's clients
    /// can use the gateway).
    pub const BINARY: &str = "binary";
    /// In the order the gateway chooses when a client offers several.
    pub const SUPPORTED: [&str; 2] = [LINES, BINARY];
}

/// Close codes the gateway uses (RFC 6455, section 7.4.1).
pub mod close_code {
    /// The session ended normally (the upstream server closed the connection).
    pub const NORMAL: u16 = 1000;
    /// The gateway is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket protocol (RFC 6455) itself.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame on a text session: the relay speaks text there.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The session broke the gateway's rules (too many sessions, origin...).
    pub const POLICY: u16 = 1008;
    /// A frame larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// The upstream timestamp server could not be reached or failed.
    pub const UPSTREAM_ERROR: u16 = 1011;
    /// The gateway is shutting down and will be back (or another instance
    /// will answer): the reason names the window to come back in
    /// ([`crate::reconnect::restart_window_ms`]).
    pub const RESTART: u16 = 1012;
    /// The sign-in token the socket was opened with has expired. Pages renew
    /// their cookie while open, so the page reconnects at once, quietly; a
    /// copy of a signed-out cookie gets `1008` on its next try.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The timestamp server closed the session's connection for being quiet
    /// for its `--idle-timeout` (the reason says how long), after answering
    /// everything. Routine, not a failure: a page reconnects quietly when it
    /// next has something to send or is looked at again.
    pub const IDLE: u16 = 4002;
}

/// The lines of one text frame, each to be sent upstream followed by `\n`.
///
/// A trailing newline ends the last line rather than starting an empty one, and
/// `\r\n` counts as one newline, so `"a\r\nb\n"` is the two lines `a` and `b`.
pub fn frame_lines(frame: &str) -> impl Iterator<Item = &str> {
    let body = frame.strip_suffix('\n').unwrap_or(frame);
    // memchr's vectorised search rather than `str::split`, which scans a
    // kilobyte frame several times slower; `\n` is ASCII, so every cut is on
    // a character boundary.
    let ends = memchr::memchr_iter(b'\n', body.as_bytes()).chain(std::iter::once(body.len()));
    let mut start = 0;
    ends.map(move |end| {
        let line = &body[start..end];
        start = end + 1;
        line.strip_suffix('\r').unwrap_or(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_lines() {
        // Bounded, so that a mutant which never ends the iteration fails instead of hanging.
        let lines = |f| frame_lines(f).take(16).collect::<Vec<_>>();
        assert_eq!(lines("hello"), ["hello"]);
        assert_eq!(lines("a\r\nb\n"), ["a", "b"]);
        assert_eq!(lines("a\n\nb"), ["a", "", "b"]);
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("\n"), [""]);
        assert_eq!(lines("\n\n"), ["", ""]);
        assert_eq!(lines("é\r\n✓\r"), ["é", "✓"]);
    }
}
