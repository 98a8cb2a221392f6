//! The signals an operator sends: SIGINT/SIGTERM become the cancellation every
//! task watches (the first starts a graceful drain, a second exits at once),
//! and SIGHUP asks for a reload, which never stops the server.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::warn;

/// The handlers, installed before the server says it is listening, so a
/// supervisor that signals as soon as it sees the banner gets a graceful drain
/// (or a reload), never the default action, which would kill the process.
pub struct Signals {
    pub stop: Stop,
    /// SIGHUP, for [`crate::reload`].
    pub hangup: Signal,
}

/// SIGINT and SIGTERM.
pub struct Stop {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            stop: Stop {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            },
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

impl Stop {
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
