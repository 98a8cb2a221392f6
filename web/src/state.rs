//! The page's model: the transcript, the connection, the outbox, and the one
//! reducer that changes them. Free of web-sys, so its tests run natively.

mod access;
mod clock;
mod close;
mod entry;
mod settings;

use std::rc::Rc;

use timecho_shared::api::ServerConfig;
use yew::Reducible;

pub use access::{session_checked, signed_in, signed_out, Access, ApiReply, SessionAnswer};
pub use clock::{measurable, sparkline_points, sparkline_scale, wall_clock_text, ClockPanel};
pub use close::{describe_close, needs_sign_in, waits_for_use, ABNORMAL_CLOSURE};
pub use entry::{ClockTime, Delivery, Entry, EntryKind, Outgoing};
pub use settings::{Settings, StampSettings};

use close::Blame;

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

    /// Messages waiting for the socket, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = (u64, &str)> {
        self.outgoing()
            .filter(|(_, msg)| msg.delivery == Delivery::Queued)
            .map(|(id, msg)| (id, msg.text.as_str()))
    }

    pub fn queued_count(&self) -> usize {
        self.outbox().count()
    }

    fn outgoing(&self) -> impl Iterator<Item = (u64, &Outgoing)> {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::Sent(msg) => Some((e.id, msg)),
            _ => None,
        })
    }

    fn submit(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        let bytes = text.len();
        if bytes <= self.settings.max_message_bytes {
            self.push(EntryKind::Sent(Outgoing::queued(text)));
            return;
        }
        self.push(EntryKind::Sent(Outgoing {
            delivery: Delivery::Undelivered,
            ..Outgoing::queued(text)
        }));
        self.push(self.too_long(bytes));
    }

    fn too_long(&self, bytes: usize) -> EntryKind {
        EntryKind::Error(format!(
            "Not sent: the message is {bytes} bytes, and the server takes at most \
             {} in one line.",
            self.settings.max_message_bytes
        ))
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

    /// Messages in flight when a session ended go back to the outbox, but for
    /// one the close blames: the largest, once it has struck out.
    fn settle_in_flight(&mut self, blame: Blame) {
        let strike = u8::from(blame == Blame::Suspects);
        let struck_out = |msg: &Outgoing| match blame {
            Blame::Nobody => false,
            Blame::Largest => true,
            Blame::Suspects => msg.strikes.saturating_add(strike) >= MAX_STRIKES,
        };
        let given_up = self
            .outgoing()
            .filter(|(_, msg)| msg.delivery == Delivery::InFlight && struck_out(msg))
            .max_by_key(|(id, msg)| (msg.text.len(), std::cmp::Reverse(*id)))
            .map(|(id, _)| id);
        self.update_outgoing(|id, msg| {
            (msg.delivery == Delivery::InFlight).then(|| Outgoing {
                delivery: if Some(id) == given_up {
                    Delivery::Undelivered
                } else {
                    Delivery::Queued
                },
                strikes: msg.strikes.saturating_add(strike),
                text: msg.text.clone(),
                sent_at: None,
            })
        });
    }

    fn push(&mut self, kind: EntryKind) {
        self.entries.push(Rc::new(Entry {
            id: self.next_id,
            kind,
        }));
        self.next_id += 1;
        self.trim();
    }

    /// Replaces each sent message for which `change` returns a new state,
    /// oldest first.
    fn update_outgoing(&mut self, mut change: impl FnMut(u64, &Outgoing) -> Option<Outgoing>) {
        for entry in &mut self.entries {
            if let EntryKind::Sent(msg) = &entry.kind {
                if let Some(next) = change(entry.id, msg) {
                    *entry = Rc::new(Entry {
                        id: entry.id,
                        kind: EntryKind::Sent(next),
                    });
                }
            }
        }
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
mod tests {
    use timecho_shared::api::StampInfo;
    use timecho_shared::relay::close_code;
    use timecho_shared::{Precision, StampFormat, TimeFormat, DEFAULT_MAX_LINE};

    use super::*;

    fn after(actions: impl IntoIterator<Item = Action>) -> Chat {
        let mut chat = Chat::default();
        for a in actions {
            chat.apply(a);
        }
        chat
    }

    fn kinds(chat: &Chat) -> Vec<EntryKind> {
        chat.entries.iter().map(|e| e.kind.clone()).collect()
    }

    fn deliveries(chat: &Chat) -> Vec<(String, Delivery)> {
        chat.entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Sent(msg) => Some((msg.text.clone(), msg.delivery)),
                _ => None,
            })
            .collect()
    }

    fn closed(code: u16, reason: &str) -> Action {
        Action::Closed {
            code,
            reason: reason.into(),
            retry_in_ms: Some(500),
        }
    }

    fn submit(text: &str) -> Action {
        Action::Submit(text.into())
    }

    fn echo(text: &str) -> Action {
        Action::Received {
            line: format!("[Tue Nov 24 21:35:36 2026] {text}"),
            at: 0,
        }
    }

    fn ctime_config() -> Action {
        let utc_ctime = StampFormat {
            utc: true,
            ..StampFormat::default()
        };
        Action::Configured(ServerConfig::new(
            DEFAULT_MAX_LINE,
            DEFAULT_MAX_LINE,
            StampInfo::new(&utc_ctime, 0),
            false,
        ))
    }

    #[test]
    fn a_reply_shows_the_round_trip_of_its_message() {
        let chat = after([
            Action::Opened,
            submit("hello"),
            Action::Delivered {
                through: 1,
                at: 5_000_000,
            },
            Action::Received {
                line: "[Tue Nov 24 21:35:36 2026] hello".into(),
                at: 7_250_000,
            },
        ]);
        assert!(matches!(
            &chat.entries[1].kind,
            EntryKind::Reply {
                rtt: Some(2_250_000),
                ..
            }
        ));
        assert_eq!(chat.clock.recent_rtts(7_250_000).count(), 1);
    }

    #[test]
    fn a_clock_probes_echo_is_measured_and_not_shown() {
        let mut chat = after([ctime_config(), Action::Opened, submit("hello")]);
        let probe = chat.clock.next_probe_line();
        // Sent between the message and its echo: replies come in order.
        chat.apply(Action::Delivered { through: 2, at: 0 });
        chat.apply(Action::ProbeSent { at: 1_000_000 });
        chat.apply(echo("hello"));
        chat.apply(Action::Received {
            line: format!("[Tue Nov 24 21:35:36 2026] {probe}"),
            at: 3_000_000,
        });
        assert_eq!(chat.entries.len(), 2, "{:?}", kinds(&chat));
        assert!(matches!(&chat.entries[1].kind, EntryKind::Reply { text, .. } if text == "hello"));
        assert!(chat.clock.bounds().is_some());
        assert_eq!(
            chat.clock.recent_rtts(3_000_000).collect::<Vec<_>>(),
            // The message's (sent and echoed at 0 here), then the probe's.
            vec![(0, 0), (3_000_000, 2_000_000)]
        );
    }

    #[test]
    fn a_lost_connection_forgets_the_probe_on_it() {
        let mut chat = after([ctime_config(), Action::Opened]);
        assert_eq!(chat.probe_due(0), Some(0));
        chat.apply(Action::ProbeSent { at: 0 });
        assert_eq!(chat.probe_due(0), None);
        chat.apply(closed(close_code::UPSTREAM_ERROR, "gone"));
        assert_eq!(chat.probe_due(0), None, "not while disconnected");
        assert!(chat.clock.next_probe_at(0).is_some());
        chat.apply(Action::Opened);
        assert_eq!(chat.probe_due(0), Some(crate::state::clock::MIN_GAP));
    }

    #[test]
    fn probes_wait_for_the_stamp_format_and_fit_the_line_limit() {
        assert_eq!(after([Action::Opened]).probe_due(0), None, "format unknown");
        let strftime = StampFormat {
            format: TimeFormat::Strftime("%H:%M:%S".into()),
            ..StampFormat::default()
        };
        let unreadable = Action::Configured(ServerConfig::new(
            DEFAULT_MAX_LINE,
            DEFAULT_MAX_LINE,
            StampInfo::new(&strftime, 0),
            false,
        ));
        assert_eq!(after([unreadable, Action::Opened]).probe_due(0), None);
        // `timecho-clock-probe 1` is 21 bytes: a 20-byte limit would end the
        // session for it (1009).
        let tight = |max_line| {
            Action::Configured(ServerConfig::new(
                max_line,
                DEFAULT_MAX_LINE,
                StampInfo::new(&StampFormat::default(), 0),
                false,
            ))
        };
        assert_eq!(after([tight(20), Action::Opened]).probe_due(0), None);
        assert_eq!(after([tight(21), Action::Opened]).probe_due(0), Some(0));
    }

    #[test]
    fn starts_connecting_with_an_empty_transcript() {
        let chat = Chat::default();
        assert_eq!(chat.connection.state_name(), "connecting");
        assert!(chat.entries.is_empty());
    }

    #[test]
    fn a_message_is_queued_then_in_flight_then_echoed() {
        let chat = after([Action::Opened, submit("hello")]);
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "hello")]);

        let chat = after([
            Action::Opened,
            submit("hello"),
            Action::Delivered { through: 1, at: 0 },
        ]);
        assert_eq!(chat.queued_count(), 0);
        assert_eq!(deliveries(&chat), [("hello".into(), Delivery::InFlight)]);

        let chat = after([
            Action::Opened,
            submit("hello"),
            Action::Delivered { through: 1, at: 0 },
            echo("hello"),
        ]);
        assert_eq!(deliveries(&chat), [("hello".into(), Delivery::Echoed)]);
        assert!(matches!(&chat.entries[1].kind, EntryKind::Reply { text, .. } if text == "hello"));
    }

    #[test]
    fn empty_submit_is_ignored_but_whitespace_is_sent_as_is() {
        let chat = after([submit(""), submit("  ")]);
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "  ")]);
    }

    #[test]
    fn messages_typed_while_disconnected_queue_in_order_and_deliver_partially() {
        let chat = after([
            closed(ABNORMAL_CLOSURE, ""),
            submit("a"),
            submit("b"),
            submit("c"),
            Action::Opened,
            Action::Delivered { through: 2, at: 0 },
        ]);
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(3, "c")]);
    }

    #[test]
    fn each_reply_answers_the_oldest_message_in_flight() {
        let chat = after([
            Action::Opened,
            submit("a"),
            submit("b"),
            Action::Delivered { through: 2, at: 0 },
            Action::Received {
                line: "error: line longer than 65536 bytes; discarded".into(),
                at: 0,
            },
        ]);
        assert_eq!(
            deliveries(&chat),
            [
                ("a".into(), Delivery::Echoed),
                ("b".into(), Delivery::InFlight)
            ]
        );
    }

    #[test]
    fn messages_in_flight_when_the_session_dies_are_queued_again() {
        let chat = after([
            Action::Opened,
            submit("a"),
            submit("b"),
            Action::Delivered { through: 2, at: 0 },
            echo("a"),
            closed(close_code::UPSTREAM_ERROR, "upstream down"),
        ]);
        assert_eq!(
            deliveries(&chat),
            [
                ("a".into(), Delivery::Echoed),
                ("b".into(), Delivery::Queued)
            ]
        );
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(2, "b")]);
    }

    #[test]
    fn the_largest_message_in_flight_takes_the_blame_for_a_too_big_close() {
        let chat = after([
            Action::Opened,
            submit("a"),
            submit("huge"),
            submit("b"),
            Action::Delivered { through: 3, at: 0 },
            closed(close_code::TOO_BIG, ""),
        ]);
        assert_eq!(
            deliveries(&chat),
            [
                ("a".into(), Delivery::Queued),
                ("huge".into(), Delivery::Undelivered),
                ("b".into(), Delivery::Queued),
            ]
        );
        assert!(matches!(
            chat.entries.last().map(|e| &e.kind),
            Some(EntryKind::Error(e)) if e == "Disconnected: a message was too big for the gateway"
        ));
    }

    #[test]
    fn a_message_that_keeps_ending_sessions_strikes_out() {
        let mut chat = after([submit("poison")]);
        let session = [
            Action::Opened,
            Action::Delivered { through: 1, at: 0 },
            closed(close_code::NORMAL, ""),
        ];
        for round in 1..=MAX_STRIKES {
            session.iter().cloned().for_each(|a| chat.apply(a));
            let expected = if round < MAX_STRIKES {
                Delivery::Queued
            } else {
                Delivery::Undelivered
            };
            assert_eq!(
                deliveries(&chat),
                [("poison".into(), expected)],
                "round {round}"
            );
        }
    }

    #[test]
    fn an_unreachable_upstream_never_costs_a_queued_message() {
        let mut chat = after([submit("patience")]);
        for _ in 0..20 {
            chat.apply(Action::Opened);
            chat.apply(Action::Delivered { through: 1, at: 0 });
            chat.apply(closed(close_code::UPSTREAM_ERROR, "upstream down"));
        }
        assert_eq!(deliveries(&chat), [("patience".into(), Delivery::Queued)]);
    }

    #[test]
    fn a_message_too_long_for_one_line_is_kept_but_not_sent() {
        let long = "x".repeat(DEFAULT_MAX_LINE + 1);
        let chat = after([Action::Opened, Action::Submit(long.clone())]);
        assert_eq!(chat.queued_count(), 0);
        assert_eq!(deliveries(&chat), [(long, Delivery::Undelivered)]);
        assert!(matches!(
            chat.entries.last().map(|e| &e.kind),
            Some(EntryKind::Error(e)) if e.starts_with("Not sent: the message is 65537 bytes")
        ));
        let fits = after([Action::Submit("y".repeat(DEFAULT_MAX_LINE))]);
        assert_eq!(fits.queued_count(), 1);
    }

    fn configured(max_line: usize) -> Action {
        let stamp = StampInfo::new(&StampFormat::default(), 0);
        Action::Configured(ServerConfig::new(max_line, max_line, stamp, false))
    }

    #[test]
    fn the_servers_own_line_limit_applies_once_it_is_known() {
        let chat = after([configured(10), submit("0123456789"), submit("0123456789a")]);
        assert_eq!(chat.settings.max_message_bytes, 10);
        assert_eq!(
            deliveries(&chat),
            [
                ("0123456789".into(), Delivery::Queued),
                ("0123456789a".into(), Delivery::Undelivered)
            ]
        );
        assert_eq!(
            chat.entries.last().map(|e| &e.kind),
            Some(&EntryKind::Error(
                "Not sent: the message is 11 bytes, and the server takes at most 10 in one line."
                    .into()
            ))
        );
        // A larger limit than the default is honoured too.
        let chat = after([
            configured(DEFAULT_MAX_LINE * 2),
            submit(&"z".repeat(DEFAULT_MAX_LINE + 1)),
        ]);
        assert_eq!(chat.queued_count(), 1);
    }

    #[test]
    fn queued_messages_over_the_servers_limit_are_given_up_when_it_arrives() {
        let chat = after([
            Action::Opened,
            submit("in flight, long"),
            Action::Delivered { through: 1, at: 0 },
            submit("short"),
            submit("far too long"),
            submit("also too long"),
            configured(5),
        ]);
        assert_eq!(
            deliveries(&chat),
            [
                ("in flight, long".into(), Delivery::InFlight),
                ("short".into(), Delivery::Queued),
                ("far too long".into(), Delivery::Undelivered),
                ("also too long".into(), Delivery::Undelivered),
            ]
        );
        let errors: Vec<_> = kinds(&chat)
            .into_iter()
            .filter(|k| matches!(k, EntryKind::Error(_)))
            .collect();
        assert_eq!(
            errors,
            [12, 13].map(|bytes| EntryKind::Error(format!(
                "Not sent: the message is {bytes} bytes, and the server takes at most 5 in one line."
            )))
        );
    }

    #[test]
    fn the_stamp_layout_is_kept_and_survives_signing_out() {
        let format = StampFormat {
            format: TimeFormat::Unix,
            precision: Precision::Micros,
            utc: true,
        };
        let config = ServerConfig::new(100, 100, StampInfo::new(&format, 0), true);
        let chat = after([Action::Configured(config), Action::SignedOut]);
        assert_eq!(
            chat.settings.stamp,
            Some(StampSettings {
                format,
                utc_offset_seconds: 0
            })
        );
        assert_eq!(chat.settings.max_message_bytes, 100);
    }

    #[test]
    fn gateway_reason_is_shown_as_sent() {
        let chat = after([closed(
            close_code::UPSTREAM_ERROR,
            "upstream 127.0.0.1:7 refused",
        )]);
        assert_eq!(
            chat.connection,
            Connection::Disconnected {
                reason: "upstream 127.0.0.1:7 refused".into(),
                code: close_code::UPSTREAM_ERROR,
                retry_in_ms: Some(500),
            }
        );
    }

    #[test]
    fn failed_retries_stay_out_of_the_transcript() {
        let chat = after([
            closed(ABNORMAL_CLOSURE, ""),
            Action::Connecting { attempt: 1 },
            closed(ABNORMAL_CLOSURE, ""),
        ]);
        assert!(chat.entries.is_empty());
        assert_eq!(chat.connection.state_name(), "disconnected");
    }

    #[test]
    fn an_outage_is_noted_once_and_its_end_at_the_first_reply() {
        let down = || closed(close_code::UPSTREAM_ERROR, "upstream down");
        let chat = after([
            Action::Opened,
            down(),
            // The gateway accepts, then closes at once, while upstream is down.
            Action::Opened,
            down(),
            submit("typed during the outage"),
            Action::Opened,
            down(),
            Action::Opened,
            echo("typed during the outage"),
        ]);
        let kinds = kinds(&chat);
        assert_eq!(
            kinds[0],
            EntryKind::Error("Disconnected: upstream down".into())
        );
        assert!(matches!(kinds[1], EntryKind::Sent(_)));
        assert_eq!(kinds[2], EntryKind::Notice("Reconnected.".into()));
        assert!(matches!(kinds[3], EntryKind::Reply { .. }));
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn orderly_closes_are_notices_not_errors() {
        let chat = after([Action::Opened, closed(close_code::NORMAL, "")]);
        assert_eq!(
            kinds(&chat),
            [EntryKind::Notice(
                "Disconnected: the timestamp server closed the connection".into()
            )]
        );
    }

    #[test]
    fn a_token_renewal_close_leaves_the_transcript_alone() {
        let chat = after([
            Action::Opened,
            closed(close_code::TOKEN_EXPIRED, "sign-in token expired"),
        ]);
        assert_eq!(kinds(&chat), []);
    }

    #[test]
    fn an_idle_close_is_quiet_and_the_next_message_waits_for_the_socket() {
        let chat = after([
            Action::Opened,
            submit("a"),
            Action::Delivered { through: 1, at: 0 },
            echo("a"),
            Action::Closed {
                code: close_code::IDLE,
                reason: "idle for 5m; closing".into(),
                retry_in_ms: None,
            },
        ]);
        assert_eq!(chat.connection, Connection::Idle);
        assert_eq!(chat.connection.state_name(), "idle");
        let mut chat = chat;
        for a in [
            submit("b"),
            Action::Connecting { attempt: 0 },
            Action::Opened,
            Action::Delivered { through: 3, at: 0 },
            echo("b"),
        ] {
            chat.apply(a);
        }
        // No "Disconnected", no "Reconnected.": the sent messages and their replies only.
        let kinds = kinds(&chat);
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(kinds
            .iter()
            .all(|k| matches!(k, EntryKind::Sent(_) | EntryKind::Reply { .. })));
        assert_eq!(
            deliveries(&chat),
            [
                ("a".into(), Delivery::Echoed),
                ("b".into(), Delivery::Echoed)
            ]
        );
    }

    #[test]
    fn reconnecting_after_an_idle_close_shows_no_old_error() {
        let chat = after([
            Action::Opened,
            closed(close_code::IDLE, "idle for 300s; closing"),
            Action::Connecting { attempt: 0 },
        ]);
        assert_eq!(
            chat.connection,
            Connection::Connecting {
                attempt: 0,
                last_error: None
            }
        );
    }

    #[test]
    fn reconnecting_keeps_the_last_error_visible() {
        let chat = after([
            closed(ABNORMAL_CLOSURE, ""),
            Action::Connecting { attempt: 1 },
        ]);
        assert_eq!(
            chat.connection,
            Connection::Connecting {
                attempt: 1,
                last_error: Some("could not reach the gateway".into()),
            }
        );
        let chat = after([Action::Opened, Action::Connecting { attempt: 0 }]);
        assert_eq!(
            chat.connection,
            Connection::Connecting {
                attempt: 0,
                last_error: None
            }
        );
    }

    #[test]
    fn long_transcripts_drop_the_oldest_but_never_an_undelivered_message() {
        let mut chat = after([submit("keep me")]);
        for i in 0..MAX_ENTRIES + 10 {
            chat.apply(Action::Received {
                line: format!("[1793782701] {i}"),
                at: 0,
            });
        }
        assert_eq!(chat.entries.len(), MAX_ENTRIES);
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "keep me")]);
        assert!(matches!(
            &chat.entries[1].kind,
            EntryKind::Reply { text, .. } if text == "11"
        ));
    }

    fn sign_in_form(error: Option<&str>, busy: bool) -> Access {
        Access::SignedOut {
            error: error.map(str::to_owned),
            busy,
            just_signed_out: false,
        }
    }

    #[test]
    fn the_socket_waits_until_the_server_says_who_may_connect() {
        let chat = Chat::default();
        assert_eq!(chat.access, Access::Checking);
        assert!(!chat.access.may_connect());
        let open = after([Action::Session(SessionAnswer::Open)]);
        assert!(open.access.may_connect());
    }

    #[test]
    fn signing_in_shows_busy_then_the_servers_reason_then_the_user() {
        let mut chat = after([Action::Session(SessionAnswer::SignInNeeded {
            reason: None,
        })]);
        assert_eq!(chat.access, sign_in_form(None, false));
        chat.apply(Action::SigningIn);
        assert_eq!(chat.access, sign_in_form(None, true));
        chat.apply(Action::SignInRefused("wrong user name or password".into()));
        assert_eq!(
            chat.access,
            sign_in_form(Some("wrong user name or password"), false)
        );
        chat.apply(Action::SigningIn);
        assert_eq!(chat.access, sign_in_form(None, true));
        chat.apply(Action::Session(SessionAnswer::SignedIn("ada".into())));
        assert_eq!(chat.access.user(), Some("ada"));
        assert!(chat.access.may_connect());
    }

    #[test]
    fn a_policy_close_brings_the_form_back_and_keeps_messages_queued() {
        let chat = after([
            Action::Session(SessionAnswer::SignedIn("ada".into())),
            Action::Opened,
            submit("hello"),
            Action::Delivered { through: 1, at: 0 },
            Action::Closed {
                code: close_code::POLICY,
                reason: "sign in first".into(),
                retry_in_ms: None,
            },
        ]);
        assert_eq!(
            chat.access,
            sign_in_form(Some("Your session has ended: sign in first"), false)
        );
        assert_eq!(
            chat.connection,
            Connection::Disconnected {
                reason: "sign in first".into(),
                code: close_code::POLICY,
                retry_in_ms: None,
            }
        );
        assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "hello")]);
    }

    #[test]
    fn a_policy_close_on_an_open_page_asks_for_a_sign_in() {
        let chat = after([
            Action::Session(SessionAnswer::Open),
            Action::Closed {
                code: close_code::POLICY,
                reason: "sign in first".into(),
                retry_in_ms: None,
            },
        ]);
        assert_eq!(
            chat.access,
            sign_in_form(Some("The server asks you to sign in: sign in first"), false)
        );
    }

    #[test]
    fn signing_out_clears_the_transcript_and_shows_the_form() {
        let chat = after([
            Action::Session(SessionAnswer::SignedIn("ada".into())),
            Action::Opened,
            submit("secret"),
            Action::Delivered { through: 1, at: 0 },
            echo("secret"),
            Action::SignedOut,
        ]);
        assert!(chat.entries.is_empty());
        // The form confirms it: the user sees they are out, not just a form.
        assert_eq!(
            chat.access,
            Access::SignedOut {
                error: None,
                busy: false,
                just_signed_out: true
            }
        );
        assert_eq!(chat.connection.state_name(), "connecting");
        // Ids go on, so list keys never repeat.
        let chat = {
            let mut c = chat;
            c.apply(submit("next"));
            c
        };
        assert_eq!(chat.entries[0].id, 3);
    }

    #[test]
    fn the_gateways_close_after_signing_out_keeps_the_confirmation() {
        let chat = after([
            Action::Session(SessionAnswer::SignedIn("ada".into())),
            Action::Opened,
            Action::SignedOut,
            closed(close_code::POLICY, "signed out"),
        ]);
        assert_eq!(
            chat.access,
            Access::SignedOut {
                error: None,
                busy: false,
                just_signed_out: true
            }
        );
    }

    #[test]
    fn the_signed_out_note_goes_once_the_user_signs_in_again() {
        let signed_out = [
            Action::Session(SessionAnswer::SignedIn("ada".into())),
            Action::SignedOut,
        ];
        let mut chat = after(signed_out.clone());
        chat.apply(Action::SigningIn);
        assert_eq!(chat.access, sign_in_form(None, true));
        let mut chat = after(signed_out);
        chat.apply(Action::SignInRefused("wrong user name or password".into()));
        assert_eq!(
            chat.access,
            sign_in_form(Some("wrong user name or password"), false)
        );
    }

    #[test]
    fn a_failed_sign_out_stays_signed_in_and_says_why() {
        let chat = after([
            Action::Session(SessionAnswer::SignedIn("ada".into())),
            Action::SignOutFailed("could not reach the server: Failed to fetch".into()),
        ]);
        assert_eq!(chat.access.user(), Some("ada"));
        assert_eq!(
            kinds(&chat),
            [EntryKind::Error(
                "Could not sign out: could not reach the server: Failed to fetch".into()
            )]
        );
    }

    #[test]
    fn ids_stay_unique_after_trimming() {
        let mut chat = after([Action::Opened]);
        for i in 0..MAX_ENTRIES * 2 {
            chat.apply(Action::Submit(i.to_string()));
            chat.apply(Action::Delivered {
                through: u64::MAX,
                at: 0,
            });
            chat.apply(echo(&i.to_string()));
        }
        let mut ids: Vec<_> = chat.entries.iter().map(|e| e.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), MAX_ENTRIES);
    }
}
