//! The gateway's `/ws` as a line stream, so that the client, `clock` and the
//! sessions built on [`LineStream`] talk to `ws://` and `wss://` URLs as they do to a
//! TCP port: for a user behind a proxy that passes only HTTP, and for a web
//! developer trying the gateway from a terminal.
//!
//! The contract is `timecho_shared::relay`'s (docs/protocol.md, `/ws`): each
//! line written is sent as one text message, each text message received is
//! read as one line. A close is the end of the stream when it is the normal
//! one; the idle close (4002) reads as the server's own notice would over TCP
//! (`error: idle for 300s; closing`) before the end; any other close is an
//! error that carries the gateway's reason.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use anyhow::anyhow;
use futures_util::{Sink, Stream};
use timecho_shared::relay::{close_code, subprotocol};
use timecho_shared::reply::ERROR_PREFIX;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message};

use super::conn::{self, LineStream, Link};
use timecho_shared::host_port::HostPort;

/// The longest line accepted from standard input before its newline: the
/// gateway takes no more than `--max-line` (64 KiB by default) anyway.
const MAX_OUTGOING_LINE: usize = 1024 * 1024;

/// `ws://HOST[:PORT][/PATH]` or `wss://...`, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// The URL as given, sent in the handshake.
    pub text: String,
    pub tls: bool,
    pub server: HostPort,
}

impl WsUrl {
    /// `None` when `text` is not a WebSocket URL (it is then HOST:PORT).
    pub fn parse(text: &str) -> anyhow::Result<Option<WsUrl>> {
        let (tls, rest, port) = if let Some(rest) = text.strip_prefix("ws://") {
            (false, rest, 80)
        } else if let Some(rest) = text.strip_prefix("wss://") {
            (true, rest, 443)
        } else {
            return Ok(None);
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let server = HostPort::parse_or_port(authority, port)
            .map_err(|e| anyhow!("{text:?} is not a WebSocket URL: {e}"))?;
        Ok(Some(WsUrl {
            text: text.to_owned(),
            tls,
            server,
        }))
    }
}

/// Opens the WebSocket (over TLS for `wss://`, verified as `--tls` is) and
/// returns it as a line stream.
pub async fn connect(
    url: &WsUrl,
    ca: Option<&Path>,
    pin: Option<[u8; 32]>,
) -> anyhow::Result<Link> {
    let under = if url.tls {
        conn::tls(&url.server, ca, pin).await?
    } else {
        conn::tcp(&url.server).await?
    };
    let mut request = url
        .text
        .as_str()
        .into_client_request()
        .map_err(|e| anyhow!("{:?} is not a WebSocket URL: {e}", url.text))?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(subprotocol::LINES),
    );
    let (ws, response) = tokio_tungstenite::client_async(request, under.conn)
        .await
        .map_err(|e| refused(&url.text, e))?;
    let instance = response
        .headers()
        .get(timecho_shared::api::header::INSTANCE)
        .and_then(|v| v.to_str().ok())
        // Visible ASCII only (to_str), so it prints as it is.
        .map(str::to_owned);
    Ok(Link {
        conn: Box::new(WsLines::new(ws)),
        peer: format!("{} ({})", url.text, under.peer),
        instance,
    })
}

/// Why the handshake failed, with what the gateway said when it answered.
fn refused(url: &str, e: WsError) -> anyhow::Error {
    match e {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .map(|b| b.trim().chars().take(200).collect::<String>())
                .filter(|b| !b.is_empty());
            let status = response.status();
            match body {
                Some(body) => anyhow!("{url} refused the WebSocket: {status}: {body}"),
                None => anyhow!("{url} refused the WebSocket: {status}"),
            }
        }
        other => anyhow!("WebSocket handshake with {url} failed: {other}"),
    }
}

/// A WebSocket read and written as lines (the module says how).
pub struct WsLines {
    ws: WebSocketStream<LineStream>,
    /// Received lines not yet read, each with its newline.
    incoming: Vec<u8>,
    read_at: usize,
    /// Written bytes after the last newline: the start of the next message.
    outgoing: Vec<u8>,
    /// Whole lines not yet handed to the WebSocket.
    queue: VecDeque<String>,
    /// The gateway closed (or the connection ended): reads end once
    /// `incoming` is read.
    ended: bool,
}

impl WsLines {
    fn new(ws: WebSocketStream<LineStream>) -> WsLines {
        WsLines {
            ws,
            incoming: Vec::new(),
            read_at: 0,
            outgoing: Vec::new(),
            queue: VecDeque::new(),
            ended: false,
        }
    }

    /// Hands every queued line to the WebSocket.
    fn poll_send_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            let line = self.queue.pop_front().unwrap_or_default();
            Pin::new(&mut self.ws)
                .start_send(Message::text(line))
                .map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `line` (without its newline) as one text message.
    fn queue_line(&mut self, mut line: Vec<u8>) -> io::Result<()> {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8(line).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a line is not UTF-8, and a WebSocket text message must be",
            )
        })?;
        self.queue.push_back(text);
        Ok(())
    }

    /// What a close means to the reader: the end, the end after a notice,
    /// or an error in the gateway's words.
    fn closed(&mut self, frame: Option<CloseFrame>) -> io::Result<()> {
        self.ended = true;
        let Some(frame) = frame else {
            return Ok(());
        };
        match u16::from(frame.code) {
            close_code::NORMAL => Ok(()),
            close_code::IDLE => {
                self.incoming.extend_from_slice(ERROR_PREFIX.as_bytes());
                self.incoming.extend_from_slice(frame.reason.as_bytes());
                self.incoming.push(b'\n');
                Ok(())
            }
            code if frame.reason.is_empty() => Err(io::Error::other(format!(
                "the gateway closed the WebSocket with code {code}"
            ))),
            code => Err(io::Error::other(format!(
                "the gateway closed the WebSocket: {} (code {code})",
                frame.reason.as_str()
            ))),
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl AsyncRead for WsLines {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_at < this.incoming.len() {
                let n = buf.remaining().min(this.incoming.len() - this.read_at);
                buf.put_slice(&this.incoming[this.read_at..this.read_at + n]);
                this.read_at += n;
                if this.read_at == this.incoming.len() {
                    this.incoming.clear();
                    this.read_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    this.incoming.extend_from_slice(text.as_bytes());
                    this.incoming.push(b'\n');
                }
                Some(Ok(Message::Close(frame))) => this.closed(frame)?,
                Some(Ok(Message::Binary(_))) => {
                    return Poll::Ready(Err(io::Error::other(
                        "the gateway sent a binary message on a text session",
                    )))
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.ended = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl AsyncWrite for WsLines {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was queued before goes first: a slow gateway slows the writer.
        ready!(this.poll_send_queue(cx))?;
        let mut rest = buf;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let mut line = std::mem::take(&mut this.outgoing);
            line.extend_from_slice(&rest[..end]);
            this.queue_line(line)?;
            rest = &rest[end + 1..];
        }
        if this.outgoing.len() + rest.len() > MAX_OUTGOING_LINE {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a line is longer than {MAX_OUTGOING_LINE} bytes"),
            )));
        }
        this.outgoing.extend_from_slice(rest);
        // Started now; a flush finishes it.
        if let Poll::Ready(Err(e)) = this.poll_send_queue(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_queue(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io_error)
    }

    /// Sends what is left of a line, then a Close: the gateway answers every
    /// message sent before it, then closes in turn (the end of reading).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.outgoing.is_empty() {
            let line = std::mem::take(&mut this.outgoing);
            this.queue_line(line)?;
        }
        ready!(this.poll_send_queue(cx))?;
        Pin::new(&mut this.ws).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_name_their_server_and_default_port() {
        let url = WsUrl::parse("ws://127.0.0.1:8080/ws").unwrap().unwrap();
        assert_eq!(url.server.to_string(), "127.0.0.1:8080");
        assert!(!url.tls);
        let url = WsUrl::parse("wss://example.org/ws").unwrap().unwrap();
        assert_eq!(url.server.to_string(), "example.org:443");
        assert!(url.tls);
        let url = WsUrl::parse("ws://[::1]/ws?x=1").unwrap().unwrap();
        assert_eq!(url.server.to_string(), "[::1]:80");
        assert_eq!(WsUrl::parse("localhost:8899").unwrap(), None);
        let err = WsUrl::parse("ws://:80/ws").unwrap_err().to_string();
        assert!(err.contains("not a WebSocket URL"), "{err}");
    }
}
