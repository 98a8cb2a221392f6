//! Open-loop load (`--rate`): requests leave on a fixed schedule whatever the
//! replies do, and each latency counts from the request's scheduled time, not
//! from when it was actually written. A server that stalls is then charged for
//! every request it delayed, as wrk2 does: a closed loop would simply send
//! fewer requests during the stall and hide it (coordinated omission).
//!
//! Reading and writing never wait on each other: the socket is polled for
//! either, and what cannot be written yet stays in the output buffer. A
//! blocking write here could deadlock at saturation (our unread replies fill
//! the server's send buffer, so it stops reading our requests).

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::time::{sleep_until, Instant};

use super::{Broken, Codec, Schedule, Session};
use crate::bench::stats::{Batch, Recorder};

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
}

impl<C: Codec> Session<C> {
    /// Sends on `pacing` until `schedule.until`, then collects the replies still owed.
    pub async fn run_paced(
        &mut self,
        pacing: Pacing,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
    ) {
        let mut batch = Batch::new();
        let result = self
            .paced_loop(pacing, reply_timeout, schedule, recorder, &mut batch)
            .await;
        batch.flush(recorder);
        if let Err(broken) = result {
            self.report_broken(&broken, recorder);
        }
    }

    async fn paced_loop(
        &mut self,
        pacing: Pacing,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
        batch: &mut Batch,
    ) -> Result<(), Broken> {
        let mut next = pacing.first;
        // Bytes at the front of `out` already written.
        let mut written = 0;
        let mut last_reply = Instant::now();
        let watchdog = sleep_until(last_reply + reply_timeout);
        let timer = sleep_until(next);
        tokio::pin!(watchdog, timer);
        if self.filled > 0 {
            self.take_replies(Instant::now(), &schedule, recorder, batch)?;
        }
        loop {
            let sending = next < schedule.until;
            let pending = written < self.out.len();
            if !sending && !pending && self.in_flight.is_empty() {
                return Ok(());
            }
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            tokio::select! {
                biased;
                ready = self.stream.ready(interest) => {
                    let ready = ready?;
                    if ready.is_readable() || ready.is_read_closed() {
                        match self.stream.try_read(&mut self.inbuf[self.filled..]) {
                            Ok(0) => return Err(Broken::Eof),
                            Ok(n) => {
                                let now = Instant::now();
                                last_reply = now;
                                self.filled += n;
                                self.take_replies(now, &schedule, recorder, batch)?;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    if ready.is_writable() {
                        written += self.write_some(written)?;
                    }
                }
                () = &mut timer, if sending => {
                    let now = Instant::now();
                    // Late wake-ups send every request that fell due, each
                    // stamped with its own due time.
                    while next <= now && next < schedule.until {
                        self.queue_request(next);
                        next += pacing.period;
                    }
                    timer.as_mut().reset(next);
                    written += self.write_some(written)?;
                }
                () = &mut watchdog => {
                    if self.in_flight.is_empty() || last_reply.elapsed() < reply_timeout {
                        watchdog.as_mut().reset(last_reply + reply_timeout);
                        continue;
                    }
                    return Err(Broken::Timeout(reply_timeout));
                }
            }
            if written > 0 && written == self.out.len() {
                self.out.clear();
                written = 0;
            }
        }
    }

    /// Writes what the socket takes now of `out[written..]`; how much it took.
    fn write_some(&mut self, written: usize) -> io::Result<usize> {
        if written == self.out.len() {
            return Ok(0);
        }
        match self.stream.try_write(&self.out[written..]) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
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
    }
}
