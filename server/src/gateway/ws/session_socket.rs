//! A session's WebSocket as the relay's two pumps share it, and how it is
//! renewed when the session goes quiet.
//!
//! tungstenite's frame layer keeps its read and write buffers at their
//! high-water mark: after one 60 KB message a session would hold about
//! 128 KiB in them for as long as it lives, and the layer has no way to
//! shrink them. A protocol layer with nothing half-read and nothing unsent is
//! in the same state as a new one, so at rest the relay builds a new one over
//! the same byte stream, and the old buffers go with the old one.
//!
//! Even a new layer allocates its whole read buffer at once (4 KiB, a third
//! of what an idle bridged session holds), and reads at most that much per
//! call. So the layer built at rest gets a read buffer of [`RESTING_READ`]
//! bytes, and the first time a read finds nothing more after the session woke
//! up (again a moment with nothing half-read), it is swapped for one with the
//! full buffer: one small read per wake-up, full-size reads while busy.
//!
//! The two pumps run in one task and are never polled at once; each poll
//! takes the lock for as long as the protocol layer's own poll lasts, so it
//! is never contended (futures' `split` takes a lock per poll as well).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::{FutureExt, Sink, Stream};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error, Message};

use super::handshake::Socket;

/// The read buffer of a protocol layer built at rest: enough for a frame
/// header and a short line, read before the full buffer is back.
const RESTING_READ: usize = 256;

pub struct SessionSocket {
    ws: Mutex<Layer>,
    config: WebSocketConfig,
    resting: WebSocketConfig,
}

struct Layer {
    /// `None` only for the moment of a renewal, under the lock.
    socket: Option<Socket>,
    /// Built at rest, with the small read buffer.
    resting: bool,
    /// A message has come since that layer was built.
    woke: bool,
    /// A Close has gone either way: the layer keeps the close handshake's
    /// state, so it is never renewed again (a fresh one would answer the
    /// peer's Close with a second Close of its own).
    closing: bool,
}

impl SessionSocket {
    pub fn new(ws: Socket) -> Self {
        let config = *ws.get_config();
        Self {
            ws: Mutex::new(Layer {
                socket: Some(ws),
                resting: false,
                woke: false,
                closing: false,
            }),
            config,
            resting: config.read_buffer_size(RESTING_READ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Layer> {
        self.ws.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<R>(&self, f: impl FnOnce(Pin<&mut Socket>) -> R) -> R {
        f(self.lock().socket())
    }

    /// The next message from the browser; `None` once the stream has ended.
    pub async fn next(&self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| {
            let mut layer = self.lock();
            let polled = layer.socket().poll_next(cx);
            if matches!(
                polled,
                Poll::Ready(None | Some(Err(_)) | Some(Ok(Message::Close(_))))
            ) {
                layer.closing = true;
            }
            if layer.resting {
                // Something came, then nothing more: the layer built at rest
                // is done with its small reads, and nothing is half-read.
                if polled.is_pending() && layer.woke && self.swap(&mut layer, cx, false) {
                    return layer.socket().poll_next(cx);
                }
                layer.woke |= polled.is_ready();
            }
            polled
        })
        .await
    }

    /// Queues `message`, writing only once the protocol layer's buffer fills.
    pub async fn feed(&self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.with(|ws| ws.poll_ready(cx))).await?;
        let mut layer = self.lock();
        layer.closing |= matches!(message, Message::Close(_));
        layer.socket().start_send(message)
    }

    pub async fn flush(&self) -> Result<(), Error> {
        poll_fn(|cx| self.with(|ws| ws.poll_flush(cx))).await
    }

    pub async fn send(&self, message: Message) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Drives the closing handshake (our Close is already sent) to its end.
    pub async fn close(&self) -> Result<(), Error> {
        poll_fn(|cx| self.with(|ws| ws.poll_close(cx))).await
    }

    /// Starts the protocol layer afresh if the session is at rest, freeing
    /// the buffers it grew; says whether it did.
    ///
    /// Only right after [`next`](Self::next) was polled and found nothing: a
    /// read that would block means every complete frame has been taken from
    /// the read buffer, and the gate in front of it tells that no frame (and
    /// no fragmented message) is half-way through. A flush that completes
    /// means nothing waits to be written, a queued Pong included.
    pub async fn renew_at_rest(&self) -> bool {
        poll_fn(|cx| Poll::Ready(self.renew(cx))).await
    }

    fn renew(&self, cx: &mut Context<'_>) -> bool {
        let mut layer = self.lock();
        self.swap(&mut layer, cx, true)
    }

    /// Builds a new protocol layer over the same stream (with the resting or
    /// the full read buffer), if nothing is half-read or unsent. Only where a
    /// read has just found nothing: what the old layer read ahead would be lost.
    fn swap(&self, layer: &mut Layer, cx: &mut Context<'_>, resting: bool) -> bool {
        if layer.closing {
            return false;
        }
        let Some(ws) = layer.socket.as_mut() else {
            return false;
        };
        if !ws.get_ref().at_rest() {
            return false;
        }
        if !matches!(Pin::new(&mut *ws).poll_flush(cx), Poll::Ready(Ok(()))) {
            return false;
        }
        let Some(old) = layer.socket.take() else {
            return false;
        };
        let config = if resting { self.resting } else { self.config };
        let fresh = WebSocketStream::from_raw_socket(old.into_inner(), Role::Server, Some(config))
            .now_or_never()
            .expect("a socket without a handshake is ready at once");
        layer.socket = Some(fresh);
        layer.resting = resting;
        layer.woke = false;
        tracing::trace!(resting, "protocol layer renewed");
        true
    }
}

impl Layer {
    fn socket(&mut self) -> Pin<&mut Socket> {
        Pin::new(
            self.socket
                .as_mut()
                .expect("the socket is back before the lock is released"),
        )
    }
}
