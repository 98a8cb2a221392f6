//! `GET /ws`: who may open a WebSocket (origin, sign-in, the session limit),
//! decided before the upgrade; the relay itself only pumps.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::SinkExt;
use timecho_shared::relay::{close_code, subprotocol};
use tracing::{debug, info_span, Instrument};
use tungstenite::protocol::WebSocketConfig;

use super::handshake::WsRequest;
use crate::gateway::http_service::ForwardedShare;
use crate::gateway::relay::{self, close, BrowserSide, Mode};
use crate::gateway::state::Gateway;
use crate::gateway::{api, origin};
use crate::log_text::untrusted;
use crate::signin::Denied;

/// Read buffer of the WebSocket protocol layer, per session: messages here
/// are lines, and a small buffer keeps an idle session cheap (it grows while
/// a large frame passes).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Frames the protocol layer gathers before it writes to the socket: the
/// reply frames of one upstream read (at most `relay::READ_CHUNK` bytes of
/// lines, plus a few bytes of header per frame) go out in one write rather
/// than one every 4 KiB. The buffer grows only as far as a burst needs.
const WS_WRITE_BUFFER: usize = relay::READ_CHUNK + relay::READ_CHUNK / 8;

/// `GET /ws`: checks the origin, the subprotocol, sign-in and the session
/// limit, then upgrades.
pub async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(browser): ConnectInfo<SocketAddr>,
    share: Option<Extension<ForwardedShare>>,
    headers: HeaderMap,
    ws: WsRequest,
) -> Response {
    if let Err(reason) = origin::check(
        &headers,
        &gateway.settings.config.allowed_origins,
        gateway.settings.secure,
    ) {
        debug!(reason = %untrusted(&reason), "websocket refused");
        gateway.runtime.metrics.ws_refused.inc();
        return (StatusCode::FORBIDDEN, reason + "\n").into_response();
    }
    let protocol = ws.choose(&subprotocol::SUPPORTED);
    let mode = match protocol {
        Some(subprotocol::BINARY) => Mode::Binary,
        Some(_) => Mode::Lines,
        // Offering only protocols we do not speak: a strict client would fail
        // on a 101 that names none, so it is told at once, and why.
        None if ws.offers_any() => {
            gateway.runtime.metrics.ws_refused.inc();
            let reason = format!(
                "none of the offered WebSocket subprotocols is spoken here; offer {} or {}, or none\n",
                subprotocol::LINES,
                subprotocol::BINARY
            );
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
        None => Mode::Lines,
    };
    let mut signed_in = None;
    let mut user_slot = None;
    if let Some(auth) = &gateway.access.auth {
        match auth.authorize(&headers, browser.ip()).await {
            Ok(who) => {
                let Ok(slot) = gateway.capacity.per_user.take(&who.holder) else {
                    gateway.runtime.metrics.ws_refused.inc();
                    let reason = format!(
                        "this sign-in already has {} WebSocket sessions open, as many as one \
                         may; close one first\n",
                        gateway.capacity.per_user.max()
                    );
                    return (StatusCode::TOO_MANY_REQUESTS, reason).into_response();
                };
                user_slot = Some(slot);
                // Signed in with the page's cookie: signing out (or expiry) ends the socket.
                signed_in = auth.session_ends(&who);
            }
            Err(denied) => {
                gateway.runtime.metrics.ws_refused.inc();
                // A browser cannot read a refused handshake's status, but it can
                // read a close frame's reason: pages get one, scripts get the 401.
                if headers.contains_key(ORIGIN) {
                    // The page asks for a sign-in after 1008; a store that did not
                    // answer is a server failure it retries after.
                    let code = match denied {
                        Denied::StoreUnavailable => close_code::UPSTREAM_ERROR,
                        _ => close_code::POLICY,
                    };
                    let config = WebSocketConfig::default()
                        .read_buffer_size(WS_READ_BUFFER)
                        .write_buffer_size(WS_WRITE_BUFFER);
                    return ws.accept(
                        &gateway.runtime.tracker,
                        protocol,
                        config,
                        move |mut socket, _| async move {
                            let _ = socket.send(close(code, denied.reason().to_owned())).await;
                        },
                    );
                }
                return api::denied_to_script(denied);
            }
        }
    }
    let Ok(permit) = gateway.capacity.sessions.clone().try_acquire_owned() else {
        gateway.runtime.metrics.ws_refused.inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket sessions open; try again later\n",
        )
            .into_response();
    };
    // The protocol layer reads a frame somewhat over the limit whole, so the
    // session can refuse it with 1009 and a clean close; only far bigger frames
    // are cut off mid-read by the protocol layer itself.
    let hard_limit = gateway
        .settings
        .config
        .max_frame
        .saturating_mul(2)
        .max(16 * 1024);
    // The protocol layer's default buffers are 128 KiB each, allocated and
    // touched per session; ours are sized for lines.
    let config = WebSocketConfig::default()
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER);
    let tracker = gateway.runtime.tracker.clone();
    ws.accept(&tracker, protocol, config, move |socket, gate| {
        let span = info_span!("ws", %browser);
        let pair = BrowserSide {
            browser,
            signed_in,
            mode,
            gate,
        };
        let session = relay::session(socket, gateway, pair, permit, user_slot);
        // Behind an HTTP proxy, the browser's share is held while its session lives.
        let session = async move {
            let _share = share;
            session.await
        };
        session.instrument(span)
    })
}
