//! Counting replies and errors, and the latency histograms.
//!
//! Connections record into a [`Batch`] of their own, which is merged into the
//! shared [`Recorder`] every few hundred replies or every tenth of a second, so
//! the hot loop takes no lock and allocates nothing. The recorder keeps the whole
//! measurement and, for the progress line, the current second.

use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Latencies are recorded in nanoseconds, from 1 ns to a minute, with three
/// significant digits.
const HIGHEST_NS: u64 = 60_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// Replies a batch holds before it is merged.
const BATCH_LEN: usize = 256;
/// Longest a batch waits before it is merged, so the progress line stays current.
const BATCH_AGE: Duration = Duration::from_millis(100);

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// Why requests failed; each counts requests, except `connect_failed`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Replies that were not `[<stamp>] <payload>` of the request they answer.
    pub mismatched: u64,
    /// Requests with no reply within --timeout.
    pub timeouts: u64,
    /// Requests lost because the server closed the connection or broke the protocol.
    pub closed: u64,
    /// Connections (not requests) that could not be opened.
    pub connect_failed: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.mismatched + self.timeouts + self.closed + self.connect_failed
    }

    fn add(&mut self, other: &Errors) {
        self.mismatched += other.mismatched;
        self.timeouts += other.timeouts;
        self.closed += other.closed;
        self.connect_failed += other.connect_failed;
    }
}

/// What every connection reports into.
pub struct Recorder {
    shared: Mutex<Recorded>,
    /// Connections currently exchanging messages.
    pub live: AtomicUsize,
}

struct Recorded {
    measured: Histogram<u64>,
    /// Replies since the progress line last looked, warm-up included.
    second: Histogram<u64>,
    errors: Errors,
    first_error: Option<String>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            shared: Mutex::new(Recorded {
                measured: histogram(),
                second: histogram(),
                errors: Errors::default(),
                first_error: None,
            }),
            live: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panicking connection task leaves counts that are still worth reporting.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts errors; the first description is kept for the report.
    pub fn error(&self, errors: Errors, what: impl FnOnce() -> String) {
        let mut shared = self.lock();
        shared.errors.add(&errors);
        if shared.first_error.is_none() {
            shared.first_error = Some(what());
        }
    }

    /// Takes the current second's replies for the progress line.
    pub fn take_second(&self) -> (u64, Option<u64>, Errors) {
        let mut shared = self.lock();
        let count = shared.second.len();
        let p99 = (count > 0).then(|| shared.second.value_at_quantile(0.99));
        shared.second.reset();
        (count, p99, shared.errors)
    }

    /// The measured latencies, errors, and the first error's description.
    pub fn finish(&self) -> (Histogram<u64>, Errors, Option<String>) {
        let shared = self.lock();
        (
            shared.measured.clone(),
            shared.errors,
            shared.first_error.clone(),
        )
    }
}

/// One connection's replies not yet merged into the recorder.
pub struct Batch {
    latencies_ns: Vec<u64>,
    measured: bool,
    since: Instant,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            latencies_ns: Vec::with_capacity(BATCH_LEN),
            measured: false,
            since: Instant::now(),
        }
    }

    /// Records one reply received at `now`; `measured` is false during warm-up.
    #[inline]
    pub fn record(&mut self, recorder: &Recorder, latency: Duration, measured: bool, now: Instant) {
        if measured != self.measured {
            self.flush(recorder);
            self.measured = measured;
        }
        if self.latencies_ns.is_empty() {
            self.since = now;
        }
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latencies_ns.push(ns.clamp(1, HIGHEST_NS));
        if self.latencies_ns.len() == BATCH_LEN || now - self.since >= BATCH_AGE {
            self.flush(recorder);
        }
    }

    pub fn flush(&mut self, recorder: &Recorder) {
        if self.latencies_ns.is_empty() {
            return;
        }
        let mut shared = recorder.lock();
        for &ns in &self.latencies_ns {
            // Values are clamped to the histogram's range, so recording cannot fail.
            let _ = shared.second.record(ns);
            if self.measured {
                let _ = shared.measured.record(ns);
            }
        }
        self.latencies_ns.clear();
    }
}

/// Latency percentiles of a measurement, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// `None` when nothing was recorded.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(Latency {
            min: us(h.min()),
            mean: h.mean() / 1_000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error hdrhistogram allows at three significant digits.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1_000).unwrap();
        }
        let l = Latency::from_histogram(&h).unwrap();
        assert!(close(l.min, 1.0), "{l:?}");
        assert!(close(l.p50, 500.0), "{l:?}");
        assert!(close(l.p90, 900.0), "{l:?}");
        assert!(close(l.p99, 990.0), "{l:?}");
        assert!(close(l.p999, 999.0), "{l:?}");
        assert!(close(l.max, 1000.0), "{l:?}");
        assert!(close(l.mean, 500.5), "{l:?}");
    }

    #[test]
    fn one_slow_reply_in_a_thousand_shows_only_at_the_top() {
        let mut h = histogram();
        for _ in 0..999 {
            h.record(20_000).unwrap();
        }
        h.record(5_000_000).unwrap();
        let l = Latency::from_histogram(&h).unwrap();
        assert!(close(l.p99, 20.0), "{l:?}");
        assert!(close(l.max, 5000.0), "{l:?}");
    }

    #[test]
    fn nothing_recorded_has_no_percentiles() {
        assert_eq!(Latency::from_histogram(&histogram()), None);
    }

    #[test]
    fn warm_up_replies_show_in_progress_but_not_in_the_measurement() {
        let recorder = Recorder::new();
        let mut batch = Batch::new();
        let now = Instant::now();
        for _ in 0..10 {
            batch.record(&recorder, Duration::from_micros(30), false, now);
        }
        for _ in 0..5 {
            batch.record(&recorder, Duration::from_micros(40), true, now);
        }
        batch.flush(&recorder);
        let (second, _, _) = recorder.take_second();
        assert_eq!(second, 15);
        let (measured, errors, _) = recorder.finish();
        assert_eq!(measured.len(), 5);
        assert_eq!(errors.total(), 0);
    }

    #[test]
    fn first_error_is_kept() {
        let recorder = Recorder::new();
        let one = Errors {
            mismatched: 1,
            ..Errors::default()
        };
        recorder.error(one, || "first".into());
        recorder.error(one, || "second".into());
        let (_, errors, first) = recorder.finish();
        assert_eq!(errors.mismatched, 2);
        assert_eq!(first.as_deref(), Some("first"));
    }
}
