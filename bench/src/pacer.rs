//! The send clock of open-loop runs (`--rate`): when each connection's
//! requests may leave.
//!
//! By default each connection waits on a tokio timer. Those fire on whole
//! milliseconds, rounded up, so a request leaves up to about a millisecond
//! after its scheduled time, together with every other request due in the same
//! millisecond; since latency counts from the scheduled time, every figure
//! carries that lateness (a p50 floor of about 1.3 ms whatever the server).
//!
//! With `--precise-pacing` one thread sleeps with `nanosleep` from due time to
//! due time, waking at most every `PACER_TICK`, and tells each connection how
//! many of its requests are due: they leave within about 0.25 ms of their
//! schedule, spread as they were scheduled. It is not the default because it
//! costs: a thread wake-up and a task wake-up per tick instead of per
//! millisecond, about 1.6x the load generator's CPU at 10,000 msg/s on this
//! project's machine, taken from the cores the server under test needs; and a
//! server fed smoothly batches less, so its CPU per message rises as well
//! (BENCHMARKS.md, "The send clock").
//!
//! Either way each request's scheduled time is `Pacing`'s: a late wake-up is
//! charged to the run (as a stalled server is), never hidden.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::task::AtomicWaker;
use tokio::time::{Instant, Sleep};

use super::schedule::Schedule;

/// The pacing thread wakes at most this often; requests that fall due in
/// between leave together, at most a tick (and the timer slack) after their
/// scheduled time. Waking for every request instead cost the load generator
/// 2.4x the CPU at 10,000 msg/s (1.6x with this tick).
const PACER_TICK: Duration = Duration::from_micros(200);

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
    pub fn due(&self, k: u64) -> Instant {
        // Past u32::MAX requests on one connection the run is years long.
        self.first + self.period * u32::try_from(k).unwrap_or(u32::MAX)
    }
}

/// How many requests each connection may have sent so far.
pub struct Pacer {
    rate: f64,
    /// `--precise-pacing`: released by the thread, not by each connection's timer.
    precise: bool,
    slots: Box<[Slot]>,
    stop: AtomicBool,
}

struct Slot {
    released: AtomicU64,
    waker: AtomicWaker,
}

impl Pacer {
    pub fn new(rate: f64, connections: usize, precise: bool) -> Arc<Pacer> {
        let slots = (0..connections)
            .map(|_| Slot {
                released: AtomicU64::new(0),
                waker: AtomicWaker::new(),
            })
            .collect();
        Arc::new(Pacer {
            rate,
            precise,
            slots,
            stop: AtomicBool::new(false),
        })
    }

    /// When connection `index` sends.
    pub fn pacing(&self, index: usize, start: Instant) -> Pacing {
        Pacing::for_connection(self.rate, self.slots.len(), index, start)
    }

    /// Starts releasing requests on `schedule`, until `schedule.until` or
    /// [`Pacer::stop`]; the thread ends by itself then. Without
    /// `--precise-pacing` there is no thread.
    pub fn start(self: &Arc<Self>, schedule: Schedule) -> anyhow::Result<()> {
        if !self.precise {
            return Ok(());
        }
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
        let mut woke = std::time::Instant::now();
        for j in 0.. {
            let index = (j % n) as usize;
            let due = self.pacing(index, schedule.start).due(j / n).into_std();
            if due >= until || self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due.max(woke + PACER_TICK) - now);
                woke = std::time::Instant::now();
            }
            let slot = &self.slots[index];
            slot.released.fetch_add(1, Ordering::Release);
            slot.waker.wake();
        }
    }

    /// Waits until connection `index`'s request number `queued` may leave
    /// (on `pacing`), and returns the time up to which its requests may.
    /// `timer` is the connection's own, kept between calls.
    pub async fn wait(
        &self,
        index: usize,
        pacing: &Pacing,
        queued: u64,
        mut timer: Pin<&mut Sleep>,
    ) -> Instant {
        if self.precise {
            let due = self.released(index, queued).await;
            return pacing.due(due - 1);
        }
        let next = pacing.due(queued);
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        timer.await;
        Instant::now()
    }

    /// How many of connection `index`'s requests are due, once that is more than `sent`.
    async fn released(&self, index: usize, sent: u64) -> u64 {
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
        let pacer = Pacer::new(200.0, 2, true);
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
