//! When to try the gateway again: exponential backoff, kept apart from the
//! socket so the schedule is testable without a browser.

/// The first retry comes quickly: a restarting gateway is usually back at once.
pub const FIRST_DELAY_MS: u32 = 500;
/// Never wait longer than this: a person is looking at the page.
pub const MAX_DELAY_MS: u32 = 10_000;
/// A session that closes sooner than this, having relayed nothing, counts as a
/// failed attempt: a gateway that accepts and at once closes (upstream down)
/// must not be retried in a tight loop.
pub const HEALTHY_AFTER_MS: f64 = 3_000.0;

/// Failures since the last healthy session, and the delays they earn.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Failures since the last success: 0 before the first retry.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt:
    /// 0.5 s, 1 s, 2 s, 4 s, 8 s, then 10 s for as long as it takes.
    pub fn fail(&mut self) -> u32 {
        // Past 16 doublings the cap has long been reached; the bound keeps the
        // shift from overflowing.
        let doublings = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        (FIRST_DELAY_MS << doublings).min(MAX_DELAY_MS)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Whether a session that ended was a success worth resetting the backoff for.
pub fn was_healthy(opened_for_ms: Option<f64>, heard_anything: bool) -> bool {
    match opened_for_ms {
        Some(ms) => heard_anything || ms >= HEALTHY_AFTER_MS,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_half_a_second_up_to_ten() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.fail()).collect();
        assert_eq!(
            delays,
            [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn delays_stay_capped_after_very_many_failures() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.fail() <= MAX_DELAY_MS);
        }
        assert_eq!(b.fail(), MAX_DELAY_MS);
    }

    #[test]
    fn reset_starts_again_from_the_first_delay() {
        let mut b = Backoff::default();
        b.fail();
        b.fail();
        b.reset();
        assert_eq!(b.fail(), FIRST_DELAY_MS);
    }

    #[test]
    fn only_sessions_that_opened_and_lasted_or_relayed_are_healthy() {
        assert!(!was_healthy(None, false));
        assert!(!was_healthy(Some(10.0), false));
        assert!(was_healthy(Some(10.0), true));
        assert!(was_healthy(Some(HEALTHY_AFTER_MS), false));
    }
}
