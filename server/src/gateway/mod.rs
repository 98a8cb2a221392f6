//! The HTTP side: the embedded web page and the `/ws` WebSocket gateway, which
//! relays each browser to its own TCP connection to the configured timestamp
//! server. The target is fixed by the operator; the browser cannot choose it.

mod assets;
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

use crate::config::GatewayConfig;

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
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/ws", get(relay::upgrade))
        .fallback(assets::serve)
        .layer(CompressionLayer::new())
        .with_state(gateway)
}

/// Serves HTTP until shutdown; open WebSocket sessions are tracked separately
/// and close themselves with 1001.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>) {
    let shutdown = gateway.shutdown.clone();
    let app = router(gateway);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("http server failed: {e}");
    }
}
