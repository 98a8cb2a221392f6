//! A WebSocket client for the soak: the bench's own handshake (with a sign-in
//! cookie when there is one), then tungstenite's framing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::Role;
use tungstenite::Message;

use super::tcp_client::check_echo;
use crate::ws::{self, WsTarget};

pub type Ws = WebSocketStream<TcpStream>;

/// How a WebSocket ended, as the server said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    /// The connection dropped without a close frame.
    Dropped,
}

pub async fn connect(
    target: &WsTarget,
    cookie: Option<&str>,
    limit: Duration,
) -> Result<Ws, String> {
    let opening = async {
        let mut stream = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("ws connect to {}: {e}", target.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let leftover = ws::handshake_with_cookie(&mut stream, target, cookie)
            .await
            .map_err(|e| e.to_string())?;
        // The gateway speaks only when spoken to.
        if !leftover.is_empty() {
            return Err("the gateway sent a frame before any request".to_owned());
        }
        Ok(WebSocketStream::from_raw_socket(stream, Role::Client, None).await)
    };
    timeout(limit, opening)
        .await
        .map_err(|_| format!("ws open: no answer within {limit:?}"))?
}

/// The next text or binary message, answering pings on the way; `Err(Ended)`
/// when the server closed instead.
pub async fn next_data(ws: &mut Ws, limit: Duration) -> Result<Result<Vec<u8>, Ended>, String> {
    let reading = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(Ok(t.as_bytes().to_vec())),
                Some(Ok(Message::Binary(b))) => return Ok(Ok(b.to_vec())),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Err(
                        frame.map_or(Ended::Dropped, |f| Ended::Closed(f.code.into()))
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Err(Ended::Dropped)),
            }
        }
    };
    timeout(limit, reading)
        .await
        .map_err(|_| format!("ws: no answer within {limit:?}"))?
}

/// Sends `payload` as a text frame; its stamped echo must come back.
pub async fn exchange(ws: &mut Ws, payload: &str, limit: Duration) -> Result<(), ExchangeError> {
    ws.send(Message::text(payload))
        .await
        .map_err(|e| ExchangeError::Failed(format!("ws send: {e}")))?;
    match next_data(ws, limit).await.map_err(ExchangeError::Failed)? {
        Ok(reply) => {
            let line = reply.strip_suffix(b"\n").unwrap_or(&reply);
            check_echo(line, payload.as_bytes()).map_err(ExchangeError::Failed)
        }
        Err(ended) => Err(ExchangeError::Ended(ended)),
    }
}

#[derive(Debug)]
pub enum ExchangeError {
    /// The server ended the socket (it may have had a reason: a token expired).
    Ended(Ended),
    Failed(String),
}

impl ExchangeError {
    pub fn describe(&self) -> String {
        match self {
            ExchangeError::Ended(Ended::Closed(code)) => format!("ws closed with {code}"),
            ExchangeError::Ended(Ended::Dropped) => "ws dropped without a close frame".into(),
            ExchangeError::Failed(e) => e.clone(),
        }
    }
}

/// Sends whatever `message` is and waits for the server to close with `code`.
pub async fn expect_close(
    ws: &mut Ws,
    message: Message,
    code: u16,
    limit: Duration,
) -> Result<(), String> {
    ws.send(message)
        .await
        .map_err(|e| format!("ws send: {e}"))?;
    wait_close(ws, code, limit).await
}

/// Reads until the server's close frame, which must carry `code`.
pub async fn wait_close(ws: &mut Ws, code: u16, limit: Duration) -> Result<(), String> {
    loop {
        match next_data(ws, limit).await? {
            Ok(_) => continue,
            Err(Ended::Closed(c)) if c == code => return Ok(()),
            Err(other) => return Err(format!("expected a close with {code}, got {other:?}")),
        }
    }
}

/// Closes politely, not waiting long for the answer.
pub async fn close(mut ws: Ws, limit: Duration) {
    let _ = timeout(limit, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
