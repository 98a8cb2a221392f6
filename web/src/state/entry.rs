//! Transcript entries, and how a reply line from the gateway becomes one.

use timecho_shared::{Reply, Stamp, StampFormat};

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique within the page's life: the list key, and the outbox's order.
    pub id: u64,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A message typed here.
    Sent(Outgoing),
    /// An echo from the server.
    Reply {
        /// The stamp exactly as the server wrote it.
        stamp: String,
        /// The stamp read back in the server's format (or, before the page
        /// knows it, in whichever built-in format it parses as).
        time: Option<ClockTime>,
        text: String,
        /// From sending the message to this reply, when the page sent it.
        rtt: Option<i64>,
    },
    /// The server refused a line, or the connection failed; meant for people.
    Error(String),
    /// A line from upstream in no format we know, shown as it came.
    Other(String),
    /// Something the page itself says (disconnected, reconnected).
    Notice(String),
}

/// A message typed here, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub text: String,
    pub delivery: Delivery,
    /// Sessions that died while this was in flight, in a way it may have caused
    /// (see `close::Blame`): a message that keeps killing sessions is given up.
    pub strikes: u8,
    /// When the socket took it, by this device's clock (ns since the epoch).
    pub sent_at: Option<i64>,
}

impl Outgoing {
    pub fn queued(text: String) -> Outgoing {
        Outgoing {
            text,
            delivery: Delivery::Queued,
            strikes: 0,
            sent_at: None,
        }
    }
}

/// Where a typed message is. The server answers every line with exactly one
/// line, in order, which is how a reply finds the message it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Waiting for a connection (shown as pending).
    Queued,
    /// Handed to the socket; no reply yet. If the session dies now the message
    /// is queued again, unless it is to blame (see `close::Blame`).
    InFlight,
    /// The server's reply has arrived.
    Echoed,
    /// Given up: too long to send, refused by the gateway, or blamed for
    /// ending too many sessions.
    Undelivered,
}

impl Delivery {
    /// Still ours to deliver: never trimmed from the transcript.
    pub fn is_outstanding(self) -> bool {
        matches!(self, Delivery::Queued | Delivery::InFlight)
    }
}

/// A parsed stamp, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockTime {
    /// `21:35:36`, or `21:35:36.123` when the stamp has a fraction.
    pub short: String,
    /// `2026-11-24T21:35:36`, for the `datetime` attribute of `<time>`.
    pub iso: String,
}

impl ClockTime {
    /// Reads `stamp` in `format`, the server's; without it, in any built-in one.
    pub fn read(stamp: &str, format: Option<&StampFormat>) -> Option<ClockTime> {
        let parsed = match format {
            Some(format) => format.parse(stamp).ok(),
            None => Stamp::parse_any(stamp),
        };
        let wall = parsed?.wall_clock();
        let has_fraction = wall.and_utc().timestamp_subsec_nanos() != 0;
        let (short, iso) = if has_fraction {
            ("%H:%M:%S%.3f", "%Y-%m-%dT%H:%M:%S%.3f")
        } else {
            ("%H:%M:%S", "%Y-%m-%dT%H:%M:%S")
        };
        Some(ClockTime {
            short: wall.format(short).to_string(),
            iso: wall.format(iso).to_string(),
        })
    }
}

/// The entry for one reply line, stamped in `format` when the page knows it,
/// that answered a message sent `rtt` before.
pub fn reply_entry(line: &str, format: Option<&StampFormat>, rtt: Option<i64>) -> EntryKind {
    match Reply::parse(line) {
        Reply::Stamped { stamp, text } => EntryKind::Reply {
            stamp: stamp.to_owned(),
            time: ClockTime::read(stamp, format),
            text: text.to_owned(),
            rtt,
        },
        Reply::Error(reason) => EntryKind::Error(reason.to_owned()),
        Reply::Other(line) => EntryKind::Other(line.to_owned()),
    }
}

#[cfg(test)]
mod tests;
