//! The times of a run, which every connection and the pacer share: a leaf,
//! so that the send clock (`pacer`) and the connections (`session`) both read
//! it without either importing the other.

use tokio::time::Instant;

/// The times of a run, the same for every connection.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Load starts: the first request (or, with `--rate`, the first scheduled one).
    pub start: Instant,
    /// Replies before this are warm-up.
    pub measure_from: Instant,
    /// No request is sent from here on; replies still owed are awaited and checked.
    pub until: Instant,
}

impl Schedule {
    /// Whether a reply at `at` counts: after warm-up and before the end.
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.until
    }
}
