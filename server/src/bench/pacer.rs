//! The send clock of open-loop runs (`--rate`): one thread that releases every
//! connection's requests at their scheduled times.
//!
//! tokio's timers fire on whole milliseconds, rounded up. Paced by them, each
//! request left up to a millisecond after its scheduled time, together with
//! every other request due in the same millisecond; since latency counts from
//! the scheduled time, every figure carried that lateness (a p50 floor of about
//! 1.4 ms whatever the server) and every server saw bursts the schedule does
//! not have. A thread that sleeps with `nanosleep` wakes within its timer slack
//! (50 µs by default) of a due time, so requests leave about as spread as
//! they were scheduled.
//!
//! The thread only says *how many* of a connection's requests are due; each
//! request's scheduled time is still `Pacing`'s, so a late wake-up of this
//! thread is charged to the run (as a stalled server is), never hidden.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::session::Schedule;

/// When one connection sends: its first request at `first`, then one every `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub first: Instant,
    pub period: Duration,
}

impl Pacing {
    /// Connection `index` of `connections` that share `rate` requests a second
    /// from `start`: each sends every `connections / rate` seconds, and their
    /// first requests are spread evenly over one such period.
    pub fn for_connection(rate: f64, connections: usize, index: usize, start: Instant) -> Pacing {
        Pacing {
            first: start + Duration::from_secs_f64(index as f64 / rate),
            period: Duration::from_secs_f64(connections as f64 / rate),
        }
    }

    /// The scheduled time of request `k` (from 0).
    fn due(&self, k: u64) -> Instant {
        // Past u32::MAX requests on one connection the run is years long.
        self.first + self.period * u32::try_from(k).unwrap_or(u32::MAX)
    }
}

/// How many requests each connection may have sent so far.
pub struct Pacer {
    rate: f64,
    slots: Box<[Slot]>,
    stop: AtomicBool,
}

struct Slot {
    released: AtomicU64,
    waker: AtomicWaker,
}

impl Pacer {
    pub fn new(rate: f64, connections: usize) -> Arc<Pacer> {
        let slots = (0..connections)
            .map(|_| Slot {
                released: AtomicU64::new(0),
                waker: AtomicWaker::new(),
            })
            .collect();
        Arc::new(Pacer {
            rate,
            slots,
            stop: AtomicBool::new(false),
        })
    }

    /// When connection `index` sends.
    pub fn pacing(&self, index: usize, start: Instant) -> Pacing {
        Pacing::for_connection(self.rate, self.slots.len(), index, start)
    }

    /// Starts releasing requests on `schedule`, until `schedule.until` or
    /// [`Pacer::stop`]; the thread ends by itself then.
    pub fn start(self: &Arc<Self>, schedule: Schedule) -> anyhow::Result<()> {
        let pacer = self.clone();
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pacer.release(schedule))
            .context("cannot start the pacing thread")?;
        Ok(())
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The thread: request `j` of the whole run goes to connection `j % n` as
    /// its request `j / n`, which orders all of them by scheduled time.
    fn release(&self, schedule: Schedule) {
        let n = self.slots.len() as u64;
        let until = schedule.until.into_std();
        for j in 0.. {
            let index = (j % n) as usize;
            let due = self.pacing(index, schedule.start).due(j / n).into_std();
            if due >= until || self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let slot = &self.slots[index];
            slot.released.fetch_add(1, Ordering::Release);
            slot.waker.wake();
        }
    }

    /// How many of connection `index`'s requests are due, once that is more than `sent`.
    pub async fn released(&self, index: usize, sent: u64) -> u64 {
        let slot = &self.slots[index];
        poll_fn(|cx| {
            let due = slot.released.load(Ordering::Acquire);
            if due > sent {
                return Poll::Ready(due);
            }
            slot.waker.register(cx.waker());
            // A release between the load and the registration woke nobody.
            match slot.released.load(Ordering::Acquire) {
                due if due > sent => Poll::Ready(due),
                _ => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_the_rate_and_start_spread_over_one_period() {
        let start = Instant::now();
        let rate = 10_000.0;
        let first = Pacing::for_connection(rate, 1000, 0, start);
        let last = Pacing::for_connection(rate, 1000, 999, start);
        // 1,000 connections at 10,000 msg/s: 10 a second each.
        assert_eq!(first.period, Duration::from_millis(100));
        assert_eq!(first.first, start);
        assert_eq!(last.first - start, Duration::from_micros(99_900));
        assert!(last.first < start + first.period);
        assert_eq!(last.due(2) - start, Duration::from_micros(299_900));
    }

    #[tokio::test]
    async fn requests_are_released_in_schedule_order_and_no_earlier() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            measure_from: start,
            until: start + Duration::from_millis(50),
        };
        // 2 connections at 200 msg/s: each every 10 ms, the second 5 ms after the first.
        let pacer = Pacer::new(200.0, 2);
        pacer.start(schedule).unwrap();
        for index in 0..2 {
            let pacing = pacer.pacing(index, start);
            let mut seen = 0;
            while seen < 5 {
                seen = pacer.released(index, seen).await;
                let scheduled = pacing.due(seen - 1);
                assert!(Instant::now() >= scheduled, "{index}/{seen} released early");
            }
            assert_eq!(seen, 5, "connection {index}");
        }
        // Nothing is due at or after `until`.
        let late = tokio::time::timeout(Duration::from_millis(100), pacer.released(1, 5));
        assert!(late.await.is_err());
        pacer.stop();
    }
}
