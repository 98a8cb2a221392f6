//! The interop suite's clients: where they are installed, the scripted
//! WebSocket session they run and what they saw, and the command-line ones
//! that talk through their standard streams.

mod conversation;
mod session;
mod slow_upstream;
mod tools;

pub use conversation::{Conversation, Ended};
pub use session::{Close, Frame, Outcome, ScriptClient, Session};
pub use slow_upstream::SlowUpstream;
pub use tools::{debian_program, websocat};

/// The page-side twin of the script clients: `wsSession(WebSocket, spec, done)`.
pub const WS_SESSION_JS: &str = include_str!("ws_session.js");
