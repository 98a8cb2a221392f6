//! Load over a WebSocket gateway: the URL, and the opening handshake.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{generate_request, Response};
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::http::header::COOKIE;
use tungstenite::http::{HeaderValue, StatusCode};

use timecho_shared::host_port::{AddrError, HostPort};

/// Largest handshake response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// Where a `ws://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    pub addr: SocketAddr,
    /// `Host` header: the URL's authority.
    pub host: String,
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(
        "{0:?} is not a ws:// URL (wss:// is not supported; examples: ws://127.0.0.1:8080/ws)"
    )]
    Scheme(String),
    #[error(transparent)]
    Address(#[from] AddrError),
}

impl WsTarget {
    pub fn parse(url: &str) -> Result<WsTarget, UrlError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| UrlError::Scheme(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(UrlError::Scheme(url.to_owned()));
        }
        // The first address: every connection of the run goes to the same one.
        let addr = HostPort::parse_or_port(authority, 80)?.resolve_first()?;
        Ok(WsTarget {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("cannot make a WebSocket request for {url}: {error}")]
    Request {
        url: String,
        error: tungstenite::Error,
    },
    #[error("the WebSocket handshake was refused: {0}")]
    Refused(String),
    #[error("the WebSocket handshake answer has a wrong Sec-WebSocket-Accept")]
    BadAccept,
    #[error("the WebSocket handshake answer is not HTTP: {0}")]
    Malformed(tungstenite::Error),
    #[error("the WebSocket handshake answer is longer than {MAX_RESPONSE} bytes")]
    TooLong,
    #[error("the server closed the connection during the WebSocket handshake")]
    Eof,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Upgrades `stream` to a WebSocket; returns bytes received past the handshake.
/// The request (with a fresh random key) and the parsing of the answer are
/// tungstenite's; only the reading is ours, to keep the stream.
pub async fn handshake(
    stream: &mut TcpStream,
    target: &WsTarget,
) -> Result<Vec<u8>, HandshakeError> {
    handshake_with_cookie(stream, target, None).await
}

/// [`handshake`], sending `cookie` (`name=value`, a sign-in) with the request.
pub async fn handshake_with_cookie(
    stream: &mut TcpStream,
    target: &WsTarget,
    cookie: Option<&str>,
) -> Result<Vec<u8>, HandshakeError> {
    let url = format!("ws://{}{}", target.host, target.path);
    let (request, key) = url
        .as_str()
        .into_client_request()
        .and_then(|mut request| {
            if let Some(cookie) = cookie {
                let value = HeaderValue::from_str(cookie)
                    .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
                request.headers_mut().insert(COOKIE, value);
            }
            generate_request(request)
        })
        .map_err(|error| HandshakeError::Request {
            url: url.clone(),
            error,
        })?;
    stream.write_all(&request).await?;
    let mut received = Vec::with_capacity(1024);
    let (head_len, answer) = loop {
        if let Some(parsed) = Response::try_parse(&received).map_err(HandshakeError::Malformed)? {
            break parsed;
        }
        if received.len() >= MAX_RESPONSE {
            return Err(HandshakeError::TooLong);
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        received.extend_from_slice(&chunk[..n]);
    };
    check_response(&answer, &key)?;
    Ok(received.split_off(head_len))
}

/// Checks the status and the accept header of a handshake answer.
fn check_response(answer: &Response, key: &str) -> Result<(), HandshakeError> {
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::Refused(format!("HTTP {}", answer.status())));
    }
    let accept = answer.headers().get("sec-websocket-accept");
    if accept.is_none_or(|a| a.as_bytes() != derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_and_path() {
        let t = WsTarget::parse("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/ws")
        );
        let t = WsTarget::parse("ws://127.0.0.1:6080").unwrap();
        assert_eq!(t.path, "/");
        let t = WsTarget::parse("ws://[::1]:9/x?y=1").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
        assert_eq!(WsTarget::parse("ws://127.0.0.1/").unwrap().addr.port(), 80);
        assert!(WsTarget::parse("wss://127.0.0.1/").is_err());
        assert!(WsTarget::parse("127.0.0.1:8080").is_err());
    }

    fn answer(text: &str) -> Response {
        let (len, answer) = Response::try_parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(len, text.len());
        answer
    }

    #[test]
    fn answers_other_than_101_with_the_right_accept_are_refused() {
        // RFC 6455, section 1.3.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(&answer(ok), key).is_ok());
        let busy = "HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(matches!(
            check_response(&answer(busy), key),
            Err(HandshakeError::Refused(s)) if s == "HTTP 503 Service Unavailable"
        ));
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(matches!(
            check_response(&answer(wrong), key),
            Err(HandshakeError::BadAccept)
        ));
        let missing = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(matches!(
            check_response(&answer(missing), key),
            Err(HandshakeError::BadAccept)
        ));
    }

    /// A server that reads the request, answers with `answer`, then sends `after`.
    async fn answering(answer: &'static str, after: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 512];
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0, "the request ends with an empty line");
                request.extend_from_slice(&b[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let accept = derive_accept_key(key.as_bytes());
            let answer = answer.replace("{accept}", &accept);
            s.write_all(answer.as_bytes()).await.unwrap();
            s.write_all(after).await.unwrap();
            let _ = s.read(&mut [0u8; 1]).await;
        });
        addr
    }

    #[tokio::test]
    async fn an_upgrade_keeps_what_came_after_the_answer() {
        let addr = answering(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
            b"\x81\x02hi",
        )
        .await;
        let target = WsTarget::parse(&format!("ws://{addr}/ws")).unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut leftover = handshake(&mut stream, &target).await.unwrap();
        // The frame may come in the same read as the answer, or after it.
        while leftover.len() < 4 {
            let mut b = [0u8; 16];
            let n = stream.read(&mut b).await.unwrap();
            assert!(n > 0);
            leftover.extend_from_slice(&b[..n]);
        }
        assert_eq!(leftover, b"\x81\x02hi");
    }

    #[tokio::test]
    async fn a_refusal_names_the_status() {
        let addr = answering("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", b"").await;
        let target = WsTarget::parse(&format!("ws://{addr}/ws")).unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let err = handshake(&mut stream, &target).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the WebSocket handshake was refused: HTTP 403 Forbidden"
        );
    }
}
