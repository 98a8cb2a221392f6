//! Turning SIGINT/SIGTERM into the cancellation every task watches. The first
//! signal starts a graceful drain; a second one exits at once.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::warn;

/// The handlers, installed before the server says it is listening, so a
/// supervisor that signals as soon as it sees the banner gets a graceful drain.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first SIGINT or SIGTERM, then arms the second-signal exit.
    pub async fn first(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
            warn!("second signal: exiting without waiting for connections");
            std::process::exit(130);
        });
    }
}
