//! The WebSocket session every scripted client is asked to run (the spec), and
//! what it saw (the outcome): one JSON shape for Python's `websockets` and
//! `websocket-client`, node's `ws` and Chromium (outcome.py, ws_session.js).

use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::conversation::Conversation;
use super::tools::{debian_program, node_path, python_path};
use crate::support::{parse_reply, reply_texts};

/// How long one session may take inside its client.
const SESSION_TIMEOUT: Duration = Duration::from_secs(8);

/// One frame, sent or received: text, or bytes as hex (JSON has no bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Frame {
    Text { text: String },
    Binary { hex: String },
}

impl Frame {
    pub fn text(text: &str) -> Frame {
        Frame::Text {
            text: text.to_owned(),
        }
    }

    pub fn binary(bytes: &[u8]) -> Frame {
        Frame::Binary {
            hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// When the client sends its Close(1000).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Close {
    /// Once `replies` replies have arrived.
    AfterReplies,
    /// Right after its last frame: the replies are owed.
    AtOnce,
    /// Never: it waits for the server to close.
    ServerCloses,
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub url: String,
    /// Offered subprotocols (`Sec-WebSocket-Protocol`).
    pub protocols: Vec<String>,
    pub send: Vec<Frame>,
    pub close: Close,
    /// Replies due: text frames, or newlines of the binary stream.
    pub replies: usize,
    pub timeout_ms: u128,
}

impl Session {
    pub fn new(url: &str, protocols: &[&str], send: Vec<Frame>, close: Close) -> Session {
        Session {
            url: url.to_owned(),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            send,
            close,
            replies: 0,
            timeout_ms: SESSION_TIMEOUT.as_millis(),
        }
    }

    pub fn replies(mut self, replies: usize) -> Session {
        self.replies = replies;
        self
    }
}

/// A handshake the server refused.
#[derive(Debug, Clone, Deserialize)]
pub struct Refusal {
    /// The HTTP status, where the client tells it apart from its message.
    pub status: Option<u16>,
    pub error: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Outcome {
    pub refused: Option<Refusal>,
    /// The subprotocol the server chose; `None` (or "" from a browser) for none.
    pub protocol: Option<String>,
    pub received: Vec<Frame>,
    /// The code of the server's Close frame (1005 / 1006 where a browser or
    /// node's ws saw none).
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    /// The client's own failure, e.g. its deadline passed.
    pub error: Option<String>,
}

impl Outcome {
    /// Fails unless the session opened and the client saw no error of its own.
    #[track_caller]
    pub fn assert_opened(&self, protocol: Option<&str>) {
        assert!(self.refused.is_none(), "refused: {self:?}");
        assert!(self.error.is_none(), "the client failed: {self:?}");
        let chosen = self.protocol.as_deref().filter(|p| !p.is_empty());
        assert_eq!(chosen, protocol, "subprotocol chosen: {self:?}");
    }

    /// The echoed texts of text frames, each one stamped reply without a newline.
    #[track_caller]
    pub fn echoed_texts(&self) -> Vec<Vec<u8>> {
        self.received
            .iter()
            .map(|frame| match frame {
                Frame::Text { text } => {
                    assert!(
                        !text.contains('\n'),
                        "a reply frame holds a newline: {self:?}"
                    );
                    parse_reply(text.as_bytes()).1
                }
                Frame::Binary { .. } => panic!("a binary frame on a text session: {self:?}"),
            })
            .collect()
    }

    /// The echoed texts of the byte stream the binary frames carried.
    #[track_caller]
    pub fn echoed_stream(&self) -> Vec<Vec<u8>> {
        let mut stream = Vec::new();
        for frame in &self.received {
            match frame {
                Frame::Binary { hex } => stream.extend(unhex(hex)),
                Frame::Text { .. } => panic!("a text frame on a binary session: {self:?}"),
            }
        }
        reply_texts(&stream)
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from the client"))
        .collect()
}

/// The clients that run a [`Session`] from a script in tests/interop_support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptClient {
    /// Python's `websockets` (its sync client).
    PythonWebsockets,
    /// Python's `websocket-client`.
    PythonWebsocketClient,
    /// node's `ws`.
    NodeWs,
}

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop_support");

impl ScriptClient {
    pub fn run(self, session: &Session) -> Outcome {
        let cmd = match self {
            ScriptClient::PythonWebsockets | ScriptClient::PythonWebsocketClient => {
                let script = match self {
                    ScriptClient::PythonWebsockets => "websockets_session.py",
                    _ => "websocket_client_session.py",
                };
                let mut cmd = Command::new(debian_program("python3", "python3"));
                cmd.arg(format!("{SCRIPTS}/{script}"))
                    .env("PYTHONPATH", python_path())
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                cmd
            }
            ScriptClient::NodeWs => {
                let mut cmd = Command::new(debian_program("node", "nodejs"));
                cmd.arg(format!("{SCRIPTS}/ws_client.js"))
                    .env("NODE_PATH", node_path());
                cmd
            }
        };
        let mut client = Conversation::start(cmd);
        client.send(&serde_json::to_vec(session).expect("the session as JSON"));
        let ended = client.finish();
        assert!(
            ended.status.success(),
            "{self:?} failed ({}): {}",
            ended.status,
            ended.stderr
        );
        serde_json::from_slice(&ended.stdout).unwrap_or_else(|e| {
            panic!(
                "{self:?} printed no outcome ({e}): \"{}\"; stderr: {}",
                ended.stdout.escape_ascii(),
                ended.stderr
            )
        })
    }

    /// Fails unless `refusal` is how this client reports an HTTP 400.
    #[track_caller]
    pub fn assert_400(self, refusal: &Refusal) {
        match self {
            ScriptClient::PythonWebsockets | ScriptClient::PythonWebsocketClient => {
                assert_eq!(refusal.status, Some(400), "{self:?}: {refusal:?}");
            }
            ScriptClient::NodeWs => {
                assert_eq!(
                    refusal.error, "Unexpected server response: 400",
                    "{self:?}: {refusal:?}"
                );
            }
        }
    }
}
