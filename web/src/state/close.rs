//! What a close frame means for the page: the words to show, and whether the
//! messages in flight are worth sending again.

use timecho_shared::relay::close_code;

/// Close code 1006: the browser's "no close frame", for a gateway that never
/// answered or a connection that dropped.
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// The reason to show for a close. The gateway's own reason is meant for people
/// and wins; the codes fill in when it sent none (or when there was no gateway).
pub fn describe_close(code: u16, reason: &str) -> String {
    let reason = reason.trim();
    // A restart's reason is for clients (the window); the page says when it retries.
    if !reason.is_empty() && code != close_code::RESTART {
        return reason.to_owned();
    }
    match code {
        close_code::NORMAL => "the timestamp server closed the connection".into(),
        close_code::GOING_AWAY => "the gateway is shutting down".into(),
        close_code::RESTART => "the gateway is restarting".into(),
        close_code::TOKEN_EXPIRED => "renewing the sign-in".into(),
        close_code::IDLE => "idle".into(),
        close_code::UNSUPPORTED_DATA => "the gateway accepts text messages only".into(),
        close_code::INVALID_PAYLOAD => "a message was not valid UTF-8".into(),
        close_code::POLICY => "the gateway refused the session".into(),
        close_code::TOO_BIG => "a message was too big for the gateway".into(),
        close_code::UPSTREAM_ERROR => "the timestamp server is unreachable".into(),
        ABNORMAL_CLOSURE => "could not reach the gateway".into(),
        other => format!("the connection closed (code {other})"),
    }
}

/// A close that asks for a sign-in (the gateway's `1008 sign in first`):
/// retrying cannot help until someone signs in, so the form comes up instead.
pub fn needs_sign_in(code: u16) -> bool {
    code == close_code::POLICY
}

/// Closes that are part of normal life (the server or gateway went away on
/// purpose), as opposed to failures.
pub fn is_orderly(code: u16) -> bool {
    matches!(
        code,
        close_code::NORMAL
            | close_code::GOING_AWAY
            | close_code::RESTART
            | close_code::TOKEN_EXPIRED
            | close_code::IDLE
    )
}

/// Closes that are routine (a sign-in token renewed, a quiet session ended by
/// the server's idle timeout): nothing was lost and the page is back when it
/// needs to be, so they are not worth a line in the transcript.
pub fn is_routine(code: u16) -> bool {
    matches!(code, close_code::TOKEN_EXPIRED | close_code::IDLE)
}

/// A close after which the page waits for a reason to connect (something to
/// send, the tab looked at again) rather than retrying on a timer.
pub fn waits_for_use(code: u16) -> bool {
    code == close_code::IDLE
}

/// Which of the messages in flight (sent, not yet answered) a close blames.
/// Blamed messages earn a strike instead of a plain resend, so one that keeps
/// ending sessions is given up rather than sent in a loop; the rest are sent
/// again, since a repeated echo is harmless and a lost line is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The close says nothing about them: the upstream is unreachable or
    /// failed, the gateway is restarting or turned the session away.
    Nobody,
    /// The gateway refused a frame as too big: the largest one it was.
    Largest,
    /// They might have caused it: the server hung up after reading them, the
    /// gateway dropped without a close frame, or refused a frame's content.
    Suspects,
}

pub fn blame(code: u16) -> Blame {
    match code {
        close_code::UPSTREAM_ERROR
        | close_code::GOING_AWAY
        | close_code::RESTART
        | close_code::TOKEN_EXPIRED
        | close_code::IDLE
        | close_code::POLICY => Blame::Nobody,
        close_code::TOO_BIG => Blame::Largest,
        _ => Blame::Suspects,
    }
}

#[cfg(test)]
mod tests;
