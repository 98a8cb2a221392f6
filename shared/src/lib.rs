//! What the timecho server, gateway, client and web page share: line framing,
//! time stamps, the reply format, and the WebSocket relay contract.

pub mod api;
pub mod clock;
pub mod line_codec;
pub mod reconnect;
pub mod relay;
pub mod reply;
pub mod stamp;

pub use line_codec::{Frame, LineDecoder, Span, DEFAULT_MAX_LINE};
pub use reply::Reply;
pub use stamp::{Precision, Stamp, StampCache, StampError, StampFormat, TimeFormat};
