//! One file per visible piece of the page.

mod composer;
mod message;
mod status_bar;
mod transcript;

pub use composer::Composer;
pub use message::Message;
pub use status_bar::StatusBar;
pub use transcript::Transcript;
