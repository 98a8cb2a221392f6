//! The WebSocket opening handshake (RFC 6455, section 4.2) on the server side.
//!
//! axum's `WebSocketUpgrade` hands over a finished `WebSocket` and never the
//! byte stream under it, and the relay needs that stream: a client's Close is
//! held back there until the replies it is owed are sent ([`close_gate`]). So
//! the checks are made here, the accept key and the frame layer come from
//! tungstenite, and the session gets the stream with its gate.
//!
//! [`close_gate`]: super::close_gate

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tracing::debug;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::close_gate::{CloseGate, GateHandle};

/// An upgraded session's socket: frames over the gated byte stream.
pub type Socket = WebSocketStream<CloseGate<TokioIo<Upgraded>>>;

/// A request that asks, correctly, to become a WebSocket.
pub struct WsRequest {
    key: HeaderValue,
    /// The subprotocols offered, in the client's order.
    offered: Vec<HeaderValue>,
    on_upgrade: OnUpgrade,
}

/// Why a request cannot be upgraded; answered with its status and a line of text.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("a WebSocket handshake is a GET request")]
    NotGet,
    #[error("a WebSocket handshake needs HTTP/1.1")]
    NotHttp11,
    #[error("the Connection header must include \"upgrade\"")]
    NoConnectionUpgrade,
    #[error("the Upgrade header must be \"websocket\"")]
    NoUpgradeWebsocket,
    #[error("only WebSocket version 13 is spoken here")]
    Version,
    #[error("the Sec-WebSocket-Key header is missing")]
    NoKey,
    #[error("the Sec-WebSocket-Key header must be 16 bytes in base64")]
    BadKey,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        let status = match self {
            HandshakeError::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if matches!(self, HandshakeError::Version) {
            // RFC 6455, 4.4: name the versions we do speak.
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WsRequest {
    type Rejection = HandshakeError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HandshakeError> {
        if parts.method != Method::GET {
            return Err(HandshakeError::NotGet);
        }
        if parts.version != Version::HTTP_11 {
            return Err(HandshakeError::NotHttp11);
        }
        let headers = &parts.headers;
        if !has_token(headers, CONNECTION, "upgrade") {
            return Err(HandshakeError::NoConnectionUpgrade);
        }
        if !headers
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        {
            return Err(HandshakeError::NoUpgradeWebsocket);
        }
        if headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(HandshakeError::Version);
        }
        let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
        let key = keys.next().ok_or(HandshakeError::NoKey)?.clone();
        if keys.next().is_some() || !is_nonce(key.as_bytes()) {
            return Err(HandshakeError::BadKey);
        }
        let offered = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.is_empty())
            .filter_map(|p| HeaderValue::from_bytes(p).ok())
            .collect();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(HandshakeError::NotUpgradable)?;
        Ok(WsRequest {
            key,
            offered,
            on_upgrade,
        })
    }
}

impl WsRequest {
    /// The first of `ours` (in our order of preference) the client offered.
    pub fn choose(&self, ours: &[&'static str]) -> Option<&'static str> {
        ours.iter()
            .copied()
            .find(|p| self.offered.iter().any(|o| o.as_bytes() == p.as_bytes()))
    }

    /// Whether the client offered any subprotocol at all.
    pub fn offers_any(&self) -> bool {
        !self.offered.is_empty()
    }

    /// Answers 101 and runs `session` on the upgraded socket once hyper hands
    /// it over, as a task of `tracker`: a drain waits for the upgrade too, and
    /// for a refusal's close frame.
    pub fn accept<F, Fut>(
        self,
        tracker: &TaskTracker,
        protocol: Option<&'static str>,
        config: WebSocketConfig,
        session: F,
    ) -> Response
    where
        F: FnOnce(Socket, GateHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tracker.spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    debug!("websocket upgrade failed: {e}");
                    return;
                }
            };
            let (gate, handle) = CloseGate::new(TokioIo::new(upgraded));
            let socket = WebSocketStream::from_raw_socket(gate, Role::Server, Some(config)).await;
            session(socket, handle).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        if let Some(p) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        response
    }
}

/// RFC 6455, 4.1: the key is a random 16-byte value, base64-encoded.
fn is_nonce(key: &[u8]) -> bool {
    use base64::Engine as _;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|nonce| nonce.len() == 16)
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_sixteen_bytes_in_base64() {
        assert!(is_nonce(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"x",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ=!",
            b"dGhlIHNhbXBsZSBub25jZSEh",
        ] {
            assert!(!is_nonce(bad), "{}", bad.escape_ascii());
        }
    }
}
