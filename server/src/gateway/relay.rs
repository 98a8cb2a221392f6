//! One WebSocket relayed to its own TCP connection to the timestamp server: a
//! pump. Who may open one is decided before it starts (`ws_upgrade`); a
//! sign-out reaches it as a cancelled token.
//!
//! The two directions run as two futures in one task, so neither can block the
//! other (a browser flooding us while the server's replies wait would otherwise
//! deadlock), and when either ends the other is dropped with it: no task or
//! socket outlives its pair. Each direction holds one bounded buffer and waits
//! on its writer before reading more, so a slow reader on either side slows its
//! source down instead of growing memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use timecho_shared::reconnect::restart_reason;
use timecho_shared::relay::{close_code, frame_lines};
use timecho_shared::{reply, LineDecoder, Span};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, Instant};
use tracing::{debug, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use super::close_gate::GateHandle;
use super::per_user::UserSlot;
use super::session_socket::SessionSocket;
use super::upstream::{self, ConnectError, ReadHalf, WriteHalf};
use super::ws_handshake::Socket;
use super::Gateway;
use crate::connection::REST_AFTER;
use crate::heap_trim;
use crate::metrics::WsEnding;
use crate::signin::{self, Ended, SessionEnd};

/// Upstream bytes read at once; replies are relayed one frame per line.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// A reply is the request line plus a stamp; this leaves room for any stamp
/// a timecho server may write (its start-up refuses longer ones).
const STAMP_ROOM: usize = timecho_shared::stamp::MAX_STAMP_LEN + 3;
/// A reply without a newline (from a server with raw framing, such as the
/// tutorial's) is relayed once the server has been quiet this long.
const PARTIAL_QUIET: Duration = Duration::from_millis(50);
/// Most bytes of browser frames gathered into one upstream write.
const UPSTREAM_BATCH: usize = 64 * 1024;
/// What a browser is told when the timestamp server cannot be reached.
const UNREACHABLE: &str = "the timestamp server is unreachable";

/// Longest close reason RFC 6455 allows.
const MAX_REASON: usize = 123;

/// How a session ended, and so what the browser is told.
#[derive(Debug)]
enum Ending {
    UpstreamClosed,
    /// The upstream closed the connection for being quiet for its idle
    /// timeout, after answering everything: routine (`4002` with its notice).
    UpstreamIdle(String),
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
    fn counted_as(&self) -> WsEnding {
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
    fn close_frame(&self, reconnect_window: Duration) -> Option<(u16, String)> {
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
            Ending::UpstreamIdle(notice) => (close_code::IDLE, notice.clone()),
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

/// Who is on the browser side of a session.
pub struct Pair {
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
    pair: Pair,
    permit: OwnedSemaphorePermit,
    user_slot: Option<UserSlot>,
) -> impl std::future::Future<Output = ()> + Send {
    let ws = SessionSocket::new(ws);
    async move {
        let _permit = permit;
        let metrics = &gateway.metrics;
        metrics.ws_sessions.inc();
        metrics.ws_open.inc();
        relay(&ws, &gateway, pair).await;
        // Given back before the gauge falls: whoever sees it fall may open another.
        drop(user_slot);
        metrics.ws_open.dec();
    }
}

async fn relay(ws: &SessionSocket, gateway: &Gateway, pair: Pair) {
    let browser = pair.browser;
    let upstream = &gateway.upstream;
    let introduce = upstream.proxy_header.then_some(browser);
    let (tcp_read, tcp_write) =
        match upstream::connect(&upstream.addr, introduce, gateway.limits.connect_timeout).await {
            Ok(halves) => halves,
            Err(e) => {
                if !matches!(e, ConnectError::Introduce(..)) {
                    gateway.metrics.upstream_failures.inc();
                }
                gateway.metrics.ws_ended(WsEnding::UpstreamUnreachable);
                // The address and the error are internal: they go to the
                // log and the metrics, the visitor is told what happened.
                warn!("{e}");
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
                    let _ = timeout(gateway.limits.drain_timeout, &mut down).await;
                    Ending::Shutdown
                }
                // The browser closed: it is owed the replies to what it sent
                // before its Close (RFC 6455 lets us send them before ours).
                Ending::BrowserClosing => {
                    in_flight.closing.store(true, Ordering::Relaxed);
                    if in_flight.unanswered() == 0 {
                        Ending::BrowserClosed
                    } else {
                        match timeout(gateway.limits.drain_timeout, &mut down).await {
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
            if gateway.shutdown.is_cancelled() =>
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
        warn!(upstream = %gateway.upstream.addr, "lost the timestamp server: {e}");
    }
    gateway.metrics.ws_ended(ending.counted_as());
    if let Some((code, reason)) = ending.close_frame(gateway.config.reconnect_window) {
        if ws.send(close(code, reason)).await.is_ok() {
            // Read on until the browser's Close (held at the gate if it came
            // first): closing the socket with its frames unread would reset the
            // connection and lose our close frame.
            gate.open();
            let _ = timeout(gateway.limits.linger_timeout, async {
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

/// Browser frames become upstream lines. Frames that have already arrived
/// when one is read go upstream in the same write, so a pipelining client
/// costs one syscall per batch rather than per frame.
async fn browser_to_upstream(
    ws: &SessionSocket,
    mut tcp: WriteHalf,
    gateway: &Gateway,
    in_flight: &InFlight,
    gate: &GateHandle,
    mode: Mode,
) -> Ending {
    // Browsers answer pings by themselves; silence across two pings means the peer is gone.
    let dead_after = gateway.config.ping_interval * 2;
    let mut last_heard = Instant::now();
    // One timer for going quiet (the buffers a burst grew are given back) and
    // for going silent (the browser is gone), moved only when it fires
    // early: no timer work per frame.
    let timer = tokio::time::sleep(REST_AFTER.min(dead_after));
    tokio::pin!(timer);
    let mut rested = false;
    let mut out = Vec::new();
    // Polled at every wake-up: a child token, so that sessions do not all
    // take the server-wide token's lock per message (see `connection`).
    let cancelled = gateway.shutdown.child_token().cancelled_owned();
    tokio::pin!(cancelled);
    loop {
        let mut next = tokio::select! {
            biased;
            _ = &mut cancelled => {
                let _ = tcp.shutdown().await;
                return Ending::Shutdown;
            }
            next = ws.next() => next,
            // Only once every frame before the browser's Close has been read
            // (the branch above is polled first, and pends only then).
            () = gate.closing() => {
                let _ = tcp.shutdown().await;
                return Ending::BrowserClosing;
            }
            // Polled after `next` found nothing, as a renewal requires.
            () = &mut timer => {
                let quiet = last_heard.elapsed();
                if quiet >= dead_after {
                    return Ending::BrowserVanished;
                }
                let mut due = last_heard + REST_AFTER;
                if !rested && quiet >= REST_AFTER {
                    heap_trim::released(out.capacity());
                    out = Vec::new();
                    // Not at rest yet (a frame half-way, a write blocked): later.
                    rested = ws.renew_at_rest().await;
                    due = Instant::now() + REST_AFTER;
                }
                if rested {
                    due = last_heard + dead_after;
                }
                timer.as_mut().reset(due.min(last_heard + dead_after));
                continue;
            }
        };
        last_heard = Instant::now();
        if rested {
            rested = false;
            timer.as_mut().reset(last_heard + REST_AFTER);
        }
        out.clear();
        loop {
            match next {
                None => return Ending::BrowserVanished,
                Some(Err(e)) => return classify(e, gateway.max_frame),
                Some(Ok(Message::Text(text))) if text.len() > gateway.max_frame => {
                    return Ending::TooBig(gateway.max_frame)
                }
                Some(Ok(Message::Binary(data))) if data.len() > gateway.max_frame => {
                    return Ending::TooBig(gateway.max_frame)
                }
                Some(Ok(Message::Text(text))) if mode == Mode::Lines => {
                    for line in frame_lines(text.as_str()) {
                        out.extend_from_slice(line.as_bytes());
                        out.push(b'\n');
                        in_flight.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Binary(_))) if mode == Mode::Lines => return Ending::Binary,
                // The byte stream, unchanged; lines are counted for the close reason.
                Some(Ok(Message::Text(text))) => stream_out(&mut out, text.as_bytes(), in_flight),
                Some(Ok(Message::Binary(data))) => stream_out(&mut out, &data, in_flight),
                Some(Ok(Message::Close(_))) => return Ending::BrowserClosed,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
            if out.len() >= UPSTREAM_BATCH {
                break;
            }
            match ws.next().now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        if !out.is_empty() {
            let stall = gateway.limits.stall_timeout;
            match write_within(&mut tcp, &out, stall).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Ending::UpstreamFailed(e),
                Err(_) => return Ending::UpstreamStalled(stall),
            }
        }
    }
}

/// Writes `bytes` upstream, failing with `Elapsed` if the upstream takes none
/// of them for `stall`. Almost every write completes at once (the socket
/// buffer has room), so the timer is armed only for one that has to wait:
/// no timer work per message on the hot path.
async fn write_within(
    tcp: &mut WriteHalf,
    bytes: &[u8],
    stall: Duration,
) -> Result<std::io::Result<()>, tokio::time::error::Elapsed> {
    let mut write = std::pin::pin!(tcp.write_all(bytes));
    match (&mut write).now_or_never() {
        Some(done) => Ok(done),
        None => timeout(stall, write).await,
    }
}

fn stream_out(out: &mut Vec<u8>, bytes: &[u8], in_flight: &InFlight) {
    out.extend_from_slice(bytes);
    in_flight.sent.fetch_add(newlines(bytes), Ordering::Relaxed);
}

fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Tells apart the receive errors that deserve a close code of their own.
fn classify(e: tungstenite::Error, max: usize) -> Ending {
    match e {
        tungstenite::Error::Utf8(_) => Ending::InvalidUtf8,
        tungstenite::Error::Capacity(_) => Ending::TooBig(max),
        tungstenite::Error::Protocol(violation) => Ending::ProtocolViolation(violation.to_string()),
        _ => Ending::BrowserVanished,
    }
}

/// Upstream bytes become frames, as the session's mode says.
async fn upstream_to_browser(
    tcp: ReadHalf,
    ws: &SessionSocket,
    gateway: &Gateway,
    in_flight: &InFlight,
    signed_in: Option<SessionEnd>,
    mode: Mode,
) -> Ending {
    match mode {
        Mode::Lines => upstream_lines(tcp, ws, gateway, in_flight, signed_in).await,
        Mode::Binary => upstream_bytes(tcp, ws, gateway, in_flight, signed_in).await,
    }
}

/// `binary` sessions: each upstream read goes to the browser as one binary
/// frame, as it came.
async fn upstream_bytes(
    mut tcp: ReadHalf,
    ws: &SessionSocket,
    gateway: &Gateway,
    in_flight: &InFlight,
    signed_in: Option<SessionEnd>,
) -> Ending {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut ping = tokio::time::interval_at(
        Instant::now() + gateway.config.ping_interval,
        gateway.config.ping_interval,
    );
    let signed_out = signin::signed_out(signed_in);
    tokio::pin!(signed_out);
    loop {
        buf.reserve(READ_CHUNK);
        tokio::select! {
            read = tcp.read_buf(&mut buf) => match read {
                Ok(0) => {
                    return match in_flight.unanswered() {
                        0 => Ending::UpstreamClosed,
                        n => Ending::UpstreamClosedEarly(n),
                    };
                }
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    in_flight.answered.fetch_add(newlines(&chunk), Ordering::Relaxed);
                    if ws.send(Message::Binary(chunk)).await.is_err() {
                        return Ending::BrowserVanished;
                    }
                    if in_flight.paid_up() {
                        return Ending::BrowserClosed;
                    }
                }
                Err(e) => return Ending::UpstreamFailed(e),
            },
            ended = &mut signed_out => return Ending::from(ended),
            _ = ping.tick() => {
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    return Ending::BrowserVanished;
                }
            }
        }
    }
}

/// Upstream reply lines become text frames; all frames from one read are
/// flushed together. Frames share the read buffer's memory instead of copying.
/// A quiet session gives its buffers back and waits for the server's next
/// bytes without one.
async fn upstream_lines(
    mut tcp: ReadHalf,
    ws: &SessionSocket,
    gateway: &Gateway,
    in_flight: &InFlight,
    signed_in: Option<SessionEnd>,
) -> Ending {
    let mut decoder = LineDecoder::new(gateway.max_frame + STAMP_ROOM);
    // Allocated when the server first sends.
    let mut buf = BytesMut::new();
    let mut lines: Vec<Span> = Vec::new();
    let mut ping = tokio::time::interval_at(
        Instant::now() + gateway.config.ping_interval,
        gateway.config.ping_interval,
    );
    // One timer for a reply still waiting for its newline and for going
    // quiet, moved only when it fires early.
    let quiet = tokio::time::sleep(REST_AFTER);
    tokio::pin!(quiet);
    let mut last_read = Instant::now();
    let mut rested = true;
    let signed_out = signin::signed_out(signed_in);
    tokio::pin!(signed_out);
    // The server's idle notice, held back: if the connection then ends, the
    // session closes as routine with it; if more comes, it is sent as it was.
    let mut idle_notice: Option<Bytes> = None;
    loop {
        let resting = buf.capacity() == 0;
        if !resting
            && buf.capacity() - buf.len() < READ_CHUNK / 4
            && buf.len() < decoder.buffer_limit()
        {
            buf.reserve(READ_CHUNK);
        }
        let partial = !buf.is_empty() && !decoder.is_discarding();
        tokio::select! {
            read = read_upstream(&mut tcp, &mut buf) => match read {
                // The server is sending again.
                Ok(None) => {
                    buf.reserve(READ_CHUNK);
                    rested = false;
                    quiet.as_mut().reset(Instant::now() + REST_AFTER);
                }
                Ok(Some(0)) => {
                    if let Some(range) = decoder.take_partial_span(&buf) {
                        if let Some(held) = idle_notice.take() {
                            let _ = ws.feed(Message::Text(text_frame(held))).await;
                        }
                        let line = buf.split().freeze().slice(range);
                        let _ = ws.send(Message::Text(text_frame(line))).await;
                        in_flight.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    return match (in_flight.unanswered(), idle_notice) {
                        (0, Some(notice)) => Ending::UpstreamIdle(
                            reply::is_idle_notice(&notice).unwrap_or_default().to_owned(),
                        ),
                        (0, None) => Ending::UpstreamClosed,
                        (n, held) => {
                            if let Some(held) = held {
                                let _ = ws.send(Message::Text(text_frame(held))).await;
                            }
                            Ending::UpstreamClosedEarly(n)
                        }
                    };
                }
                Ok(Some(_)) => {
                    last_read = Instant::now();
                    lines.clear();
                    let mut frames = decoder.frames(&buf);
                    lines.extend(std::iter::from_fn(|| frames.next_span()));
                    let used = frames.consumed();
                    let chunk = buf.split_to(used).freeze();
                    in_flight.answered.fetch_add(lines.len() as u64, Ordering::Relaxed);
                    for span in lines.drain(..) {
                        if let Some(held) = idle_notice.take() {
                            if ws.feed(Message::Text(text_frame(held))).await.is_err() {
                                return Ending::BrowserVanished;
                            }
                        }
                        let text = match span {
                            Span::Line(range) => {
                                let line = chunk.slice(range);
                                if reply::is_idle_notice(&line).is_some() {
                                    idle_notice = Some(line);
                                    continue;
                                }
                                text_frame(line)
                            }
                            Span::TooLong => too_long_frame(decoder.max_len()),
                        };
                        if ws.feed(Message::Text(text)).await.is_err() {
                            return Ending::BrowserVanished;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return Ending::BrowserVanished;
                    }
                    if in_flight.paid_up() {
                        return Ending::BrowserClosed;
                    }
                    // Only a reply still waiting for its newline needs the
                    // timer now: whole lines cost no timer work.
                    if !buf.is_empty() {
                        quiet.as_mut().reset(last_read + PARTIAL_QUIET);
                    }
                }
                Err(e) => return Ending::UpstreamFailed(e),
            },
            () = &mut quiet, if partial || !rested => {
                if partial {
                    let pending = buf.split().freeze();
                    if let Some(range) = decoder.take_partial_span(&pending) {
                        let frame = text_frame(pending.slice(range));
                        in_flight.answered.fetch_add(1, Ordering::Relaxed);
                        if ws.send(Message::Text(frame)).await.is_err() {
                            return Ending::BrowserVanished;
                        }
                        if in_flight.paid_up() {
                            return Ending::BrowserClosed;
                        }
                    }
                    quiet.as_mut().reset(last_read + REST_AFTER);
                } else if last_read.elapsed() >= REST_AFTER {
                    heap_trim::released(buf.capacity() + lines.capacity() * size_of::<Span>());
                    buf = BytesMut::new();
                    lines = Vec::new();
                    rested = true;
                } else {
                    quiet.as_mut().reset(last_read + REST_AFTER);
                }
            }
            ended = &mut signed_out => return Ending::from(ended),
            _ = ping.tick() => {
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    return Ending::BrowserVanished;
                }
            }
        }
    }
}

/// Reads what the server sent into `buf`; with no buffer (a quiet session),
/// only waits until it sends and returns `None`.
async fn read_upstream(tcp: &mut ReadHalf, buf: &mut BytesMut) -> std::io::Result<Option<usize>> {
    if buf.capacity() == 0 {
        tcp.wait_readable().await?;
        return Ok(None);
    }
    tcp.read_buf(buf).await.map(Some)
}

impl From<Ended> for Ending {
    fn from(ended: Ended) -> Ending {
        match ended {
            Ended::SignedOut => Ending::SignedOut,
            Ended::TokenExpired => Ending::TokenExpired,
        }
    }
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

/// Reply bytes as a text frame; the server echoes bytes exactly, so a line that
/// is not UTF-8 (from another client's bytes, or another server) is repaired.
fn text_frame(line: Bytes) -> Utf8Bytes {
    match Utf8Bytes::try_from(line.clone()) {
        Ok(text) => text,
        Err(_) => Utf8Bytes::from(String::from_utf8_lossy(&line).into_owned()),
    }
}

fn too_long_frame(max: usize) -> Utf8Bytes {
    Utf8Bytes::from(format!(
        "{}reply longer than {max} bytes; discarded",
        reply::ERROR_PREFIX
    ))
}
