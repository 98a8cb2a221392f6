//! What operators and load balancers ask: `/metrics`, `/healthz` (the process
//! is alive) and `/readyz` (it wants new clients; 503 from the moment a drain
//! starts, so a balancer stops sending clients before the listeners close).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

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

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        ops.metrics.encode(),
    )
}

async fn ready(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    if ops.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
