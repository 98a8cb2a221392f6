//! Load over a WebSocket gateway: the URL, and the opening handshake.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host_port::{AddrError, HostPort};

/// Largest handshake response accepted.
const MAX_RESPONSE: usize = 16 * 1024;
/// RFC 6455, section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
    #[error("the WebSocket handshake was refused: {0}")]
    Refused(String),
    #[error("the WebSocket handshake answer has a wrong Sec-WebSocket-Accept")]
    BadAccept,
    #[error("the WebSocket handshake answer is longer than {MAX_RESPONSE} bytes")]
    TooLong,
    #[error("the server closed the connection during the WebSocket handshake")]
    Eof,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Upgrades `stream` to a WebSocket; returns bytes received past the handshake.
pub async fn handshake(
    stream: &mut TcpStream,
    target: &WsTarget,
) -> Result<Vec<u8>, HandshakeError> {
    let key = new_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        path = target.path,
        host = target.host,
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if response.len() >= MAX_RESPONSE {
            return Err(HandshakeError::TooLong);
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        response.extend_from_slice(&chunk[..n]);
    };
    check_response(&response[..head_len], &key)?;
    Ok(response.split_off(head_len))
}

fn new_key() -> String {
    let random = RandomState::new();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random.hash_one(1u8).to_ne_bytes());
    bytes[8..].copy_from_slice(&random.hash_one(2u8).to_ne_bytes());
    BASE64.encode(bytes)
}

fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Checks the status line and the accept header of a handshake answer.
fn check_response(head: &[u8], key: &str) -> Result<(), HandshakeError> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(HandshakeError::Refused(status.to_owned()));
    }
    let accept = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim())
    });
    if accept != Some(accept_for(key).as_str()) {
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

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn answers_other_than_101_with_the_right_accept_are_refused() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(ok.as_bytes(), key).is_ok());
        let busy = "HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(matches!(
            check_response(busy.as_bytes(), key),
            Err(HandshakeError::Refused(s)) if s.contains("503")
        ));
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(matches!(
            check_response(wrong.as_bytes(), key),
            Err(HandshakeError::BadAccept)
        ));
    }
}
