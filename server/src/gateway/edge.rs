//! What every request to the main HTTP listener passes before its route: the
//! `Host` allow-list (DNS rebinding), sign-in for `/metrics` when `--auth` is
//! on, and the response headers a security review expects.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, HOST, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::debug;

use super::api;
use super::hosts::HostHeader;
use super::state::Gateway;

/// Exactly what the page needs: its own scripts and styles, wasm compilation,
/// fetches and WebSockets to its own origin; no framing, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";
/// Browsers remember for a year that this host speaks only https.
const HSTS: &str = "max-age=31536000";

/// Load balancers' probes, which may name the host any way they like; they
/// reveal nothing.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

pub async fn guard(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let mut response = if head_len(&request) > MAX_HEAD {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request's headers are larger than 32 KiB\n",
        )
            .into_response()
    } else if request.headers().get_all(HOST).iter().nth(1).is_some() {
        // Which one a proxy and we would each believe is anyone's guess.
        (StatusCode::BAD_REQUEST, "a request has one Host header\n").into_response()
    } else if !is_probe(path) && !host_allowed(&gateway, request.headers()) {
        debug!(%client, "refused: Host is not one of this server's names");
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host name \
             (its operator can add it with --allow-host NAME)\n",
        )
            .into_response()
    } else if let (true, Some(auth)) = (path == "/metrics", &gateway.access.auth) {
        match auth.authorize(request.headers(), client.ip()).await {
            Ok(_) => next.run(request).await,
            Err(denied) => api::denied_to_script(denied),
        }
    } else {
        next.run(request).await
    };
    security_headers(response.headers_mut(), gateway.settings.secure);
    response
}

/// The largest request head (request line and headers) answered. hyper's
/// read buffer bounds it too, but a read may run past that bound by a chunk.
const MAX_HEAD: usize = 32 * 1024;

/// The request head's size as it came: the request line, and each header
/// line with its `: ` and CRLF.
fn head_len(request: &Request) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + "  HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers + 2
}

/// Browsers always send `Host`; a request without one is not a rebinding
/// attack (HTTP/1.0 tools), so it is let through.
fn host_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(HOST) else {
        return true;
    };
    value
        .to_str()
        .ok()
        .and_then(HostHeader::parse)
        .is_some_and(|host| gateway.access.hosts.permits(&host))
}

fn security_headers(h: &mut HeaderMap, secure: bool) {
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    if secure {
        h.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}
