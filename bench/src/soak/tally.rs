//! What the traffic did: counts of each kind of exchange, and the errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Errors kept word for word; the rest are only counted.
const KEPT_ERRORS: usize = 10;

#[derive(Debug, Default)]
pub struct Tally {
    pub steady_replies: AtomicU64,
    pub churned: AtomicU64,
    pub idle_opened: AtomicU64,
    /// Idle clients the server closed before they were replaced (token expiry, idle timeout).
    pub idle_closed_by_server: AtomicU64,
    pub oversize: AtomicU64,
    pub garbage: AtomicU64,
    pub bad_http: AtomicU64,
    pub sign_ins: AtomicU64,
    pub sign_outs: AtomicU64,
    pub renewals: AtomicU64,
    /// Steady WebSockets reopened after the server ended their token (4001).
    pub token_reopens: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

/// The counts, as reported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub steady_replies: u64,
    pub churned: u64,
    pub idle_opened: u64,
    pub idle_closed_by_server: u64,
    pub oversize: u64,
    pub garbage: u64,
    pub bad_http: u64,
    pub sign_ins: u64,
    pub sign_outs: u64,
    pub renewals: u64,
    pub token_reopens: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
}

impl Tally {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut kept = self
            .first_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() < KEPT_ERRORS {
            kept.push(what);
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn replies(&self) -> u64 {
        self.steady_replies.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> Counts {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            steady_replies: n(&self.steady_replies),
            churned: n(&self.churned),
            idle_opened: n(&self.idle_opened),
            idle_closed_by_server: n(&self.idle_closed_by_server),
            oversize: n(&self.oversize),
            garbage: n(&self.garbage),
            bad_http: n(&self.bad_http),
            sign_ins: n(&self.sign_ins),
            sign_outs: n(&self.sign_outs),
            renewals: n(&self.renewals),
            token_reopens: n(&self.token_reopens),
            errors: n(&self.errors),
            first_errors: self
                .first_errors
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}
