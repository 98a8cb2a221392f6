//! The page's API, whose paths and bodies are `timecho_shared::api`:
//! `GET /api/config` says what the page must know of the server's settings
//! (limits, stamp layout); when `--auth` is on, `GET /api/session` says who is
//! signed in, and `POST /api/login` and `POST /api/logout` manage the session
//! cookie.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use timecho_shared::api::{path, status, LoginRequest, ServerConfig, SessionInfo, StampInfo};
use tower_http::timeout::TimeoutError;
use tracing::info;

use super::origin;
use super::state::Gateway;
use crate::log_text::untrusted;
use crate::signin::Denied;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route(path::CONFIG, get(config))
        .route(path::SESSION, get(session))
        .route(path::LOGIN, post(login))
        .route(path::LOGOUT, post(logout))
}

/// No sign-in needed: it reveals only limits and the stamp layout, which every
/// reply shows anyway. Revalidated on each load (`no-cache`), so a restart
/// with other flags is seen at once.
async fn config(State(gateway): State<Arc<Gateway>>) -> Response {
    // Read per request: a local zone's offset changes with daylight saving time.
    let local_offset = chrono::Local::now().offset().local_minus_utc();
    let mut body = ServerConfig::new(
        gateway.settings.limits.max_line,
        gateway.settings.config.max_frame,
        StampInfo::new(&gateway.settings.stamp, local_offset),
        gateway.access.auth.is_some(),
    );
    body.instance = Some(gateway.settings.instance.clone());
    body.renew_every_seconds = gateway
        .access
        .auth
        .as_ref()
        .map(|a| (a.token_lifetime().as_secs() / 3).max(1));
    ([(CACHE_CONTROL, "no-cache")], Json(body)).into_response()
}

async fn session(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(auth) = &gateway.access.auth else {
        let info = SessionInfo {
            auth: false,
            user: None,
            reason: None,
        };
        return Json(info).into_response();
    };
    match auth.authorize(&headers, client.ip()).await {
        Ok(who) => {
            // A page signed in with its cookie gets a fresh token each time it
            // asks, so the token never expires while the page is open.
            let renewed = auth.renew(&who);
            let body = Json(SessionInfo {
                auth: true,
                user: Some(who.user),
                reason: None,
            });
            match renewed {
                Some(cookie) => ([(SET_COOKIE, cookie)], body).into_response(),
                None => body.into_response(),
            }
        }
        Err(d) => denied(d),
    }
}

async fn login(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Response {
    let Json(credentials) = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(rejection),
    };
    // Only pages this gateway serves may sign people in (no login CSRF).
    if let Err(reason) = origin::check(
        &headers,
        &gateway.settings.config.allowed_origins,
        gateway.settings.secure,
    ) {
        return (StatusCode::FORBIDDEN, reason).into_response();
    }
    let Some(auth) = &gateway.access.auth else {
        return (
            api_status(status::NOT_FOUND),
            "sign-in is not enabled on this server\n",
        )
            .into_response();
    };
    match auth
        .login(&credentials.user, &credentials.password, client.ip())
        .await
    {
        Ok(cookie) => {
            info!(user = %untrusted(&credentials.user), %client, "signed in");
            let body = SessionInfo {
                auth: true,
                user: Some(credentials.user),
                reason: None,
            };
            ([(SET_COOKIE, cookie)], Json(body)).into_response()
        }
        Err(d) => {
            if gateway.access.refusals.first_in_interval(client.ip()) {
                info!(user = %untrusted(&credentials.user), %client, "sign-in refused: {}", d.reason());
            }
            denied(d)
        }
    }
}

async fn logout(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some(auth) = &gateway.access.auth else {
        return StatusCode::NO_CONTENT.into_response();
    };
    match auth.logout(&headers).await {
        Ok(cleared) => ([(SET_COOKIE, cleared)], StatusCode::NO_CONTENT).into_response(),
        // Signed out here, but the other instances were not told: the page
        // says so and the person can try again (the cookie is kept for that).
        Err(d) => denied(d),
    }
}

/// Why a sign-in body was not taken: 408 when it did not arrive within
/// `--body-timeout`, else axum's own answer (400, 413, 415, 422).
fn body_refused(rejection: JsonRejection) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
    while let Some(e) = cause {
        if e.is::<TimeoutError>() {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time\n",
            )
                .into_response();
        }
        cause = e.source();
    }
    rejection.into_response()
}

/// 401 (429 when rate-limited, 503 when sign-in is busy or the session store
/// does not answer) with the reason, in the session format.
/// The page's own API challenges only with `Bearer`: a `Basic` challenge on a
/// same-origin fetch would make browsers pop up their own login dialog over
/// the page's form. Scripts on `/ws` are offered both.
pub fn denied(d: Denied) -> Response {
    denied_with(d, r#"Bearer realm="timecho""#)
}

pub fn denied_to_script(d: Denied) -> Response {
    denied_with(d, r#"Bearer realm="timecho", Basic realm="timecho""#)
}

fn denied_with(d: Denied, challenge: &'static str) -> Response {
    let body = Json(SessionInfo {
        auth: true,
        user: None,
        reason: Some(d.reason().to_owned()),
    });
    let challenge = [("www-authenticate", challenge)];
    match d {
        Denied::NoCredentials | Denied::BadCredentials => {
            (api_status(status::UNAUTHORIZED), challenge, body).into_response()
        }
        Denied::RateLimited => {
            (api_status(status::TOO_MANY_REQUESTS), challenge, body).into_response()
        }
        // Nothing was wrong with the attempt: it may be sent again as it is.
        Denied::Busy | Denied::StoreUnavailable => (
            api_status(status::SERVICE_UNAVAILABLE),
            [(RETRY_AFTER, "1")],
            body,
        )
            .into_response(),
    }
}

/// One of the contract's statuses, all of them valid HTTP codes.
fn api_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
