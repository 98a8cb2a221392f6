//! Turning SIGINT/SIGTERM into the cancellation every task watches. The first
//! signal starts a graceful drain; a second one exits at once.

use tokio::signal::unix::{signal, SignalKind};
use tracing::warn;

/// Waits for the first SIGINT or SIGTERM, then arms the second-signal exit.
pub async fn signalled() -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        warn!("second signal: exiting without waiting for connections");
        std::process::exit(130);
    });
    Ok(())
}
