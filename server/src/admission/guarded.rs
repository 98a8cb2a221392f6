//! The socket every accepted client is served over, whatever the protocol on
//! top (timestamp lines, TLS, HTTP, an upgraded WebSocket). It enforces what
//! no protocol layer can forget:
//!
//! - **every write has a deadline**: a write that makes no progress for the
//!   stall timeout fails with `TimedOut`, so a peer that never reads cannot hold
//!   a task, a permit or a buffer, on any path (replies, pings, close frames,
//!   HTTP responses, TLS records);
//! - **the connection permit lives as long as the socket**, also after an HTTP
//!   connection was upgraded to a WebSocket;
//! - **lingering close**: a socket dropped while the peer may still be sending
//!   is shut down for writing and drained for a bounded time, as nginx's
//!   `lingering_close` does. Closing with unread input makes the kernel answer
//!   with a reset, which destroys the last reply (or close frame) before the
//!   peer reads it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;

use super::{ClientSlot, WaitReadable};

/// Most bytes a lingering close reads and discards before giving up.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// An accepted client socket with a write deadline, its connection permit and
/// a lingering close.
pub struct Guarded<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` only once dropped (taken by the lingering close).
    inner: Option<S>,
    /// Armed while a write is blocked; allocated the first time one is.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The peer closed its side: nothing more will arrive, no linger needed.
    eof: bool,
    /// A write hit the deadline: the peer does not read, so lingering for it
    /// to read our last words would only hold the socket longer.
    stalled: bool,
    /// Shared by every socket of a listener: each idle connection carries a
    /// pointer, not the settings.
    rules: Arc<Rules>,
    _permit: OwnedSemaphorePermit,
    /// The connection's place in its client's share, held as long as the
    /// socket is: a WebSocket keeps it after hyper has handed the socket on.
    share: Option<ClientSlot>,
}

/// A listener's deadlines for its sockets, and where a dropped one lingers.
pub struct Rules {
    /// A write that makes no progress this long fails.
    pub stall: Duration,
    /// How long a dropped socket drains the peer's input; zero: it does not.
    pub linger: Duration,
    pub tracker: TaskTracker,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Guarded<S> {
    pub fn new(inner: S, permit: OwnedSemaphorePermit, rules: Arc<Rules>) -> Self {
        Self {
            inner: Some(inner),
            timer: None,
            armed: false,
            eof: false,
            stalled: false,
            rules,
            _permit: permit,
            share: None,
        }
    }

    /// Holds the client's place in its share for as long as the socket lives.
    pub fn hold_share(&mut self, slot: Option<ClientSlot>) {
        self.share = slot;
    }

    /// The socket itself, for what must happen before any protocol (PROXY header).
    pub fn get_mut(&mut self) -> &mut S {
        self.inner
            .as_mut()
            .expect("the socket is only taken on drop")
    }

    pub fn get_ref(&self) -> &S {
        self.inner
            .as_ref()
            .expect("the socket is only taken on drop")
    }

    /// Polls `op` on the socket; while it is blocked the stall deadline runs,
    /// and once it passes the operation fails.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let inner = Pin::new(self.inner.as_mut().expect("polled after drop"));
        match op(inner, cx) {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                // The clock is read once per blocked episode, not per poll.
                if !self.armed {
                    let deadline = Instant::now() + self.rules.stall;
                    match &mut self.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    self.armed = true;
                }
                let timer = self.timer.as_mut().expect("armed above");
                ready!(timer.as_mut().poll(cx));
                self.stalled = true;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer read nothing for {:?}", self.rules.stall),
                )))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let inner = Pin::new(this.inner.as_mut().expect("polled after drop"));
        let result = ready!(inner.poll_read(cx, buf));
        if result.is_ok() && buf.filled().len() == before && buf.remaining() > 0 {
            this.eof = true;
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_shutdown(cx))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Guarded<S> {
    fn drop(&mut self) {
        let Some(socket) = self.inner.take() else {
            return;
        };
        if self.eof || self.stalled || self.rules.linger.is_zero() {
            return;
        }
        // Outside a runtime (a test tearing down) the socket just closes.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.rules.tracker.spawn(linger(socket, self.rules.linger));
    }
}

/// Sends our FIN, then reads and discards until the peer closes too, the
/// deadline passes or too much has arrived. The socket closes at the end.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // It may have been shut down already (the protocol said goodbye itself).
    let _ = tokio::time::timeout_at(deadline, socket.shutdown()).await;
    let mut sink = [0u8; 2048];
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, socket.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

impl WaitReadable for Guarded<TcpStream> {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.get_ref().wait_readable()
    }
}

impl WaitReadable for Guarded<UnixStream> {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    fn guarded(s: TcpStream, stall: Duration, tracker: &TaskTracker) -> Guarded<TcpStream> {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let rules = Rules {
            stall,
            linger: Duration::from_secs(2),
            tracker: tracker.clone(),
        };
        Guarded::new(s, permit, Arc::new(rules))
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_timeout() {
        let (_client, server) = pair().await;
        let tracker = TaskTracker::new();
        let mut g = guarded(server, Duration::from_millis(200), &tracker);
        let chunk = vec![0u8; 64 * 1024];
        let started = Instant::now();
        let err = loop {
            if let Err(e) = g.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn a_dropped_socket_lingers_so_the_last_reply_survives_unread_input() {
        let (mut client, server) = pair().await;
        let tracker = TaskTracker::new();
        let mut g = guarded(server, Duration::from_secs(5), &tracker);
        // The client has sent what the server will never read...
        client.write_all(&vec![b'x'; 200 * 1024]).await.unwrap();
        // ...and the server writes its last word and closes.
        g.write_all(b"bye\n").await.unwrap();
        drop(g);
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("an orderly end, not a reset");
        assert_eq!(got, b"bye\n");
        tracker.close();
        tracker.wait().await;
        // The permit went back when the lingering socket closed.
    }
}
