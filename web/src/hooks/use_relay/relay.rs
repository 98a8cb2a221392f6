//! The connection's life across sessions: at most one socket at a time, the
//! retry timer while there is none, the outbox's delivery and the clock
//! probes' timers, and the lines read handed to the page in order.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use timecho_shared::reconnect::{restart_delay_ms, restart_window_ms, was_healthy, Backoff};
use timecho_shared::relay::close_code;
use web_sys::{MessageEvent, WebSocket};
use yew::prelude::*;

use super::page_visible;
use super::session::{Event, Session};
use crate::browser::now_nanos;
use crate::state::{needs_sign_in, waits_for_use, Action, Chat, ABNORMAL_CLOSURE};

/// A hidden page sends no probes; it looks again this much later (ms).
const HIDDEN_RECHECK_MS: i64 = 5_000;

/// The connection's life across sessions: at most one socket at a time, and a
/// retry timer while there is none.
pub(super) struct Relay {
    url: Result<String, String>,
    dispatch: UseReducerDispatcher<Chat>,
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    session: Option<Session>,
    /// The session that just closed: its handler may still be on the stack,
    /// so it is dropped at the next connect rather than inside that handler.
    retired: Option<Session>,
    retry: Option<Timeout>,
    /// The next clock probe.
    probe: Option<Timeout>,
    backoff: Backoff,
    next_session_id: u64,
    stopped: bool,
    /// The last session ended for being idle: no retry is scheduled, the
    /// next connect waits for `wake`.
    idle: bool,
    /// Lines read, with their arrival times, not yet handed to the page (see
    /// `received`), and the task that will.
    arrived: Vec<(String, i64)>,
    flush: Option<Timeout>,
}

impl Relay {
    pub(super) fn new(url: Result<String, String>, dispatch: UseReducerDispatcher<Chat>) -> Self {
        Self {
            url,
            dispatch,
            inner: RefCell::default(),
        }
    }

    /// Begins (again) with a fresh backoff: after a sign-in, say.
    pub(super) fn start(self: &Rc<Self>) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.stopped = false;
            inner.backoff.reset();
        }
        self.connect();
    }

    fn connect(self: &Rc<Self>) {
        // The old session's last replies come before the new one's news.
        self.flush_arrived();
        let (id, attempt) = {
            let mut inner = self.inner.borrow_mut();
            if inner.stopped {
                return;
            }
            inner.retry = None;
            inner.retired = None;
            inner.idle = false;
            if let Some(old) = inner.session.take() {
                old.detach();
                let _ = old.socket.close();
            }
            inner.next_session_id += 1;
            (inner.next_session_id, inner.backoff.failures())
        };
        self.dispatch.dispatch(Action::Connecting { attempt });
        let opened = match &self.url {
            Ok(url) => {
                let relay = Rc::downgrade(self);
                Session::open(url, id, move |id, event| {
                    if let Some(relay) = relay.upgrade() {
                        relay.heard(id, event);
                    }
                })
            }
            Err(reason) => Err(reason.clone()),
        };
        match opened {
            Ok(session) => self.inner.borrow_mut().session = Some(session),
            Err(reason) => self.closed(None, ABNORMAL_CLOSURE, reason),
        }
    }

    /// Sends queued messages in order while the socket is open, then reports how
    /// far it got; anything left waits for the next connection.
    pub(super) fn deliver(&self, outbox: &[(u64, String)]) {
        let through = {
            let inner = self.inner.borrow();
            let Some(session) = inner.session.as_ref() else {
                return;
            };
            // A socket that is not open drops sends without an error.
            if session.socket.ready_state() != WebSocket::OPEN {
                return;
            }
            let at = now_nanos();
            let mut through = None;
            for (id, text) in outbox {
                if session.socket.send_with_str(text).is_err() {
                    break;
                }
                through = Some((*id, at));
            }
            through
        };
        if let Some((through, at)) = through {
            self.dispatch.dispatch(Action::Delivered { through, at });
        }
    }

    /// Sends `line`, a clock probe, at `due` (ns since the epoch), or none.
    pub(super) fn schedule_probe(self: &Rc<Self>, due: Option<i64>, line: String) {
        let timer = due.map(|due| {
            let delay = ((due - now_nanos()) / 1_000_000).clamp(0, i64::from(u32::MAX)) as u32;
            let relay = Rc::downgrade(self);
            Timeout::new(delay, move || probe_fired(&relay, line))
        });
        self.inner.borrow_mut().probe = timer;
    }

    pub(super) fn cancel_probe(&self) {
        self.inner.borrow_mut().probe = None;
    }

    fn send_probe(&self, line: &str) {
        let at = {
            let inner = self.inner.borrow();
            let Some(session) = inner.session.as_ref() else {
                return;
            };
            if session.socket.ready_state() != WebSocket::OPEN {
                return;
            }
            // Read before the send: a send time too early only widens the
            // bound, never makes it wrong.
            let at = now_nanos();
            if session.socket.send_with_str(line).is_err() {
                return;
            }
            at
        };
        self.dispatch.dispatch(Action::ProbeSent { at });
    }

    /// Connects if the last session ended idle: there is something to send,
    /// or someone to show the clock to.
    pub(super) fn wake(self: &Rc<Self>) {
        let idle = self.inner.borrow().idle;
        if idle {
            self.connect();
        }
    }

    pub(super) fn retry_now(self: &Rc<Self>) {
        let waiting = self.inner.borrow().retry.is_some();
        if waiting {
            self.connect();
        }
    }

    pub(super) fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.stopped = true;
        inner.retry = None;
        inner.arrived.clear();
        inner.flush = None;
        if let Some(session) = inner.session.take() {
            session.detach();
            let _ = session
                .socket
                .close_with_code_and_reason(close_code::GOING_AWAY, "page closed");
        }
    }

    /// What a session's socket reported.
    fn heard(self: &Rc<Self>, id: u64, event: Event) {
        match event {
            Event::Opened => self.opened(id),
            Event::Message(message) => self.received(id, message),
            Event::Closed { code, reason } => self.closed(Some(id), code, reason),
        }
    }

    fn opened(&self, id: u64) {
        {
            let mut inner = self.inner.borrow_mut();
            match inner.session.as_mut() {
                Some(s) if s.id == id => s.opened_at = Some(js_sys::Date::now()),
                _ => return,
            }
        }
        self.dispatch.dispatch(Action::Opened);
    }

    /// Notes the line and the time it arrived, and hands it to the page in a
    /// task of its own: rendering a reply takes a millisecond or more, and a
    /// burst's later frames would otherwise be timed after the rendering of
    /// the earlier ones (up to 50 ms for the 25th on loopback) instead of
    /// when they came. A time too late only widens the clock's bound.
    fn received(self: &Rc<Self>, id: u64, event: MessageEvent) {
        let at = arrival_nanos(&event);
        let mut inner = self.inner.borrow_mut();
        match inner.session.as_mut() {
            Some(s) if s.id == id => s.heard_anything = true,
            _ => return,
        }
        // The relay speaks text; a binary frame has no line to show.
        let Some(line) = event.data().as_string() else {
            return;
        };
        inner.arrived.push((line, at));
        if inner.flush.is_none() {
            let relay = Rc::downgrade(self);
            inner.flush = Some(Timeout::new(0, move || flush_fired(&relay)));
        }
    }

    /// Hands the lines read so far to the page, in order.
    fn flush_arrived(&self) {
        let arrived = {
            let mut inner = self.inner.borrow_mut();
            inner.flush = None;
            std::mem::take(&mut inner.arrived)
        };
        for (line, at) in arrived {
            self.dispatch.dispatch(Action::Received { line, at });
        }
    }

    /// The session `id` closed (or, for `None`, could not even be opened):
    /// schedule the next attempt, unless only a sign-in can help, and tell the
    /// page why.
    fn closed(self: &Rc<Self>, id: Option<u64>, code: u16, reason: String) {
        // Every reply that came before the close is the page's before the close.
        self.flush_arrived();
        let retry_in_ms = {
            let mut inner = self.inner.borrow_mut();
            if inner.stopped {
                return;
            }
            if let Some(id) = id {
                match inner.session.take() {
                    Some(s) if s.id == id => {
                        let lasted = s.opened_at.map(|t| js_sys::Date::now() - t);
                        if was_healthy(lasted, s.heard_anything) {
                            inner.backoff.reset();
                        }
                        s.detach();
                        inner.retired = Some(s);
                    }
                    other => {
                        inner.session = other;
                        return;
                    }
                }
            }
            let restart_window = match code {
                close_code::RESTART => restart_window_ms(&reason),
                // The token this socket was opened with expired; the cookie
                // has been renewed since: come back at once.
                close_code::TOKEN_EXPIRED => Some(0),
                _ => None,
            };
            if needs_sign_in(code) {
                None
            } else if waits_for_use(code) {
                inner.backoff.reset();
                inner.idle = true;
                None
            } else {
                // Full jitter: thousands of pages that lost the same gateway
                // come back spread out, not in the same millisecond.
                let unit = js_sys::Math::random();
                let delay = match restart_window {
                    // A planned restart: come back once, somewhere in its window.
                    Some(window) => {
                        inner.backoff.reset();
                        restart_delay_ms(window, unit)
                    }
                    None => inner.backoff.fail(unit),
                };
                let relay = Rc::downgrade(self);
                inner.retry = Some(Timeout::new(delay, move || retry_fired(&relay)));
                Some(delay)
            }
        };
        self.dispatch.dispatch(Action::Closed {
            code,
            reason,
            retry_in_ms,
        });
    }
}

/// The event's `timeStamp` (ms since the page's time origin) as
/// [`now_nanos`] counts, or now when the browser gives none.
fn arrival_nanos(event: &MessageEvent) -> i64 {
    let stamp = event.time_stamp();
    let origin = web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.time_origin());
    match origin {
        Some(origin) if stamp > 0.0 => ((origin + stamp) * 1e6) as i64,
        _ => now_nanos(),
    }
}

fn retry_fired(relay: &Weak<Relay>) {
    let Some(relay) = relay.upgrade() else {
        return;
    };
    // This very timer is running: forget it rather than drop it under itself
    // (a fired one-shot closure has already freed itself).
    let fired = relay.inner.borrow_mut().retry.take();
    if let Some(timer) = fired {
        timer.forget();
    }
    relay.connect();
}

fn flush_fired(relay: &Weak<Relay>) {
    let Some(relay) = relay.upgrade() else {
        return;
    };
    // As in `retry_fired`: this timer is running, so it is forgotten, not dropped.
    let fired = relay.inner.borrow_mut().flush.take();
    if let Some(timer) = fired {
        timer.forget();
    }
    relay.flush_arrived();
}

fn probe_fired(relay: &Weak<Relay>, line: String) {
    let Some(relay) = relay.upgrade() else {
        return;
    };
    // As in `retry_fired`: this timer is running, so it is forgotten, not dropped.
    let fired = relay.inner.borrow_mut().probe.take();
    if let Some(timer) = fired {
        timer.forget();
    }
    if page_visible() {
        relay.send_probe(&line);
    } else {
        relay.schedule_probe(Some(now_nanos() + HIDDEN_RECHECK_MS * 1_000_000), line);
    }
}
