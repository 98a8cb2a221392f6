//! The HTTP side: the embedded web page and the `/ws` WebSocket gateway, which
//! relays each browser to its own TCP connection to the configured timestamp
//! server. The target is fixed by the operator; the browser cannot choose it.

mod assets;
mod http_server;
mod ops;
mod origin;
mod relay;

use std::sync::Arc;
use std::time::Duration;

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
}

pub fn router(gateway: Arc<Gateway>, ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/ws", get(relay::upgrade))
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
    http_server::serve(listener, router(gateway, ops), shutdown, limits).await
}

/// Serves only the operations endpoints, on their own listener (`--metrics`).
pub async fn run_ops(
    listener: TcpListener,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
    limits: HttpLimits,
) {
    http_server::serve(listener, ops::router(ops), shutdown, limits).await
}
