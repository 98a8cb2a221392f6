//! WebSocket clients of the gateway: a real one (tokio-tungstenite), and a raw
//! one that does the upgrade by hand and then writes frames, or goes silent, as
//! a broken or hostile page would. Raw frames are laid out and read by
//! tungstenite's `FrameHeader`, so they differ from a real client's only where
//! a test breaks them on purpose.

use std::io::{self, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
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

/// The mask of every frame the tests' raw clients send: a fixed one, so that
/// a failing case sends the same bytes each run.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The header of a client frame as RFC 6455 wants it: final, masked (clients
/// must mask), with `opcode`. A case that needs a frame a client must not
/// send (a reserved bit, no mask, a fragmented control frame) changes the
/// fields it is about and builds it with [`frame`], which lays out any
/// header as given (tungstenite's `WebSocket` would never send one).
pub fn client_header(opcode: u8) -> FrameHeader {
    FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::from(opcode),
        mask: Some(MASK),
    }
}

/// One frame as sent on the wire, laid out by tungstenite (length encoding,
/// and masking when `header` has a mask), whether RFC 6455 allows the
/// header or not.
pub fn frame(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(header.len(payload.len() as u64) + payload.len());
    Frame::from_payload(header, payload.to_vec().into())
        .format(&mut bytes)
        .expect("a frame is written into memory");
    bytes
}

/// A client frame: final, masked, any opcode and payload.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(client_header(opcode), payload)
}

/// Server frames in `bytes`: (opcode, payload) each; a frame cut off at the
/// end is left out. Fails the test on a masked one: servers never mask.
pub fn server_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut cursor = Cursor::new(bytes);
    let mut frames = Vec::new();
    while let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) {
        let start = usize::try_from(cursor.position()).expect("a position in memory");
        let Some(payload) = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(start..start.checked_add(len)?))
        else {
            break;
        };
        frames.push(server_frame(header, payload.to_vec()));
        cursor.set_position(cursor.position() + len);
    }
    frames
}

/// A server frame's opcode and payload, once its header is checked.
fn server_frame(header: FrameHeader, payload: Vec<u8>) -> (u8, Vec<u8>) {
    assert!(
        header.mask.is_none(),
        "the server masked a frame ({header:?}): RFC 6455 5.1 forbids it"
    );
    (u8::from(header.opcode), payload)
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

    /// Reads the next server frame, and nothing after it, so the stream can
    /// be read on: its opcode and payload. Fails the test if none comes
    /// within the stream's read timeout.
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        // The header's length depends on its first bytes: read it a byte at
        // a time (at most 14) until tungstenite can parse it.
        let mut head = Vec::new();
        let (header, len) = loop {
            match FrameHeader::parse(&mut Cursor::new(&head)) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {
                    let mut byte = [0u8; 1];
                    self.stream.read_exact(&mut byte).unwrap_or_else(|e| {
                        panic!("a frame header cut off ({e}): {}", head.escape_ascii())
                    });
                    head.push(byte[0]);
                }
                Err(e) => panic!("not a frame header ({e}): {}", head.escape_ascii()),
            }
        };
        let mut payload = vec![0; usize::try_from(len).expect("a payload that fits in memory")];
        self.stream
            .read_exact(&mut payload)
            .unwrap_or_else(|e| panic!("a {len}-byte payload cut off: {e}"));
        server_frame(header, payload)
    }
}
