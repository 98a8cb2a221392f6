//! Just enough HTTP/1.1 for the soak: one request per connection
//! (`Connection: close`), the answer read to its end.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest answer read (a /metrics page is a few KiB).
const MAX_ANSWER: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("not an HTTP answer: {0:?}")]
    Malformed(String),
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    head: String,
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `method path` with `headers` (each `Name: value`) and `body`, and reads the answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
    limit: Duration,
) -> Result<Answer, HttpError> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(text.as_bytes()).await?;
        let mut raw = Vec::new();
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = timeout(limit, exchange)
        .await
        .map_err(|_| HttpError::Timeout(limit))??;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Result<Answer, HttpError> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed(raw.chars().take(80).collect()))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HttpError::Malformed(head.chars().take(80).collect()))?;
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_headers_and_body_are_read() {
        let a = parse("HTTP/1.1 200 OK\r\nset-cookie: s=1; HttpOnly\r\nX: y\r\n\r\nhello").unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("Set-Cookie"), Some("s=1; HttpOnly"));
        assert_eq!(a.header("missing"), None);
        assert_eq!(a.body, "hello");
        assert!(parse("garbage").is_err());
    }
}
