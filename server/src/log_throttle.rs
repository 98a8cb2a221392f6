//! A warning that an outage repeats for every client (the timestamp server
//! unreachable, for each page that connects) is logged at most once per
//! interval, with the number left unlogged since: a reconnect storm against a
//! dead upstream must not flood the log and drown everyone else's lines. The
//! metrics count every occurrence.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct Throttle {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::default(),
        }
    }

    /// Whether this occurrence gets a line: `Some(n)`, with the `n` that did
    /// not since the last one that did; `None` while the interval runs.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .last_logged
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            state.unlogged += 1;
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_of_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.admit(), Some(0), "the first is logged");
        for _ in 0..5 {
            assert_eq!(throttle.admit(), None);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(throttle.admit(), None, "still within the interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(throttle.admit(), Some(6), "with the six not logged");
        assert_eq!(throttle.admit(), None);
    }
}
