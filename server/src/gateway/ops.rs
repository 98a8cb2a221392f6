//! What operators and load balancers ask: `/metrics`, `/healthz` (the process
//! is alive) and `/readyz` (it wants new clients; 503 from the moment a drain
//! starts, so a balancer stops sending clients before the listeners close).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Format, Metrics};

pub struct Ops {
    pub metrics: Arc<Metrics>,
    /// Cancelled when the drain starts.
    pub draining: CancellationToken,
}

pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ops)
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the 0.0.4
/// text format for anyone else: each body under its own content type.
async fn metrics(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [(CONTENT_TYPE, format.content_type()), (VARY, "Accept")],
        ops.metrics.encode(format),
    )
}

async fn ready(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    if ops.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
