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

use super::ws_handshake::Socket;

pub struct SessionSocket {
    /// `None` only for the moment of a renewal, under the lock.
    ws: Mutex<Option<Socket>>,
    config: WebSocketConfig,
}

impl SessionSocket {
    pub fn new(ws: Socket) -> Self {
        let config = *ws.get_config();
        Self {
            ws: Mutex::new(Some(ws)),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Socket>> {
        self.ws.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<R>(&self, f: impl FnOnce(Pin<&mut Socket>) -> R) -> R {
        let mut ws = self.lock();
        f(Pin::new(
            ws.as_mut()
                .expect("the socket is back before the lock is released"),
        ))
    }

    /// The next message from the browser; `None` once the stream has ended.
    pub async fn next(&self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.with(|ws| ws.poll_next(cx))).await
    }

    /// Queues `message`, writing only once the protocol layer's buffer fills.
    pub async fn feed(&self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.with(|ws| ws.poll_ready(cx))).await?;
        self.with(|ws| ws.start_send(message))
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
        let mut guard = self.lock();
        let Some(ws) = guard.as_mut() else {
            return false;
        };
        if !ws.get_ref().at_rest() {
            return false;
        }
        if !matches!(Pin::new(&mut *ws).poll_flush(cx), Poll::Ready(Ok(()))) {
            return false;
        }
        let Some(old) = guard.take() else {
            return false;
        };
        let fresh =
            WebSocketStream::from_raw_socket(old.into_inner(), Role::Server, Some(self.config))
                .now_or_never()
                .expect("a socket without a handshake is ready at once");
        *guard = Some(fresh);
        true
    }
}
