//! One WebSocket relayed to its own TCP connection to the timestamp server: a
//! pump. Who may open one is decided before it starts (`ws::upgrade`); a
//! sign-out reaches it as a cancelled token.
//!
//! The two directions run as two futures in one task, so neither can block the
//! other (a browser flooding us while the server's replies wait would otherwise
//! deadlock), and when either ends the other is dropped with it: no task or
//! socket outlives its pair. Each direction holds one bounded buffer and waits
//! on its writer before reading more, so a slow reader on either side slows its
//! source down instead of growing memory.

mod ending;
mod to_browser;
mod to_upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use timecho_shared::relay::close_code;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout;
use tracing::{debug, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use super::per_user::UserSlot;
use super::state::Gateway;
use super::upstream::{self, ConnectError};
use super::ws::close_gate::GateHandle;
use super::ws::handshake::Socket;
use super::ws::session_socket::SessionSocket;
use crate::metrics::WsEnding;
use crate::signin::SessionEnd;
use ending::Ending;
use to_browser::upstream_to_browser;
pub(super) use to_browser::READ_CHUNK;
use to_upstream::browser_to_upstream;

/// What a browser is told when the timestamp server cannot be reached.
const UNREACHABLE: &str = "the timestamp server is unreachable";

/// Longest close reason RFC 6455 allows.
const MAX_REASON: usize = 123;

/// Who is on the browser side of a session.
pub struct BrowserSide {
    pub browser: SocketAddr,
    /// The sign-in session, when the page connected with its cookie.
    pub signed_in: Option<SessionEnd>,
    pub mode: Mode,
    /// Where the browser's Close frame waits until its replies are sent.
    pub gate: GateHandle,
}

/// What the frames carry (the negotiated subprotocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text frames of lines, one reply line per frame (no subprotocol, or
    /// `timecho-lines`).
    Lines,
    /// websockify's `binary`: the byte stream as it comes, both ways.
    Binary,
}

/// Relays one upgraded WebSocket until either side ends it; `permit` is its
/// place under `--max-websockets`, `user_slot` its sign-in's under
/// `--max-websockets-per-user`. Not an async fn, which would keep the socket
/// twice in the session's task.
pub fn session(
    ws: Socket,
    gateway: Arc<Gateway>,
    pair: BrowserSide,
    permit: OwnedSemaphorePermit,
    user_slot: Option<UserSlot>,
) -> impl std::future::Future<Output = ()> + Send {
    let ws = SessionSocket::new(ws);
    async move {
        let _permit = permit;
        let metrics = &gateway.runtime.metrics;
        metrics.ws_sessions.inc();
        metrics.ws_open.inc();
        relay(&ws, &gateway, pair).await;
        // Given back before the gauge falls: whoever sees it fall may open another.
        drop(user_slot);
        metrics.ws_open.dec();
    }
}

async fn relay(ws: &SessionSocket, gateway: &Gateway, pair: BrowserSide) {
    let browser = pair.browser;
    let upstream = &gateway.settings.upstream;
    let introduce = upstream.proxy_header.then_some(browser);
    let (tcp_read, tcp_write) = match upstream::connect(
        &upstream.addr,
        introduce,
        gateway.settings.limits.connect_timeout,
    )
    .await
    {
        Ok(halves) => halves,
        Err(e) => {
            if !matches!(e, ConnectError::Introduce(..)) {
                gateway.runtime.metrics.upstream_failures.inc();
            }
            gateway
                .runtime
                .metrics
                .ws_ended(WsEnding::UpstreamUnreachable);
            // The address and the error are internal: they go to the
            // log and the metrics, the visitor is told what happened.
            // Logged once per interval: every page of an outage meets it.
            if let Some(unlogged) = gateway.runtime.upstream_warnings.admit() {
                warn!(unlogged, "{e}");
            }
            let reason = UNREACHABLE.to_owned();
            let _ = ws.send(close(close_code::UPSTREAM_ERROR, reason)).await;
            return;
        }
    };
    debug!(upstream = %upstream.addr, "session open");

    let gate = pair.gate;
    let ending = {
        let in_flight = InFlight::default();
        let up = browser_to_upstream(ws, tcp_write, gateway, &in_flight, &gate, pair.mode);
        let down =
            upstream_to_browser(tcp_read, ws, gateway, &in_flight, pair.signed_in, pair.mode);
        tokio::pin!(up, down);
        tokio::select! {
            ending = &mut up => match ending {
                // Requests stopped and the upstream was half-closed: let it finish
                // answering what it already has, within the drain deadline.
                Ending::Shutdown => {
                    let _ = timeout(gateway.settings.limits.drain_timeout, &mut down).await;
                    Ending::Shutdown
                }
                // The browser closed: it is owed the replies to what it sent
                // before its Close (RFC 6455 lets us send them before ours).
                Ending::BrowserClosing => {
                    in_flight.closing.store(true, Ordering::Relaxed);
                    if in_flight.unanswered() == 0 {
                        Ending::BrowserClosed
                    } else {
                        match timeout(gateway.settings.limits.drain_timeout, &mut down).await {
                            Ok(Ending::UpstreamClosed) => Ending::BrowserClosed,
                            Ok(ending) => ending,
                            Err(_) => Ending::BrowserClosedOwed(in_flight.unanswered()),
                        }
                    }
                }
                other => other,
            },
            ending = &mut down => ending,
        }
    };
    // At shutdown the own listener drains too, and its close can reach the
    // relay before the shutdown does: the browser is told to come back.
    let ending = match ending {
        Ending::UpstreamClosed
        | Ending::UpstreamIdle(_)
        | Ending::UpstreamClosedEarly(_)
        | Ending::UpstreamFailed(_)
            if gateway.runtime.shutdown.is_cancelled() =>
        {
            Ending::Shutdown
        }
        other => other,
    };
    // A Close that broke the protocol is answered as such, not with 1000.
    let ending = match (ending, gate.close_verdict()) {
        (Ending::BrowserClosed | Ending::BrowserClosing, Some(code)) => Ending::BadClose(code),
        (ending, _) => ending,
    };
    debug!(?ending, "session closed");
    if let Ending::UpstreamFailed(e) = &ending {
        if let Some(unlogged) = gateway.runtime.upstream_warnings.admit() {
            let upstream = &gateway.settings.upstream.addr;
            warn!(%upstream, unlogged, "lost the timestamp server: {e}");
        }
    }
    gateway.runtime.metrics.ws_ended(ending.counted_as());
    if let Some((code, reason)) = ending.close_frame(gateway.settings.config.reconnect_window) {
        if ws.send(close(code, reason)).await.is_ok() {
            // Read on until the browser's Close (held at the gate if it came
            // first): closing the socket with its frames unread would reset the
            // connection and lose our close frame.
            gate.open();
            let _ = timeout(gateway.settings.limits.linger_timeout, async {
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    let _ = ws.close().await;
}

pub fn close(code: u16, mut reason: String) -> Message {
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from(reason),
    }))
}

/// Lines sent upstream and replies relayed back, so a session whose upstream
/// goes away can tell whether anything it was owed was lost. Both directions
/// run in one task; the atomics are never contended.
#[derive(Default)]
struct InFlight {
    sent: AtomicU64,
    answered: AtomicU64,
    /// The browser has closed: the reply side ends once nothing is owed.
    closing: AtomicBool,
}

impl InFlight {
    /// Whether the browser has closed and has everything it was owed.
    fn paid_up(&self) -> bool {
        self.closing.load(Ordering::Relaxed) && self.unanswered() == 0
    }

    fn unanswered(&self) -> u64 {
        let sent = self.sent.load(Ordering::Relaxed);
        sent.saturating_sub(self.answered.load(Ordering::Relaxed))
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}
