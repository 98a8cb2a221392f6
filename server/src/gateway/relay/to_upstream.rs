//! The browser's frames become upstream lines, batched into one write.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use timecho_shared::relay::frame_lines;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant};
use tungstenite::Message;

use super::ending::{classify, Ending};
use super::{newlines, InFlight, Mode};
use crate::connection::REST_AFTER;
use crate::gateway::state::Gateway;
use crate::gateway::upstream::WriteHalf;
use crate::gateway::ws::close_gate::GateHandle;
use crate::gateway::ws::session_socket::SessionSocket;
use crate::heap_trim;

/// Most bytes of browser frames gathered into one upstream write.
const UPSTREAM_BATCH: usize = 64 * 1024;

/// Browser frames become upstream lines. Frames that have already arrived
/// when one is read go upstream in the same write, so a pipelining client
/// costs one syscall per batch rather than per frame.
pub(super) async fn browser_to_upstream(
    ws: &SessionSocket,
    mut tcp: WriteHalf,
    gateway: &Gateway,
    in_flight: &InFlight,
    gate: &GateHandle,
    mode: Mode,
) -> Ending {
    // Browsers answer pings by themselves; silence across two pings means the peer is gone.
    let dead_after = gateway.settings.config.ping_interval * 2;
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
    let cancelled = gateway.runtime.shutdown.child_token().cancelled_owned();
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
                Some(Err(e)) => return classify(e, gateway.settings.config.max_frame),
                Some(Ok(Message::Text(text))) if text.len() > gateway.settings.config.max_frame => {
                    return Ending::TooBig(gateway.settings.config.max_frame)
                }
                Some(Ok(Message::Binary(data)))
                    if data.len() > gateway.settings.config.max_frame =>
                {
                    return Ending::TooBig(gateway.settings.config.max_frame)
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
            let stall = gateway.settings.limits.stall_timeout;
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
