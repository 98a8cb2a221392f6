//! When a client of the gateway tries again: the page's schedule, shared so the
//! load generator and the tests can follow exactly the same one.
//!
//! Retries use "full jitter" (a random delay between zero and an exponential
//! bound, as in AWS's "Exponential Backoff and Jitter"): when a gateway with
//! thousands of open pages goes away, they come back spread over the bound
//! instead of all in the same millisecond, again and again. A planned restart
//! says so in its close frame ([`close_code::RESTART`] with a window in the
//! reason), and the page then waits a random time within that window.
//!
//! Randomness comes from the caller as a number in `[0, 1)` (`Math.random()`
//! in the page), so the schedule itself is deterministic and testable.
//!
//! [`close_code::RESTART`]: crate::relay::close_code::RESTART

use std::time::Duration;

/// The first retry's bound: a restarting gateway is usually back at once.
pub const FIRST_DELAY_MS: u32 = 500;
/// The bound never grows past this: a person is looking at the page.
pub const MAX_DELAY_MS: u32 = 10_000;
/// A session that closes sooner than this, having relayed nothing, counts as a
/// failed attempt: a gateway that accepts and at once closes (upstream down)
/// must not be retried in a tight loop.
pub const HEALTHY_AFTER_MS: f64 = 3_000.0;

/// The words before the window in a restart's close reason.
const WINDOW_PREFIX: &str = "restarting; reconnect within ";

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

    /// The bound on the next delay: 0.5 s, 1 s, 2 s, 4 s, 8 s, then 10 s.
    pub fn bound_ms(&self) -> u32 {
        // Past 16 doublings the cap has long been reached; the bound keeps the
        // shift from overflowing.
        (FIRST_DELAY_MS << self.failures.min(16)).min(MAX_DELAY_MS)
    }

    /// Records a failure and returns how long to wait before the next attempt:
    /// `unit` (in `[0, 1)`) of the bound.
    pub fn fail(&mut self, unit: f64) -> u32 {
        let delay = within(self.bound_ms(), unit);
        self.failures = self.failures.saturating_add(1);
        delay
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

/// The close reason of a planned restart: read by people, and by clients for
/// the window in which to come back.
pub fn restart_reason(window: Duration) -> String {
    format!("{WINDOW_PREFIX}{} ms", window.as_millis())
}

/// The window a restart's close reason names, in milliseconds.
pub fn restart_window_ms(reason: &str) -> Option<u32> {
    let ms = reason.strip_prefix(WINDOW_PREFIX)?.strip_suffix(" ms")?;
    ms.parse().ok()
}

/// How long to wait after a restart that named `window_ms`: `unit` of it.
pub fn restart_delay_ms(window_ms: u32, unit: f64) -> u32 {
    within(window_ms, unit)
}

/// `unit` (clamped to `[0, 1)`) of `bound`, in whole milliseconds below it.
fn within(bound: u32, unit: f64) -> u32 {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((f64::from(bound) * unit) as u32).min(bound.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_from_half_a_second_up_to_ten() {
        let mut b = Backoff::default();
        let bounds: Vec<_> = (0..8)
            .map(|_| {
                let bound = b.bound_ms();
                b.fail(0.5);
                bound
            })
            .collect();
        assert_eq!(
            bounds,
            [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn each_delay_is_its_share_of_the_bound() {
        let mut b = Backoff::default();
        assert_eq!(b.fail(0.0), 0);
        assert_eq!(b.fail(0.5), 500);
        assert_eq!(b.fail(0.25), 500);
        assert_eq!(b.fail(0.999_999), 3_999);
        // Out-of-range randomness still gives a delay within the bound.
        assert_eq!(b.fail(7.0), 7_999);
        assert_eq!(b.fail(-1.0), 0);
        assert_eq!(b.fail(f64::NAN), 0);
    }

    #[test]
    fn delays_stay_capped_after_very_many_failures() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.fail(0.999) < MAX_DELAY_MS);
        }
        assert_eq!(b.bound_ms(), MAX_DELAY_MS);
        assert_eq!(b.failures(), 100);
    }

    #[test]
    fn reset_starts_again_from_the_first_bound() {
        let mut b = Backoff::default();
        b.fail(0.5);
        b.fail(0.5);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.fail(0.5), FIRST_DELAY_MS / 2);
    }

    #[test]
    fn only_sessions_that_opened_and_lasted_or_relayed_are_healthy() {
        assert!(!was_healthy(None, false));
        assert!(!was_healthy(None, true));
        assert!(!was_healthy(Some(10.0), false));
        assert!(was_healthy(Some(10.0), true));
        assert!(was_healthy(Some(HEALTHY_AFTER_MS), false));
        assert!(!was_healthy(Some(HEALTHY_AFTER_MS - 1.0), false));
    }

    #[test]
    fn a_restart_names_its_window_for_people_and_clients() {
        let reason = restart_reason(Duration::from_secs(5));
        assert_eq!(reason, "restarting; reconnect within 5000 ms");
        assert_eq!(restart_window_ms(&reason), Some(5_000));
        assert_eq!(restart_window_ms("server shutting down"), None);
        assert_eq!(restart_window_ms("restarting; reconnect within 5 s"), None);
        assert_eq!(restart_window_ms("restarting; reconnect within x ms"), None);
        assert_eq!(restart_delay_ms(5_000, 0.5), 2_500);
        assert_eq!(restart_delay_ms(5_000, 0.0), 0);
        assert_eq!(restart_delay_ms(0, 0.5), 0);
    }
}
