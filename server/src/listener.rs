//! Accept loops for stream listeners (TCP, TLS over TCP, unix): the connection limit, the
//! busy answer, accept-error backoff and one tracked task per client. The loop
//! never reads a byte from a client; `connection` does that.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

use crate::access::AccessList;
use crate::config::Protocol;
use crate::connection::{self, ConnectionError, End, WaitReadable};
use crate::metrics::Metrics;
use crate::proxy_protocol::{ProxyError, ProxyPolicy};
use crate::tls::{self, Tls};

/// A listening socket that yields client streams.
pub trait Accept: Send + Sync + 'static {
    /// What `accept` returns.
    type Raw: Send + 'static;
    /// What the protocol runs over (the raw socket, or TLS on top of it).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + WaitReadable + 'static;

    /// The next client and a printable peer address.
    fn accept_client(&self) -> impl Future<Output = io::Result<(Self::Raw, String)>> + Send;

    /// Tells a client it cannot be served, without waiting: a new socket's send
    /// buffer is empty, so a short message fits, and a client that cannot take
    /// it is not worth a task.
    fn refuse(raw: &Self::Raw, message: &[u8]);

    /// The client's address for logs: after a PROXY protocol header where the
    /// listener supports one and the peer is a trusted proxy.
    fn identify(
        raw: &mut Self::Raw,
        peer: String,
        proxy: Option<&ProxyPolicy>,
    ) -> impl Future<Output = Result<String, EstablishError>> + Send;

    /// What a connection task needs to finish setting up its stream (the TLS
    /// acceptor). Tasks get this, never the listener, so the listening socket
    /// closes as soon as the accept loop ends, not when the last client leaves.
    type Handshake: Clone + Send + Sync + 'static;

    fn handshake(&self) -> Self::Handshake;

    /// The stream the protocol runs over: for TLS listeners, after the handshake.
    fn secure(
        handshake: &Self::Handshake,
        raw: Self::Raw,
    ) -> impl Future<Output = Result<Self::Stream, EstablishError>> + Send;
}

/// Why an accepted client never reached the protocol.
#[derive(Debug, thiserror::Error)]
pub enum EstablishError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("TLS handshake not done within {:?}", tls::HANDSHAKE_TIMEOUT)]
    TlsTimeout,
}

impl Accept for TcpListener {
    type Raw = TcpStream;
    type Stream = TcpStream;

    async fn accept_client(&self) -> io::Result<(TcpStream, String)> {
        let (stream, peer) = self.accept().await?;
        // Replies are already batched per read; Nagle would only add latency.
        stream.set_nodelay(true)?;
        Ok((stream, peer.to_string()))
    }

    fn refuse(stream: &TcpStream, message: &[u8]) {
        let _ = stream.try_write(message);
    }

    async fn identify(
        stream: &mut TcpStream,
        peer: String,
        proxy: Option<&ProxyPolicy>,
    ) -> Result<String, EstablishError> {
        let (Some(policy), Ok(addr)) = (proxy, peer.parse()) else {
            return Ok(peer);
        };
        Ok(policy.client_address(stream, addr).await?.to_string())
    }

    type Handshake = ();

    fn handshake(&self) {}

    async fn secure(_: &(), stream: TcpStream) -> Result<TcpStream, EstablishError> {
        Ok(stream)
    }
}

/// A TCP listener whose clients speak the timestamp protocol inside TLS.
pub struct TlsTcpListener {
    pub tcp: TcpListener,
    pub tls: Arc<Tls>,
}

impl Accept for TlsTcpListener {
    type Raw = TcpStream;
    type Stream = TlsStream<TcpStream>;

    fn accept_client(&self) -> impl Future<Output = io::Result<(TcpStream, String)>> + Send {
        self.tcp.accept_client()
    }

    fn refuse(stream: &TcpStream, _: &[u8]) {
        // A plaintext message would break the client's handshake; the close says it all.
        let _ = stream;
    }

    fn identify(
        stream: &mut TcpStream,
        peer: String,
        proxy: Option<&ProxyPolicy>,
    ) -> impl Future<Output = Result<String, EstablishError>> + Send {
        TcpListener::identify(stream, peer, proxy)
    }

    type Handshake = Arc<Tls>;

    fn handshake(&self) -> Arc<Tls> {
        self.tls.clone()
    }

    async fn secure(
        tls: &Arc<Tls>,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, EstablishError> {
        match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, tls.tcp.accept(stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(EstablishError::Tls(e)),
            Err(_) => Err(EstablishError::TlsTimeout),
        }
    }
}

impl Accept for UnixListener {
    type Raw = UnixStream;
    type Stream = UnixStream;

    async fn accept_client(&self) -> io::Result<(UnixStream, String)> {
        let (stream, _) = self.accept().await?;
        Ok((stream, "unix".to_owned()))
    }

    fn refuse(stream: &UnixStream, message: &[u8]) {
        let _ = stream.try_write(message);
    }

    async fn identify(
        _: &mut UnixStream,
        peer: String,
        _: Option<&ProxyPolicy>,
    ) -> Result<String, EstablishError> {
        Ok(peer)
    }

    type Handshake = ();

    fn handshake(&self) {}

    async fn secure(_: &(), stream: UnixStream) -> Result<UnixStream, EstablishError> {
        Ok(stream)
    }
}

/// What every listener task shares.
#[derive(Clone)]
pub struct Service {
    pub protocol: Arc<Protocol>,
    pub metrics: Arc<Metrics>,
    /// PROXY protocol on TCP listeners, when enabled.
    pub proxy: Option<Arc<ProxyPolicy>>,
    pub access: Arc<AccessList>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// Accepts clients until shutdown. `name` (e.g. `tcp 127.0.0.1:8899`) labels logs.
/// `guard` is kept alive as long as the listener (the unix socket file's remover).
pub async fn run<L: Accept, G: Send + 'static>(
    listener: L,
    name: String,
    service: Service,
    guard: G,
) {
    let max = service.protocol.limits.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let busy = format!(
        "{}server busy ({max} connections); try again later\n",
        timecho_shared::reply::ERROR_PREFIX
    );
    let metrics = service.metrics.listener(&name);
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = service.shutdown.cancelled() => break,
            accepted = listener.accept_client() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(client) => client,
            Err(e) => {
                // Typically EMFILE/ENFILE under a connection flood: wait for
                // descriptors to be freed instead of spinning or exiting.
                warn!(listener = %name, error = %e, "accept failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = service.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        if !permitted(&service.access, &peer) {
            // Dropped before reading or writing anything: a denied client learns nothing.
            metrics.denied.inc();
            debug!(listener = %name, %peer, "denied by --allow/--deny");
            continue;
        }
        metrics.accepted.inc();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(listener = %name, %peer, "refused: connection limit reached");
            metrics.rejected.inc();
            metrics.busy.inc();
            L::refuse(&stream, busy.as_bytes());
            continue;
        };
        let service = service.clone();
        let metrics = metrics.clone();
        let name = name.clone();
        let handshake = listener.handshake();
        let task = async move {
            let _permit = permit;
            let mut stream = stream;
            let peer = match L::identify(&mut stream, peer, service.proxy.as_deref()).await {
                Ok(peer) => peer,
                Err(e) => {
                    warn!(listener = %name, "dropped: {e}");
                    return;
                }
            };
            if !permitted(&service.access, &peer) {
                metrics.denied.inc();
                debug!(listener = %name, %peer, "denied by --allow/--deny (address from PROXY header)");
                return;
            }
            let stream = match L::secure(&handshake, stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    metrics.tls_failed.inc();
                    debug!(listener = %name, %peer, "dropped: {e}");
                    return;
                }
            };
            let span = info_span!("conn", listener = %name, %peer);
            metrics.open.inc();
            let result = connection::serve(stream, &service.protocol, &metrics, &service.shutdown)
                .instrument(span.clone())
                .await;
            metrics.open.dec();
            let _entered = span.enter();
            match result {
                Ok(End::ClientDone) => debug!("closed by client"),
                Ok(End::Idle) => debug!("closed: idle timeout"),
                Ok(End::Shutdown) => debug!("closed: server shutting down"),
                Err(e @ ConnectionError::Stalled(_)) => warn!("dropped: {e}"),
                Err(ConnectionError::Io(e)) => debug!("closed: {e}"),
            }
        };
        tracing::trace!(bytes = std::mem::size_of_val(&task), "connection task");
        service.tracker.spawn(task);
    }
    // New clients are refused from here on, while existing ones drain.
    drop(listener);
    drop(guard);
}

/// Unix peers have no address; filesystem permissions guard them instead.
fn permitted(access: &AccessList, peer: &str) -> bool {
    access.is_open()
        || peer
            .parse::<std::net::SocketAddr>()
            .map_or(true, |a| access.permits(a.ip()))
}
