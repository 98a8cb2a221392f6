//! Admission: the one path every stream listener's clients take before a
//! protocol sees a byte of theirs, whether they came for timestamp lines (TCP,
//! TLS, unix) or for HTTP (the page, `/ws`, metrics, the https redirect).
//!
//! In order: accept (backing off on errors, stopping at shutdown), the access
//! list, a connection permit (or the listener's busy answer), the PROXY header
//! of a trusted proxy (with its deadline) and the access list again for the
//! client it names, the TLS handshake (with its deadline), then the handler.
//! The socket is a [`Guarded`] from the start: every write to the peer has the
//! stall deadline, and the permit is held until the socket is really closed.
//! Deadlines after that (request headers and body, idle lines, WebSocket
//! keepalive) belong to the protocol handler.

mod guarded;
mod per_client;
mod wait_readable;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::access::AccessList;
use crate::config::Limits;
use crate::forwarded::ForwardedPolicy;
use crate::metrics::{ListenerMetrics, Metrics};
use crate::proxy_protocol::ProxyPolicy;
pub use wait_readable::WaitReadable;

pub use guarded::{Guarded, Rules};
pub use per_client::{ClientSlot, PerClient};

/// A stream a protocol handler can serve.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + WaitReadable + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + WaitReadable + 'static> Stream for T {}

/// Serves one admitted client until it is done.
pub trait Handler: Send + Sync + 'static {
    fn serve<S: Stream>(&self, stream: S, peer: Peer) -> impl Future<Output = ()> + Send;

    /// Serves a client let in past the connection limit on a probe slot: only
    /// what a load balancer asks (`/healthz`, `/readyz`). By default nothing.
    fn serve_probe<S: Stream>(&self, stream: S, _peer: Peer) -> impl Future<Output = ()> + Send {
        async move { drop(stream) }
    }
}

/// Who a client is: its address (after a trusted PROXY header), or a unix peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unix"),
        }
    }
}

/// A listening socket.
pub trait Listen: Send + Sync + 'static {
    type Socket: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;

    fn accept_client(&self) -> impl Future<Output = io::Result<(Self::Socket, Peer)>> + Send;

    /// Tells a refused client why, without waiting: a new socket's send buffer
    /// is empty, so a short message fits, and a client that cannot take it is
    /// not worth a task.
    fn refuse(socket: &Self::Socket, message: &[u8]);

    /// The TCP socket under a client, which may carry a PROXY header.
    fn tcp(socket: &mut Self::Socket) -> Option<&mut TcpStream>;
}

impl Listen for TcpListener {
    type Socket = TcpStream;

    async fn accept_client(&self) -> io::Result<(TcpStream, Peer)> {
        let (stream, peer) = self.accept().await?;
        // Replies are already batched per read; Nagle would only add latency.
        stream.set_nodelay(true)?;
        // An IPv4 client of a dual-stack listener is logged, matched and
        // counted as the IPv4 address it is, as the rules are written.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        Ok((stream, Peer(Some(peer))))
    }

    fn refuse(socket: &TcpStream, message: &[u8]) {
        let _ = socket.try_write(message);
    }

    fn tcp(socket: &mut TcpStream) -> Option<&mut TcpStream> {
        Some(socket)
    }
}

impl Listen for UnixListener {
    type Socket = UnixStream;

    async fn accept_client(&self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _) = self.accept().await?;
        Ok((stream, Peer(None)))
    }

    fn refuse(socket: &UnixStream, message: &[u8]) {
        let _ = socket.try_write(message);
    }

    fn tcp(_: &mut UnixStream) -> Option<&mut TcpStream> {
        None
    }
}

/// How one listener admits its clients.
pub struct ListenerAdmission {
    /// Labels logs and metrics, e.g. `tcp 127.0.0.1:8899`.
    pub name: String,
    pub max_connections: usize,
    /// What a client refused at the limit is told, if it can be told anything
    /// (a TLS client cannot read plaintext).
    pub busy: Option<Vec<u8>>,
    /// Connections one client may hold at once, per client. Shared with an
    /// HTTP listener's handler, which counts each request of a trusted
    /// proxy for the client its forwarding headers name.
    pub shares: Arc<PerClient>,
    /// A source not counted as a client: the gateway of this process, whose
    /// sessions all come from one address (when they carry no PROXY header).
    pub uncapped: Option<std::net::IpAddr>,
    /// What a client refused for holding its share is told, if anything.
    pub crowded: Option<Vec<u8>>,
    /// Connections past `max_connections` kept for a balancer's health
    /// checks ([`Handler::serve_probe`]), so that clients filling the
    /// listener cannot make it look dead; 0 for none.
    pub probe_slots: usize,
    pub tls: Option<TlsAcceptor>,
    /// PROXY protocol from trusted proxies, where this listener takes it.
    pub proxy: Option<Arc<ProxyPolicy>>,
    /// `--forwarded-headers` on an HTTP listener: a trusted proxy's
    /// connection is not one client's; each of its requests is counted for
    /// the client it names, by the handler.
    pub forwarded: Option<Arc<ForwardedPolicy>>,
}

/// What every listener shares.
#[derive(Clone)]
pub struct AcceptContext {
    pub access: Arc<AccessList>,
    pub metrics: Arc<Metrics>,
    /// The deadlines: stall (every write), TLS handshake, PROXY header, linger.
    pub limits: Arc<Limits>,
    /// Stops the accept loops. It fires before connections are told to
    /// drain, and the server waits for every listener to close in between, so
    /// a client that sees its connection drain can no longer be accepted: the
    /// next one is refused by the kernel instead of accepted and dropped.
    pub closing: CancellationToken,
    /// Where admitted connections run (the accept loops run elsewhere).
    pub tracker: TaskTracker,
}

/// Accepts clients until `shared.closing` and hands each admitted one to `handler` in a
/// tracked task. `keep` lives as long as the listener (a unix socket file's
/// remover); the listening socket closes as soon as the loop ends, while
/// connections drain.
pub async fn run<L, H, K>(
    listener: L,
    door: ListenerAdmission,
    shared: AcceptContext,
    handler: Arc<H>,
    keep: K,
) where
    L: Listen,
    H: Handler,
    K: Send + 'static,
    Guarded<L::Socket>: WaitReadable,
{
    let permits = Arc::new(Semaphore::new(door.max_connections));
    let probe_permits = Arc::new(Semaphore::new(door.probe_slots));
    let per_client = door.shares.clone();
    let metrics = shared.metrics.listener(&door.name);
    let door = Arc::new(door);
    let rules = Arc::new(Rules {
        stall: shared.limits.stall_timeout,
        linger: shared.limits.linger_timeout,
        tracker: shared.tracker.clone(),
    });
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.closing.cancelled() => break,
            accepted = listener.accept_client() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(client) => client,
            Err(e) => {
                // Typically EMFILE/ENFILE under a connection flood: wait for
                // descriptors to be freed instead of spinning or exiting.
                warn!(listener = %door.name, error = %e, "accept failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = shared.closing.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        if !permitted(&shared.access, peer) {
            // Dropped before reading or writing anything: a denied client learns nothing.
            metrics.denied.inc();
            debug!(listener = %door.name, %peer, "denied by --allow/--deny");
            continue;
        }
        metrics.accepted.inc();
        // A trusted proxy's connections are counted for the client its
        // header names, once it has been read; an HTTP proxy's requests for
        // the client each names, by the handler.
        let proxied = peer
            .0
            .is_some_and(|a| door.proxy.as_ref().is_some_and(|p| p.trusts(a.ip())));
        let forwarding = |a: &SocketAddr| door.forwarded.as_ref().is_some_and(|f| f.trusts(a.ip()));
        let capped = |a: &SocketAddr| !proxied && !forwarding(a) && door.uncapped != Some(a.ip());
        let slot = match peer.0.filter(capped) {
            Some(addr) => match per_client.take(addr.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse_crowded::<L>(&door, &metrics, peer, &socket);
                    continue;
                }
            },
            None => None,
        };
        let (permit, probe_only) = match permits.clone().try_acquire_owned() {
            Ok(permit) => (Ok(permit), false),
            Err(_) => (probe_permits.clone().try_acquire_owned(), true),
        };
        let Ok(permit) = permit else {
            debug!(listener = %door.name, %peer, "refused: connection limit reached");
            metrics.rejected.inc();
            metrics.busy.inc();
            if let Some(busy) = &door.busy {
                L::refuse(&socket, busy);
            }
            continue;
        };
        let socket = Guarded::new(socket, permit, rules.clone());
        let task = admit::<L, H>(
            socket,
            peer,
            Share {
                slot,
                after_header: proxied,
                table: per_client.clone(),
                probe_only,
            },
            door.clone(),
            shared.clone(),
            metrics.clone(),
            handler.clone(),
        );
        shared.tracker.spawn(task);
    }
    drop(listener);
    drop(keep);
}

/// Tells a client that holds its share why it is refused, and counts it.
fn refuse_crowded<L: Listen>(
    door: &ListenerAdmission,
    metrics: &ListenerMetrics,
    peer: Peer,
    socket: &L::Socket,
) {
    debug!(listener = %door.name, %peer, "refused: the client holds {} connections", door.shares.max());
    metrics.rejected.inc();
    metrics.per_client.inc();
    if let Some(crowded) = &door.crowded {
        L::refuse(socket, crowded);
    }
}

/// A connection's place in its client's share: taken at accept, or, behind
/// a trusted proxy, once the header has named the client.
struct Share {
    slot: Option<ClientSlot>,
    /// Taken once the PROXY header has named the client.
    after_header: bool,
    table: Arc<PerClient>,
    /// Let in on a probe slot, past the connection limit.
    probe_only: bool,
}

/// One accepted client's way to its handler. Not an async fn, which would
/// keep its arguments twice in every connection's task.
// Deliberately not an async fn (see above).
#[allow(clippy::manual_async_fn, clippy::too_many_arguments)]
fn admit<L, H>(
    mut socket: Guarded<L::Socket>,
    peer: Peer,
    mut share: Share,
    door: Arc<ListenerAdmission>,
    shared: AcceptContext,
    metrics: Arc<ListenerMetrics>,
    handler: Arc<H>,
) -> impl Future<Output = ()> + Send
where
    L: Listen,
    H: Handler,
    Guarded<L::Socket>: WaitReadable,
{
    async move {
        // The PROXY header and the TLS handshake are awaited in boxes of their
        // own: a task is as big as the biggest state it can be in, and inline
        // they made every plain TCP connection's task carry a TLS session's
        // (8 KB against 1.5 KB). A box costs their connections one allocation.
        let peer = match (&door.proxy, peer.0, L::tcp(socket.get_mut())) {
            (Some(policy), Some(addr), Some(tcp)) => {
                let limit = shared.limits.proxy_timeout;
                match Box::pin(policy.client_address(tcp, addr, limit)).await {
                    Ok(client) => Peer(Some(client)),
                    Err(e) => {
                        metrics.proxy_failed.inc();
                        warn!(listener = %door.name, %peer, "dropped: {e}");
                        return;
                    }
                }
            }
            _ => peer,
        };
        if !permitted(&shared.access, peer) {
            metrics.denied.inc();
            debug!(listener = %door.name, %peer, "denied by --allow/--deny (address from PROXY header)");
            return;
        }
        if share.after_header {
            // The client the header names may itself be an HTTP proxy, whose
            // requests the handler counts one by one.
            let forwarding = door.forwarded.as_ref();
            if let Some(addr) = peer
                .0
                .filter(|a| !forwarding.is_some_and(|f| f.trusts(a.ip())))
            {
                share.slot = share.table.take(addr.ip());
                if share.slot.is_none() {
                    refuse_crowded::<L>(&door, &metrics, peer, socket.get_mut());
                    return;
                }
            }
        }
        // Held with the socket, so that it outlives the handler when the
        // socket does (an upgraded WebSocket).
        socket.hold_share(share.slot);
        match &door.tls {
            None if share.probe_only => handler.serve_probe(socket, peer).await,
            None => handler.serve(socket, peer).await,
            Some(acceptor) => {
                let probe_only = share.probe_only;
                let tls = serve_tls(
                    acceptor, socket, peer, &door, &shared, &metrics, &*handler, probe_only,
                );
                Box::pin(tls).await
            }
        }
    }
}

/// The TLS handshake (with its deadline), then the handler over TLS.
#[allow(clippy::too_many_arguments)]
async fn serve_tls<S, H>(
    acceptor: &TlsAcceptor,
    socket: S,
    peer: Peer,
    door: &ListenerAdmission,
    shared: &AcceptContext,
    metrics: &ListenerMetrics,
    handler: &H,
    probe_only: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let limit = shared.limits.handshake_timeout;
    match tokio::time::timeout(limit, acceptor.accept(socket)).await {
        Ok(Ok(tls)) if probe_only => handler.serve_probe(tls, peer).await,
        Ok(Ok(tls)) => handler.serve(tls, peer).await,
        Ok(Err(e)) => {
            metrics.tls_failed.inc();
            debug!(listener = %door.name, %peer, "dropped: TLS handshake failed: {e}");
        }
        Err(_) => {
            metrics.tls_failed.inc();
            debug!(
                listener = %door.name, %peer,
                "dropped: TLS handshake not done within {limit:?}"
            );
        }
    }
}

/// Unix peers have no address; filesystem permissions guard them instead.
fn permitted(access: &AccessList, peer: Peer) -> bool {
    peer.0.is_none_or(|a| access.permits(a.ip()))
}
