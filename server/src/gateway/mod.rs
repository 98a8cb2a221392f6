//! The HTTP side: the embedded web page and the `/ws` WebSocket gateway, which
//! relays each browser to its own TCP connection to the configured timestamp
//! server. The target is fixed by the operator; the browser cannot choose it.

pub(crate) mod api;
mod assets;
mod edge;
pub mod hosts;
pub mod http_service;
mod ops;
mod origin;
pub mod per_user;
mod relay;
mod state;
mod upstream;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use hosts::HostHeader;
pub use ops::Ops;
pub use state::{Access, Capacity, Gateway, Runtime, Settings};

/// The largest request body read: the only bodies are sign-in forms, and
/// every connection may hold one while it arrives.
const MAX_BODY: usize = 16 * 1024;

/// The main HTTP listener's routes: the page, `/ws`, the sign-in API and the
/// operations endpoints. Request bodies must arrive within `body_timeout`.
pub fn router(gateway: Arc<Gateway>, ops: Arc<Ops>, body_timeout: Duration) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade::upgrade))
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
