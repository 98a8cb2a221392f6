//! How a session ends, and what the browser and the metrics are told: the
//! close-code table of the `/ws` contract (`timecho_shared::relay::close_code`)
//! in one place, so that a code and its reason cannot drift apart.

use std::time::Duration;

use timecho_shared::reconnect::restart_reason;
use timecho_shared::relay::close_code;

use crate::metrics::WsEnding;
use crate::signin::Ended;

/// How a session ended, and so what the browser is told.
#[derive(Debug)]
pub(super) enum Ending {
    UpstreamClosed,
    /// The upstream closed the connection for being quiet for its idle
    /// timeout, after answering everything: routine (`4002` with its notice).
    UpstreamIdle(tungstenite::Utf8Bytes),
    /// The upstream closed while messages were still unanswered.
    UpstreamClosedEarly(u64),
    UpstreamFailed(std::io::Error),
    /// The timestamp server stopped reading what we send it.
    UpstreamStalled(Duration),
    /// The browser sent its Close; what it was owed is still on its way.
    BrowserClosing,
    /// The browser closed and got every reply it was owed first.
    BrowserClosed,
    /// The browser closed, and these replies did not come within the drain
    /// deadline.
    BrowserClosedOwed(u64),
    BrowserVanished,
    Binary,
    InvalidUtf8,
    TooBig(usize),
    /// The browser broke RFC 6455 (reserved bits or opcodes, an unmasked
    /// frame, a control frame too long or fragmented, a stray continuation).
    ProtocolViolation(String),
    /// The browser's Close broke the protocol (answered 1002, or 1007 for a
    /// reason that is not UTF-8).
    BadClose(u16),
    Shutdown,
    /// The page's sign-in session ended (signed out, or pushed out).
    SignedOut,
    /// The token the socket was opened with expired.
    TokenExpired,
}

impl Ending {
    /// What the metrics call it.
    pub(super) fn counted_as(&self) -> WsEnding {
        match self {
            Ending::UpstreamClosed => WsEnding::UpstreamClosed,
            Ending::UpstreamIdle(_) => WsEnding::Idle,
            Ending::UpstreamClosedEarly(_)
            | Ending::UpstreamFailed(_)
            | Ending::UpstreamStalled(_) => WsEnding::UpstreamLost,
            Ending::BrowserClosing | Ending::BrowserClosed | Ending::BrowserClosedOwed(_) => {
                WsEnding::BrowserClosed
            }
            Ending::BrowserVanished => WsEnding::BrowserVanished,
            Ending::Binary
            | Ending::InvalidUtf8
            | Ending::TooBig(_)
            | Ending::ProtocolViolation(_)
            | Ending::BadClose(_) => WsEnding::Refused,
            Ending::Shutdown => WsEnding::Restart,
            Ending::SignedOut => WsEnding::SignedOut,
            Ending::TokenExpired => WsEnding::TokenExpired,
        }
    }

    /// The close frame to send, if the browser can still receive one; a
    /// shutdown names the window to come back in.
    pub(super) fn close_frame(&self, reconnect_window: Duration) -> Option<(u16, String)> {
        Some(match self {
            Ending::UpstreamClosed => (
                close_code::NORMAL,
                "the timestamp server closed the connection".into(),
            ),
            Ending::UpstreamClosedEarly(n) => (
                close_code::UPSTREAM_ERROR,
                format!(
                    "the timestamp server closed the connection with {n} {} unanswered",
                    plural(*n, "message", "messages")
                ),
            ),
            Ending::UpstreamIdle(notice) => (close_code::IDLE, notice.to_string()),
            // The error itself is the operator's (logged); a visitor learns
            // only what happened.
            Ending::UpstreamFailed(_) => (
                close_code::UPSTREAM_ERROR,
                "lost the timestamp server".into(),
            ),
            Ending::UpstreamStalled(d) => (
                close_code::UPSTREAM_ERROR,
                format!("the timestamp server read nothing for {d:?}"),
            ),
            Ending::Binary => (
                close_code::UNSUPPORTED_DATA,
                "binary frames need the binary subprotocol; send text".into(),
            ),
            Ending::InvalidUtf8 => (
                close_code::INVALID_PAYLOAD,
                "text frame is not valid UTF-8".into(),
            ),
            Ending::TooBig(max) => (
                close_code::TOO_BIG,
                format!("frame larger than {max} bytes"),
            ),
            Ending::ProtocolViolation(what) => (close_code::PROTOCOL_ERROR, what.clone()),
            Ending::BadClose(close_code::INVALID_PAYLOAD) => (
                close_code::INVALID_PAYLOAD,
                "the close reason is not valid UTF-8".into(),
            ),
            Ending::BadClose(code) => (*code, "a close code no endpoint may send".into()),
            Ending::Shutdown => (close_code::RESTART, restart_reason(reconnect_window)),
            Ending::SignedOut => (close_code::POLICY, "signed out".into()),
            Ending::TokenExpired => (
                close_code::TOKEN_EXPIRED,
                "sign-in token expired; reconnect with the renewed cookie".into(),
            ),
            Ending::BrowserClosed | Ending::BrowserClosing => (close_code::NORMAL, String::new()),
            Ending::BrowserClosedOwed(n) => (
                close_code::UPSTREAM_ERROR,
                format!(
                    "{n} {} did not come from the timestamp server in time",
                    plural(*n, "reply", "replies")
                ),
            ),
            Ending::BrowserVanished => return None,
        })
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

impl From<Ended> for Ending {
    fn from(ended: Ended) -> Ending {
        match ended {
            Ended::SignedOut => Ending::SignedOut,
            Ended::TokenExpired => Ending::TokenExpired,
        }
    }
}

/// Tells apart the receive errors that deserve a close code of their own.
pub(super) fn classify(e: tungstenite::Error, max: usize) -> Ending {
    match e {
        tungstenite::Error::Utf8(_) => Ending::InvalidUtf8,
        tungstenite::Error::Capacity(_) => Ending::TooBig(max),
        tungstenite::Error::Protocol(violation) => Ending::ProtocolViolation(violation.to_string()),
        _ => Ending::BrowserVanished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(5);

    /// A row of the table: the ending, its close frame, what it is counted as.
    type Row = (Ending, Option<(u16, &'static str)>, WsEnding);

    fn frame(ending: &Ending) -> Option<(u16, String)> {
        ending.close_frame(WINDOW)
    }

    #[test]
    fn each_ending_has_its_code_reason_and_count() {
        let notice = "idle for 5m; closing";
        let table: Vec<Row> = vec![
            (
                Ending::UpstreamClosed,
                Some((1000, "the timestamp server closed the connection")),
                WsEnding::UpstreamClosed,
            ),
            (
                Ending::UpstreamIdle(notice.into()),
                Some((4002, notice)),
                WsEnding::Idle,
            ),
            (
                Ending::UpstreamStalled(Duration::from_secs(10)),
                Some((1011, "the timestamp server read nothing for 10s")),
                WsEnding::UpstreamLost,
            ),
            (
                Ending::BrowserClosing,
                Some((1000, "")),
                WsEnding::BrowserClosed,
            ),
            (
                Ending::BrowserClosed,
                Some((1000, "")),
                WsEnding::BrowserClosed,
            ),
            (Ending::BrowserVanished, None, WsEnding::BrowserVanished),
            (
                Ending::Binary,
                Some((1003, "binary frames need the binary subprotocol; send text")),
                WsEnding::Refused,
            ),
            (
                Ending::InvalidUtf8,
                Some((1007, "text frame is not valid UTF-8")),
                WsEnding::Refused,
            ),
            (
                Ending::TooBig(65536),
                Some((1009, "frame larger than 65536 bytes")),
                WsEnding::Refused,
            ),
            (
                Ending::ProtocolViolation("unmasked frame".into()),
                Some((1002, "unmasked frame")),
                WsEnding::Refused,
            ),
            (
                Ending::BadClose(1007),
                Some((1007, "the close reason is not valid UTF-8")),
                WsEnding::Refused,
            ),
            (
                Ending::BadClose(1002),
                Some((1002, "a close code no endpoint may send")),
                WsEnding::Refused,
            ),
            (
                Ending::SignedOut,
                Some((1008, "signed out")),
                WsEnding::SignedOut,
            ),
            (
                Ending::TokenExpired,
                Some((
                    4001,
                    "sign-in token expired; reconnect with the renewed cookie",
                )),
                WsEnding::TokenExpired,
            ),
        ];
        for (ending, expected, counted) in table {
            let got = frame(&ending);
            let got = got.as_ref().map(|(code, reason)| (*code, reason.as_str()));
            assert_eq!(got, expected, "{ending:?}");
            assert_eq!(ending.counted_as(), counted, "{ending:?}");
        }
    }

    #[test]
    fn a_shutdown_names_the_window_to_come_back_in() {
        let (code, reason) = frame(&Ending::Shutdown).unwrap();
        assert_eq!(code, close_code::RESTART);
        assert_eq!(reason, restart_reason(WINDOW));
        assert_eq!(Ending::Shutdown.counted_as(), WsEnding::Restart);
    }

    #[test]
    fn unanswered_messages_are_counted_in_words() {
        let reason = |e: Ending| frame(&e).unwrap();
        assert_eq!(
            reason(Ending::UpstreamClosedEarly(1)),
            (
                1011,
                "the timestamp server closed the connection with 1 message unanswered".into()
            )
        );
        assert_eq!(
            reason(Ending::UpstreamClosedEarly(3)).1,
            "the timestamp server closed the connection with 3 messages unanswered"
        );
        assert_eq!(
            reason(Ending::BrowserClosedOwed(1)),
            (
                1011,
                "1 reply did not come from the timestamp server in time".into()
            )
        );
        assert_eq!(
            reason(Ending::BrowserClosedOwed(2)).1,
            "2 replies did not come from the timestamp server in time"
        );
    }

    #[test]
    fn a_lost_upstream_tells_the_visitor_nothing_internal() {
        let e = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "10.0.0.7:8899: Connection reset by peer (os error 104)",
        );
        let ending = Ending::UpstreamFailed(e);
        assert_eq!(
            frame(&ending),
            Some((1011, "lost the timestamp server".into()))
        );
        assert_eq!(ending.counted_as(), WsEnding::UpstreamLost);
    }

    #[test]
    fn receive_errors_are_told_apart() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let utf8 = tungstenite::Error::Utf8("bad".into());
        assert!(matches!(classify(utf8, 10), Ending::InvalidUtf8));
        let big = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 20,
            max_size: 10,
        });
        assert!(matches!(classify(big, 10), Ending::TooBig(10)));
        let proto = tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient);
        match classify(proto, 10) {
            Ending::ProtocolViolation(what) => assert!(what.contains("mask"), "{what}"),
            other => panic!("{other:?}"),
        }
        let gone = tungstenite::Error::Io(std::io::ErrorKind::UnexpectedEof.into());
        assert!(matches!(classify(gone, 10), Ending::BrowserVanished));
    }

    #[test]
    fn sign_in_endings_close_as_their_own() {
        assert!(matches!(Ending::from(Ended::SignedOut), Ending::SignedOut));
        assert!(matches!(
            Ending::from(Ended::TokenExpired),
            Ending::TokenExpired
        ));
    }
}
