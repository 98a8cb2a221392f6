//! The page's model: the transcript, the connection, the outbox, and the one
//! reducer that changes them. Free of web-sys, so its tests run natively.

mod access;
mod clock;
mod close;
mod entry;
mod outbox;
mod settings;

use std::rc::Rc;

use timecho_shared::api::ServerConfig;
use yew::Reducible;

pub use access::{session_checked, signed_in, signed_out, Access, ApiReply, SessionAnswer};
pub use clock::{measurable, sparkline_points, sparkline_scale, wall_clock_text, ClockPanel};
pub use close::{describe_close, needs_sign_in, waits_for_use, ABNORMAL_CLOSURE};
pub use entry::{ClockTime, Delivery, Entry, EntryKind, Outgoing};
pub use settings::{Settings, StampSettings};

/// Oldest settled entries go first past this, so a long session stays light.
pub const MAX_ENTRIES: usize = 500;

/// A message blamed for this many ended sessions is given up.
pub const MAX_STRIKES: u8 = 3;

/// Where the socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Opening a socket; `attempt` counts the failures since the last success.
    /// `last_error` keeps the previous failure visible while we try again.
    Connecting {
        attempt: u32,
        last_error: Option<String>,
    },
    Connected,
    /// The server closed a quiet session (its idle timeout): nothing is
    /// wrong, and the page connects again when it has something to send or
    /// is looked at again.
    Idle,
    /// The socket closed; the next attempt is `retry_in_ms` away, or none
    /// comes (the gateway wants a sign-in first).
    Disconnected {
        reason: String,
        code: u16,
        retry_in_ms: Option<u32>,
    },
}

impl Connection {
    /// The `data-state` the browser tests look for.
    pub fn state_name(&self) -> &'static str {
        match self {
            Connection::Connecting { .. } => "connecting",
            Connection::Connected => "connected",
            Connection::Idle => "idle",
            Connection::Disconnected { .. } => "disconnected",
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, Connection::Connected)
    }
}

/// Everything that can happen to the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The user sent a message; it waits in the outbox until the socket takes it.
    Submit(String),
    /// The socket took every queued message up to and including this id, at
    /// `at` (ns since the epoch, this device's clock).
    Delivered {
        through: u64,
        at: i64,
    },
    Connecting {
        attempt: u32,
    },
    Opened,
    /// One text frame from the gateway: one reply line, arrived at `at`.
    Received {
        line: String,
        at: i64,
    },
    /// The socket took the clock probe `ClockPanel::next_probe_line` at `at`.
    ProbeSent {
        at: i64,
    },
    Closed {
        code: u16,
        reason: String,
        retry_in_ms: Option<u32>,
    },
    /// What the server said about signing in: on load, or after a sign-in.
    Session(SessionAnswer),
    /// The server's settings (`GET /api/config`), asked for on load.
    Configured(ServerConfig),
    /// The sign-in form was sent.
    SigningIn,
    SignInRefused(String),
    /// The server ended the session on request: the form comes back, and the
    /// transcript goes, since the next person to sign in need not see it.
    SignedOut,
    SignOutFailed(String),
}

/// The whole page state.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub entries: Vec<Rc<Entry>>,
    pub connection: Connection,
    pub access: Access,
    /// The server's limits and stamp layout; defaults until it says.
    pub settings: Settings,
    /// The page's clock probes and what they found.
    pub clock: ClockPanel,
    next_id: u64,
    /// The loss of connection last noted in the transcript, while nothing has
    /// been heard since: the outage goes on, and the first reply after it is
    /// preceded by "Reconnected.". (An open socket alone proves little: a
    /// gateway whose upstream is down accepts and closes at once.)
    outage: Option<String>,
}

impl Default for Chat {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            connection: Connection::Connecting {
                attempt: 0,
                last_error: None,
            },
            access: Access::Checking,
            settings: Settings::default(),
            clock: ClockPanel::default(),
            next_id: 1,
            outage: None,
        }
    }
}

impl Reducible for Chat {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}

impl Chat {
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Submit(text) => self.submit(text),
            Action::Delivered { through, at } => self.update_outgoing(|id, msg| {
                (msg.delivery == Delivery::Queued && id <= through).then(|| Outgoing {
                    delivery: Delivery::InFlight,
                    sent_at: Some(at),
                    ..msg.clone()
                })
            }),
            Action::Connecting { attempt } => {
                let last_error = match &self.connection {
                    Connection::Disconnected { reason, .. } => Some(reason.clone()),
                    Connection::Connecting { last_error, .. } => last_error.clone(),
                    Connection::Connected | Connection::Idle => None,
                };
                self.connection = Connection::Connecting {
                    attempt,
                    last_error,
                };
            }
            Action::Opened => self.connection = Connection::Connected,
            Action::Received { line, at } => self.received(&line, at),
            Action::ProbeSent { at } => {
                self.clock.probe_sent(at);
            }
            Action::Closed {
                code,
                reason,
                retry_in_ms,
            } => self.closed(code, describe_close(code, &reason), retry_in_ms),
            Action::Session(answer) => {
                self.access = match answer {
                    SessionAnswer::Open => Access::Open,
                    SessionAnswer::SignedIn(user) => Access::SignedIn { user },
                    SessionAnswer::SignInNeeded { reason } => Access::SignedOut {
                        error: reason,
                        busy: false,
                        just_signed_out: false,
                    },
                }
            }
            Action::Configured(config) => self.configured(&config),
            Action::SigningIn => {
                if let Access::SignedOut { .. } = self.access {
                    self.access = Access::SignedOut {
                        error: None,
                        busy: true,
                        just_signed_out: false,
                    };
                }
            }
            Action::SignInRefused(reason) => {
                self.access = Access::SignedOut {
                    error: Some(reason),
                    busy: false,
                    just_signed_out: false,
                }
            }
            Action::SignedOut => {
                *self = Chat {
                    access: Access::SignedOut {
                        error: None,
                        busy: false,
                        just_signed_out: true,
                    },
                    next_id: self.next_id,
                    settings: self.settings.clone(),
                    ..Chat::default()
                }
            }
            Action::SignOutFailed(reason) => {
                self.push(EntryKind::Error(format!("Could not sign out: {reason}")))
            }
        }
    }

    /// When the next clock probe should leave, if one may: the socket is up,
    /// the server has said how it writes stamps (a probe before that would
    /// measure nothing), and the probe fits in the server's line limit.
    pub fn probe_due(&self, now: i64) -> Option<i64> {
        let fits = self.clock.next_probe_line().len() <= self.settings.max_message_bytes;
        let measurable = clock::measurable(self.settings.stamp.as_ref()).is_some();
        if !(self.connection.is_connected() && measurable && fits) {
            return None;
        }
        self.clock.next_probe_at(now)
    }

    /// Takes the server's settings. Messages queued under the default limit
    /// that the server's own is too small for are given up now, as if typed
    /// after it was known, rather than sent to end the session.
    fn configured(&mut self, config: &ServerConfig) {
        self.settings = Settings::from_config(config);
        let max = self.settings.max_message_bytes;
        let mut too_long = Vec::new();
        self.update_outgoing(|_, msg| {
            (msg.delivery == Delivery::Queued && msg.text.len() > max).then(|| {
                too_long.push(msg.text.len());
                Outgoing {
                    delivery: Delivery::Undelivered,
                    ..msg.clone()
                }
            })
        });
        for bytes in too_long {
            self.push(self.too_long(bytes));
        }
    }

    fn received(&mut self, line: &str, at: i64) {
        if self.outage.take().is_some() {
            self.push(EntryKind::Notice("Reconnected.".into()));
        }
        // The page's own clock probe is answered on the panel, not here.
        let stamp = self.settings.stamp.as_ref();
        if self.clock.answered(line, at, stamp) {
            return;
        }
        // Replies come in the order the lines went out: this one answers the
        // oldest message still in flight.
        let mut answered = None;
        self.update_outgoing(|_, msg| {
            if answered.is_some() || msg.delivery != Delivery::InFlight {
                return None;
            }
            answered = Some(msg.sent_at);
            Some(Outgoing {
                delivery: Delivery::Echoed,
                ..msg.clone()
            })
        });
        let rtt = answered.flatten().map(|sent| at - sent);
        if let Some(rtt) = rtt {
            self.clock.rtt(at, rtt);
        }
        let format = self.settings.stamp.as_ref().map(|s| &s.format);
        self.push(entry::reply_entry(line, format, rtt));
    }

    fn closed(&mut self, code: u16, reason: String, retry_in_ms: Option<u32>) {
        self.clock.disconnected();
        // After signing out here, the gateway's "signed out" close is no news:
        // the form keeps its confirmation.
        let signed_out_here = matches!(
            self.access,
            Access::SignedOut {
                just_signed_out: true,
                ..
            }
        );
        if needs_sign_in(code) && !signed_out_here {
            let was_signed_in = self.access.user().is_some();
            self.access = Access::SignedOut {
                error: Some(access::policy_close_message(was_signed_in, &reason)),
                busy: false,
                just_signed_out: false,
            };
        }
        if self.connection.is_connected() {
            self.settle_in_flight(close::blame(code));
            // Only the loss of an open connection goes in the transcript, once
            // per outage (unless its reason changes); failed retries show in
            // the status bar alone.
            let said = format!("Disconnected: {reason}");
            if !close::is_routine(code) && self.outage.as_ref() != Some(&said) {
                self.outage = Some(said.clone());
                self.push(if close::is_orderly(code) {
                    EntryKind::Notice(said)
                } else {
                    EntryKind::Error(said)
                });
            }
        }
        self.connection = if close::waits_for_use(code) {
            Connection::Idle
        } else {
            Connection::Disconnected {
                reason,
                code,
                retry_in_ms,
            }
        };
    }

    fn push(&mut self, kind: EntryKind) {
        self.entries.push(Rc::new(Entry {
            id: self.next_id,
            kind,
        }));
        self.next_id += 1;
        self.trim();
    }

    /// Drops the oldest entries past `MAX_ENTRIES`, but never a message still
    /// to deliver: that would silently lose what the user typed.
    fn trim(&mut self) {
        let mut excess = self.entries.len().saturating_sub(MAX_ENTRIES);
        if excess == 0 {
            return;
        }
        self.entries.retain(|e| {
            let outstanding =
                matches!(&e.kind, EntryKind::Sent(msg) if msg.delivery.is_outstanding());
            if excess > 0 && !outstanding {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests;
