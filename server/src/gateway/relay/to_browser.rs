//! The timestamp server's replies become frames: one text frame per reply
//! line, or (`binary` sessions) the bytes as they came.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use timecho_shared::{reply, LineDecoder, Span};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tungstenite::{Message, Utf8Bytes};

use super::ending::Ending;
use super::{newlines, InFlight, Mode};
use crate::connection::REST_AFTER;
use crate::gateway::state::Gateway;
use crate::gateway::upstream::ReadHalf;
use crate::gateway::ws::session_socket::SessionSocket;
use crate::heap_trim;
use crate::signin::{self, SessionEnd};

/// Upstream bytes read at once; replies are relayed one frame per line.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// A reply is the request line plus a stamp; this leaves room for any stamp
/// a timecho server may write (its start-up refuses longer ones).
const STAMP_ROOM: usize = timecho_shared::stamp::MAX_STAMP_LEN + 3;
/// A reply without a newline (from a server with raw framing, such as the
/// tutorial's) is relayed once the server has been quiet this long.
const PARTIAL_QUIET: Duration = Duration::from_millis(50);

/// Upstream bytes become frames, as the session's mode says.
pub(super) async fn upstream_to_browser(
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
    let mut ping = keepalive(gateway);
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
                if ping_browser(ws).await.is_err() {
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
    let mut decoder = LineDecoder::new(gateway.settings.config.max_frame + STAMP_ROOM);
    // Allocated when the server first sends.
    let mut buf = BytesMut::new();
    let mut lines: Vec<Span> = Vec::new();
    let mut ping = keepalive(gateway);
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
    let mut idle_notice: Option<HeldNotice> = None;
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
                            let _ = ws.feed(Message::Text(held.line)).await;
                        }
                        let line = buf.split().freeze().slice(range);
                        let _ = ws.send(Message::Text(text_frame(line))).await;
                        in_flight.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    return match (in_flight.unanswered(), idle_notice) {
                        (0, Some(held)) => Ending::UpstreamIdle(held.notice),
                        (0, None) => Ending::UpstreamClosed,
                        (n, held) => {
                            if let Some(held) = held {
                                let _ = ws.send(Message::Text(held.line)).await;
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
                            if ws.feed(Message::Text(held.line)).await.is_err() {
                                return Ending::BrowserVanished;
                            }
                        }
                        let text = match span {
                            Span::Line(range) => {
                                let line = chunk.slice(range);
                                if let Some(notice) = HeldNotice::of(&line) {
                                    idle_notice = Some(notice);
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
                if ping_browser(ws).await.is_err() {
                    return Ending::BrowserVanished;
                }
            }
        }
    }
}

/// The upstream's idle notice (`error: idle for 5m; closing`), held until
/// the connection ends: its line as a frame, and the notice as a close reason.
struct HeldNotice {
    line: Utf8Bytes,
    notice: Utf8Bytes,
}

impl HeldNotice {
    /// The notice of `line`, if it is one; parsed once, where it arrives.
    fn of(line: &Bytes) -> Option<HeldNotice> {
        let notice = reply::is_idle_notice(line)?;
        let notice = Utf8Bytes::try_from(line.slice_ref(notice.as_bytes())).ok()?;
        let line = Utf8Bytes::try_from(line.clone()).ok()?;
        Some(HeldNotice { line, notice })
    }
}

/// The browser's keepalive, the same in both reply pumps: a Ping every
/// `--ping-interval`, the first one interval after the session opens.
fn keepalive(gateway: &Gateway) -> tokio::time::Interval {
    let every = gateway.settings.config.ping_interval;
    tokio::time::interval_at(Instant::now() + every, every)
}

async fn ping_browser(ws: &SessionSocket) -> Result<(), tungstenite::Error> {
    ws.send(Message::Ping(Bytes::new())).await
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
