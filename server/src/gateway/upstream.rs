//! The gateway's side of a session: its connection to the timestamp server,
//! over TCP (`HOST:PORT`) or a unix socket (`unix:PATH`), as two halves the
//! relay pumps independently.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};
use tokio::time::timeout;

use timecho_shared::host_port::ServerAddr;

/// Why a session has no timestamp server; the text goes to the browser.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("timestamp server {0} unreachable: {1}")]
    Unreachable(String, io::Error),
    #[error("timestamp server {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("cannot introduce the browser to {0}: {1}")]
    Introduce(String, io::Error),
}

/// Connects to `server` within `wait`; over TCP, first tells it who `browser`
/// is with a PROXY header when `browser` is given (our own listener expects one).
pub async fn connect(
    server: &ServerAddr,
    browser: Option<SocketAddr>,
    wait: Duration,
) -> Result<(ReadHalf, WriteHalf), ConnectError> {
    let name = || server.to_string();
    match server {
        ServerAddr::Tcp(hp) => {
            let target = hp.to_string();
            let mut tcp = match timeout(wait, TcpStream::connect(target.as_str())).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return Err(ConnectError::Unreachable(name(), e)),
                Err(_) => return Err(ConnectError::Timeout(name(), wait)),
            };
            let _ = tcp.set_nodelay(true);
            if let Some(browser) = browser {
                send_proxy_header(&mut tcp, browser)
                    .await
                    .map_err(|e| ConnectError::Introduce(name(), e))?;
            }
            let (r, w) = tcp.into_split();
            Ok((ReadHalf::Tcp(r), WriteHalf::Tcp(w)))
        }
        ServerAddr::Unix(path) => {
            let unix = match timeout(wait, UnixStream::connect(path)).await {
                Ok(Ok(unix)) => unix,
                Ok(Err(e)) => return Err(ConnectError::Unreachable(name(), e)),
                Err(_) => return Err(ConnectError::Timeout(name(), wait)),
            };
            let (r, w) = unix.into_split();
            Ok((ReadHalf::Unix(r), WriteHalf::Unix(w)))
        }
    }
}

/// Tells our own TCP listener, which expects PROXY protocol from local peers,
/// who the browser really is, so its logs name the browser.
async fn send_proxy_header(tcp: &mut TcpStream, browser: SocketAddr) -> io::Result<()> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let local = tcp.peer_addr()?;
    let browser = match (browser, local) {
        // Both ends must be of one family; a v4 browser on a v6 listener is v4-mapped.
        (SocketAddr::V4(b), SocketAddr::V6(_)) => {
            SocketAddr::new(b.ip().to_ipv6_mapped().into(), b.port())
        }
        (b, _) => b,
    };
    let header = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (browser, local),
    )
    .build()
    .map_err(io::Error::other)?;
    tcp.write_all(&header).await
}

/// What the timestamp server sends.
pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

impl ReadHalf {
    /// Resolves once a read would not block, without a buffer to read into:
    /// a quiet session holds none.
    pub async fn wait_readable(&mut self) -> io::Result<()> {
        match self {
            ReadHalf::Tcp(r) => {
                std::future::poll_fn(|cx| r.poll_peek(cx, &mut ReadBuf::new(&mut [0u8; 1])))
                    .await
                    .map(drop)
            }
            ReadHalf::Unix(r) => r.readable().await,
        }
    }
}

/// Where the browser's lines go.
pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Unix(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Unix(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Unix(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
