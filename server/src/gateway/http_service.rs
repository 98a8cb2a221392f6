//! HTTP/1.1 over an admitted connection: hyper's HTTP/1 server (never the
//! auto-detecting one, which reads bytes with no deadline while it guesses the
//! version, and would serve HTTP/2 although we offer only HTTP/1.1).
//!
//! Deadlines here: the request headers (from the connection's start, and again
//! from each response on a kept-alive connection, so idle and trickling
//! clients are cut off alike) and, in the router, the request body. Writes have
//! the admission layer's stall deadline. An upgraded connection (`/ws`) leaves
//! this handler; its socket, permit and deadlines go with it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use crate::access::AccessList;
use crate::admission::{ClientSlot, Handler, Peer, PerClient, Stream};
use crate::forwarded::ForwardedPolicy;
use crate::metrics::ListenerMetrics;

/// `--forwarded-headers` on this listener: each request of a trusted proxy
/// is admitted for the client it names, as admission admits a connection:
/// the access list, then that client's share of the listener.
pub struct Forwarding {
    pub policy: Arc<ForwardedPolicy>,
    pub access: Arc<AccessList>,
    /// The listener's table of shares (the admission's own).
    pub shares: Arc<PerClient>,
}

/// A forwarded client's place in its share, held while its request is
/// answered and, for `/ws`, for the session's life.
#[derive(Clone)]
pub struct ForwardedShare(#[allow(dead_code)] pub Arc<ClientSlot>);

/// Why a forwarded client is refused.
enum Refusal {
    /// By `--allow`/`--deny`: 403.
    Denied,
    /// It holds its share of the listener: 429.
    Crowded,
}

impl Refusal {
    fn response(self) -> axum::response::Response {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        match self {
            Refusal::Denied => StatusCode::FORBIDDEN.into_response(),
            Refusal::Crowded => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address\n",
            )
                .into_response(),
        }
    }
}

/// The client a request from `peer` is for, with its place in its share
/// when a trusted proxy's headers named it; or why it is refused.
fn admit_forwarded<B>(
    forwarding: &Forwarding,
    peer: SocketAddr,
    req: &Request<B>,
    metrics: &ListenerMetrics,
) -> Result<(SocketAddr, Option<ForwardedShare>), Refusal> {
    let client = forwarding.policy.client(peer, req.headers());
    if client == peer {
        return Ok((peer, None));
    }
    if !forwarding.access.permits(client.ip()) {
        metrics.denied.inc();
        debug!(%peer, %client, "denied by --allow/--deny (address from a forwarding header)");
        return Err(Refusal::Denied);
    }
    let Some(slot) = forwarding.shares.take(client.ip()) else {
        metrics.rejected.inc();
        metrics.per_client.inc();
        debug!(%peer, %client, "refused: the client holds {} connections", forwarding.shares.max());
        return Err(Refusal::Crowded);
    };
    Ok((client, Some(ForwardedShare(Arc::new(slot)))))
}

/// Which instance answered, on every response.
static INSTANCE: HeaderName = HeaderName::from_static(timecho_shared::api::header::INSTANCE);

/// The biggest request head (request line and headers) read; browsers' stay
/// far below it, cookies included.
const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 64;

/// Serves one router on one listener.
pub struct HttpService {
    app: Router,
    /// What a client on a probe slot is served: the operations endpoints.
    probes: Option<Router>,
    builder: http1::Builder,
    metrics: Arc<ListenerMetrics>,
    shutdown: CancellationToken,
    /// `--instance`, sent on every answer as [`timecho_shared::api::header::INSTANCE`].
    instance: HeaderValue,
    forwarding: Option<Arc<Forwarding>>,
}

impl HttpService {
    pub fn new(
        app: Router,
        header_timeout: Duration,
        metrics: Arc<ListenerMetrics>,
        shutdown: CancellationToken,
        instance: HeaderValue,
    ) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS);
        Self {
            app,
            probes: None,
            builder,
            metrics,
            shutdown,
            instance,
            forwarding: None,
        }
    }
}

impl HttpService {
    /// Take requests' clients from a trusted proxy's forwarding headers.
    pub fn with_forwarding(mut self, forwarding: Option<Forwarding>) -> Self {
        self.forwarding = forwarding.map(Arc::new);
        self
    }

    /// Also serve `probes` to clients let in on the listener's probe slots.
    pub fn with_probes(mut self, probes: Router) -> Self {
        self.probes = Some(probes);
        self
    }
}

impl Handler for HttpService {
    async fn serve<S: Stream>(&self, stream: S, peer: Peer) {
        self.serve_app(self.app.clone(), stream, peer).await
    }

    async fn serve_probe<S: Stream>(&self, stream: S, peer: Peer) {
        if let Some(probes) = &self.probes {
            self.serve_app(probes.clone(), stream, peer).await
        }
    }
}

impl HttpService {
    async fn serve_app<S: Stream>(&self, app: Router, stream: S, peer: Peer) {
        let addr = peer
            .0
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let instance = self.instance.clone();
        let forwarding = self.forwarding.clone();
        let metrics = self.metrics.clone();
        // Handlers see the client as axum's `ConnectInfo`, as with `axum::serve`.
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut req: Request<Incoming>| {
                let instance = instance.clone();
                let admitted = match &forwarding {
                    Some(f) => admit_forwarded(f, addr, &req, &metrics),
                    None => Ok((addr, None)),
                };
                let app = app.clone();
                async move {
                    let mut res = match admitted {
                        Ok((client, share)) => {
                            req.extensions_mut().insert(ConnectInfo(client));
                            if let Some(share) = &share {
                                req.extensions_mut().insert(share.clone());
                            }
                            let res = app.oneshot(req).await?;
                            // Held until the answer is ready.
                            drop(share);
                            res
                        }
                        Err(refusal) => refusal.response(),
                    };
                    res.headers_mut().insert(INSTANCE.clone(), instance);
                    Ok::<_, std::convert::Infallible>(res)
                }
            }));
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        self.metrics.http_open.inc();
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = self.shutdown.cancelled() => {
                // Finish the request in progress, then close; idle connections close now.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        self.metrics.http_open.dec();
        if let Err(e) = result {
            debug!(%peer, "http connection ended: {e}");
        }
    }
}
