//! Waiting for a client's first bytes without holding a buffer for them: the
//! one thing the accept layer asks of every stream it hands on, so that an
//! idle connection costs its task and no read buffer.

use std::io;

use tokio::io::ReadBuf;

/// Waiting for a client's first bytes without holding a buffer for them.
pub trait WaitReadable {
    /// Resolves when a read would not block. The default resolves at once,
    /// for streams that cannot tell (TLS may hold decrypted bytes already).
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

impl WaitReadable for tokio::net::TcpStream {
    /// `readable()` may report a new socket ready before any byte arrived;
    /// a peek waits for a byte (or the end of the stream) for real. It is
    /// polled in place: the `peek` future would add its 250 bytes to every
    /// idle connection's task.
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(move |cx| {
            let mut first = [0u8; 1];
            self.poll_peek(cx, &mut ReadBuf::new(&mut first))
                .map_ok(drop)
        })
    }
}

/// Tokio's unix stream cannot peek; local clients get their buffer at once.
impl WaitReadable for tokio::net::UnixStream {}

impl<S> WaitReadable for tokio_rustls::server::TlsStream<S> {}
