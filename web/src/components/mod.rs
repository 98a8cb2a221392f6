//! One file per visible piece of the page.

mod account;
mod clock_panel;
mod composer;
mod message;
mod sign_in;
mod status_bar;
mod transcript;

pub use account::Account;
pub use clock_panel::ClockPanel;
pub use composer::Composer;
pub use message::Message;
pub use sign_in::{Credentials, SignIn};
pub use status_bar::StatusBar;
pub use transcript::Transcript;
