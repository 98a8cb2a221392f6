//! The HTTP side: the embedded web page and the `/ws` WebSocket gateway, which
//! relays each browser to its own TCP connection to the configured timestamp
//! server. The target is fixed by the operator; the browser cannot choose it.

pub(crate) mod api;
mod assets;
mod http_server;
mod ops;
mod origin;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;

use crate::access::AccessList;
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::signin::Auth;
use crate::tls::Tls;
pub use http_server::HttpLimits;
pub use ops::Ops;

/// Everything a request handler needs, shared behind one `Arc`.
pub struct Gateway {
    pub config: GatewayConfig,
    /// `HOST:PORT` of the timestamp server every session is relayed to.
    pub upstream: String,
    /// Largest text frame accepted; the same as the TCP line limit.
    pub max_frame: usize,
    pub sessions: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub drain_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// The upstream is our own listener and expects a PROXY protocol header.
    pub send_proxy_header: bool,
    pub access: Arc<AccessList>,
    /// https/wss when set.
    pub tls: Option<Arc<Tls>>,
    /// Sign-in for the page and `/ws`, when `--auth` is given.
    pub auth: Option<Auth>,
}

pub fn router(gateway: Arc<Gateway>, ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/ws", get(relay::upgrade))
        .merge(api::router())
        .fallback(assets::serve)
        .with_state(gateway)
        .merge(ops::router(ops))
        .layer(CompressionLayer::new())
}

/// HTTP connections (page loads, handshakes) allowed beyond the WebSocket limit.
const HTTP_HEADROOM: usize = 1024;

/// Serves HTTP until shutdown; open WebSocket sessions are tracked separately
/// and close themselves with 1001.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, ops: Arc<Ops>) {
    let limits = http_server::HttpLimits {
        max_connections: gateway.config.max_sessions + HTTP_HEADROOM,
        drain_timeout: gateway.drain_timeout,
        access: gateway.access.clone(),
    };
    let shutdown = gateway.shutdown.clone();
    let tls = gateway.tls.as_ref().map(|t| t.http.clone());
    http_server::serve(listener, router(gateway, ops), tls, shutdown, limits).await
}

/// Serves only the operations endpoints, on their own listener (`--metrics`).
pub async fn run_ops(
    listener: TcpListener,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
    limits: HttpLimits,
) {
    http_server::serve(listener, ops::router(ops), None, shutdown, limits).await
}

/// `--redirect-http`: answers every plain http request with a redirect to the
/// same path on the https listener.
pub async fn run_redirect(
    listener: TcpListener,
    https_port: u16,
    shutdown: CancellationToken,
    limits: HttpLimits,
) {
    let app = Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.rsplit_once(':')
                    .map_or(h, |(name, _)| name)
                    .trim_matches(['[', ']'])
            })
            .unwrap_or("localhost");
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Redirect::permanent(&format!("https://{host}:{https_port}{path}"))
    });
    http_server::serve(listener, app, None, shutdown, limits).await
}
