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
use futures_util::TryFutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use crate::admission::{Handler, Peer, Stream};
use crate::metrics::ListenerMetrics;

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
        }
    }
}

impl HttpService {
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
        // Handlers see the client as axum's `ConnectInfo`, as with `axum::serve`.
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr));
                let instance = instance.clone();
                app.clone().oneshot(req).map_ok(move |mut res| {
                    res.headers_mut().insert(INSTANCE.clone(), instance);
                    res
                })
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
