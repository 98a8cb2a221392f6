//! Behaviour the components share, as hooks: the socket to the relay, and an
//! input that takes the focus.

mod use_focus;
mod use_relay;

pub use use_focus::{focus, use_focus};
pub use use_relay::use_relay;
