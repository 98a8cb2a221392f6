//! The HTTP side: the embedded web page and the `/ws` WebSocket gateway, which
//! relays each browser to its own TCP connection to the configured timestamp
//! server. The target is fixed by the operator; the browser cannot choose it.

pub(crate) mod api;
mod assets;
mod close_gate;
mod edge;
pub mod hosts;
pub mod http_service;
mod ops;
mod origin;
pub mod per_user;
mod relay;
mod session_socket;
mod upstream;
mod ws_handshake;
mod ws_upgrade;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use timecho_shared::StampFormat;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::{GatewayConfig, Limits, Upstream};
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::signin::Auth;
use hosts::HostHeader;
pub use ops::Ops;

/// Everything a request handler needs, shared behind one `Arc`.
pub struct Gateway {
    pub config: GatewayConfig,
    /// The timestamp server every session is relayed to, and whether it
    /// expects a PROXY header naming the browser.
    pub upstream: Upstream,
    /// Largest text frame accepted; the same as the TCP line limit.
    pub max_frame: usize,
    /// How the timestamp server writes its stamps, for `/api/config`.
    pub stamp: StampFormat,
    pub sessions: Arc<Semaphore>,
    /// Sessions open per sign-in (`--max-websockets-per-user`).
    pub per_user: Arc<per_user::PerUser>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Deadlines: drain, stall (upstream writes), linger (the browser's close
    /// frame), connect (the timestamp server).
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// The names this gateway answers for (`Host`).
    pub hosts: Arc<hosts::AllowedHosts>,
    /// Served over TLS: origins are `https://`, responses carry HSTS.
    pub secure: bool,
    /// Sign-in for the page and `/ws`, when `--auth` is given.
    pub auth: Option<Auth>,
    /// Refused sign-ins, logged once per client and interval.
    pub refusals: Arc<RefusalLog>,
    /// `--instance`, for `/api/config`.
    pub instance: String,
}

/// The largest request body read: the only bodies are sign-in forms, and
/// every connection may hold one while it arrives.
const MAX_BODY: usize = 16 * 1024;

/// The main HTTP listener's routes: the page, `/ws`, the sign-in API and the
/// operations endpoints. Request bodies must arrive within `body_timeout`.
pub fn router(gateway: Arc<Gateway>, ops: Arc<Ops>, body_timeout: Duration) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade::upgrade))
        .merge(api::router())
        .fallback(assets::serve)
        .with_state(gateway.clone())
        .merge(ops::router(ops))
        .layer(CompressionLayer::new().compress_when(assets::without_etag()))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(gateway, edge::guard))
}

/// Only the operations endpoints, for their own listener (`--metrics`).
pub fn ops_router(ops: Arc<Ops>) -> Router {
    ops::router(ops)
}

/// `--redirect-http`: answers every plain http request for one of our names
/// with a redirect to the same path on the https listener.
pub fn redirect_router(https_port: u16, hosts: Arc<hosts::AllowedHosts>) -> Router {
    Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = match headers
            .get(HOST)
            .map(|v| v.to_str().ok().and_then(HostHeader::parse))
        {
            None => HostHeader::parse("localhost"),
            Some(parsed) => parsed.filter(|h| hosts.permits(h)),
        };
        let Some(host) = host else {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that host name\n",
            )
                .into_response();
        };
        let port = match https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Redirect::permanent(&format!("https://{}{port}{path}", host.url_host())).into_response()
    })
}
