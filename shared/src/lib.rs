//! What the timecho server, gateway, client and web page share: line framing,
//! time stamps, the reply format, and the WebSocket relay contract; and, with
//! the `cli` feature, the command-line values the server and the load generator
//! both read (addresses, durations).

pub mod api;
pub mod clock;
#[cfg(feature = "cli")]
pub mod duration_arg;
#[cfg(feature = "cli")]
pub mod host_port;
pub mod line_codec;
pub mod reconnect;
pub mod relay;
pub mod reply;
pub mod stamp;

pub use line_codec::{Frame, LineDecoder, Span, DEFAULT_MAX_LINE};
pub use reply::Reply;
pub use stamp::{Precision, Stamp, StampCache, StampError, StampFormat, TimeFormat};
