//! WebSocket clients of the gateway: a real one (tokio-tungstenite), and a raw
//! one that does the upgrade by hand and then writes frames, or goes silent, as
//! a broken or hostile page would.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{parse_reply, REPLY_TIMEOUT};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` with extra request headers (such as `origin`).
pub async fn ws_connect_with(
    http: SocketAddr,
    headers: &[(&'static str, &str)],
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{http}/ws").into_client_request()?;
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("a valid header value"));
    }
    let connect = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(REPLY_TIMEOUT, connect).await {
        Ok(result) => result.map(|(ws, _)| ws),
        Err(_) => panic!("no WebSocket handshake with {http} within {REPLY_TIMEOUT:?}"),
    }
}

/// Opens `/ws` as a command-line client does (no `Origin`).
pub async fn ws_connect(http: SocketAddr) -> Ws {
    ws_connect_with(http, &[])
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake with {http}: {e}"))
}

/// The next message other than a ping or pong; fails the test after
/// `REPLY_TIMEOUT` or if the socket ends first.
pub async fn ws_next(ws: &mut Ws) -> Message {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                Some(Err(e)) => panic!("WebSocket failed instead of sending a message: {e}"),
                None => panic!("WebSocket ended without a close frame"),
            }
        }
    };
    tokio::time::timeout(REPLY_TIMEOUT, next)
        .await
        .unwrap_or_else(|_| panic!("no WebSocket message within {REPLY_TIMEOUT:?}"))
}

/// The next text frame, as it came; fails on anything else.
pub async fn ws_text(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The echoed text of the next reply frame, which must be one stamped line.
pub async fn ws_reply(ws: &mut Ws) -> String {
    let frame = ws_text(ws).await;
    assert!(
        !frame.contains('\n'),
        "a reply frame holds a newline: {frame:?}"
    );
    String::from_utf8(parse_reply(frame.as_bytes()).1).expect("UTF-8 echo")
}

/// Sends one text frame and returns the echo of its one reply.
pub async fn ws_exchange(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send a frame");
    ws_reply(ws).await
}

/// Reads past any text frames to the close frame: its code and reason.
pub async fn ws_close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws_next(ws).await {
            Message::Close(Some(frame)) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned())
            }
            Message::Close(None) => panic!("close frame without a code"),
            Message::Text(_) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A client frame: final, masked (clients must mask), any opcode and payload.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Server frames (unmasked) in `bytes`: (opcode, payload) each; a frame cut
/// off at the end is left out.
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let (opcode, short) = (bytes[0] & 0x0f, usize::from(bytes[1] & 0x7f));
        let (len, head) = match short {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
                (usize::try_from(len).unwrap(), 10)
            }
            126 | 127 => break,
            n => (n, 2),
        };
        let Some(payload) = bytes.get(head..head + len) else {
            break;
        };
        frames.push((opcode, payload.to_vec()));
        bytes = &bytes[head + len..];
    }
    frames
}

/// A WebSocket upgraded by hand over a blocking socket: what it does after the
/// handshake is up to the test.
pub struct RawWs {
    pub stream: TcpStream,
}

impl RawWs {
    /// Upgrades `/ws`; fails the test unless the gateway answers 101.
    pub fn handshake(http: SocketAddr) -> RawWs {
        let mut stream =
            TcpStream::connect(http).unwrap_or_else(|e| panic!("connect to {http}: {e}"));
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        // Byte by byte, so no frame after the response is consumed with it.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!(
                    "handshake response cut off ({other:?}): {}",
                    head.escape_ascii()
                ),
            }
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "no upgrade: {}",
            head.escape_ascii()
        );
        RawWs { stream }
    }

    /// Writes one masked frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&masked_frame(opcode, payload))
    }
}
