//! Refusals a client can provoke at will (a wrong password, a rate-limited
//! sign-in) are logged as one line per client and interval, with a count, so
//! that a flood cannot flood the log (one client made 23,000 lines a second,
//! enough to trip journald's rate limit and lose everyone else's lines). The
//! metrics count every refusal; the log says who, and how often.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::client_key::ClientKey;

/// How long a client's later refusals are only counted.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Clients followed at once; past it, the rest are counted together.
const MAX_CLIENTS: usize = 10_000;

#[derive(Default)]
pub struct RefusalLog {
    clients: Mutex<HashMap<Option<ClientKey>, Window>>,
}

struct Window {
    /// The client's address as first seen in this window, for the summary.
    client: IpAddr,
    started: Instant,
    /// Refusals since the logged one.
    unlogged: u64,
}

impl RefusalLog {
    /// Whether this refusal of `client` gets a line of its own: the first
    /// in its interval does; the rest are counted for [`RefusalLog::flush`].
    pub fn first_in_interval(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = Some(ClientKey::of(client));
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
            key = None;
        }
        match clients.get_mut(&key) {
            Some(window) => {
                window.unlogged += 1;
                false
            }
            None => {
                clients.insert(
                    key,
                    Window {
                        client,
                        started: now,
                        unlogged: 0,
                    },
                );
                true
            }
        }
    }

    /// Logs one line per client whose interval is over with refusals left
    /// unlogged, and forgets those clients.
    pub fn flush(&self, what: &str) {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|key, window| {
            if now.duration_since(window.started) < INTERVAL {
                return true;
            }
            if window.unlogged > 0 {
                let who = match key {
                    Some(_) => window.client.to_string(),
                    None => "other clients".to_owned(),
                };
                info!(
                    client = %who,
                    "{what}: {} more from this client in the last {INTERVAL:?}",
                    window.unlogged
                );
            }
            false
        });
    }

    /// Flushes every interval until shutdown.
    pub async fn flush_every_interval(&self, what: &'static str, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return self.flush(what),
                _ = tick.tick() => self.flush(what),
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_per_client_and_interval() {
        let log = RefusalLog::default();
        assert!(log.first_in_interval(ip("192.0.2.1")));
        for _ in 0..1000 {
            assert!(!log.first_in_interval(ip("192.0.2.1")));
        }
        assert!(
            log.first_in_interval(ip("192.0.2.2")),
            "another client has its own"
        );
        log.flush("sign-in refused");
        assert_eq!(log.len(), 2, "nothing is flushed before its interval ends");
        tokio::time::advance(INTERVAL).await;
        log.flush("sign-in refused");
        assert_eq!(log.len(), 0);
        assert!(
            log.first_in_interval(ip("192.0.2.1")),
            "a new interval, a new line"
        );
    }
}
