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

use super::{Broken, Codec, Session};
use crate::pacer::{Pacer, Pacing};
use crate::schedule::Schedule;
use crate::stats::{Batch, Recorder};

impl<C: Codec> Session<C> {
    /// Sends as `pacer` releases this connection's requests until
    /// `schedule.until`, then collects the replies still owed.
    pub async fn run_paced(
        &mut self,
        pacer: &Pacer,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
    ) {
        let mut batch = Batch::new();
        let result = self
            .paced_loop(pacer, reply_timeout, schedule, recorder, &mut batch)
            .await;
        batch.flush(recorder);
        if let Err(broken) = result {
            self.report_broken(&broken, recorder);
        }
    }

    async fn paced_loop(
        &mut self,
        pacer: &Pacer,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
        batch: &mut Batch,
    ) -> Result<(), Broken> {
        let pacing: Pacing = pacer.pacing(self.index, schedule.start);
        // How many requests were queued; the next one is due at `pacing.due(queued)`.
        let mut queued = 0;
        // Bytes at the front of `out` already written.
        let mut written = 0;
        let mut last_reply = Instant::now();
        let watchdog = sleep_until(last_reply + reply_timeout);
        let timer = sleep_until(pacing.first);
        tokio::pin!(watchdog, timer);
        if self.filled > 0 {
            self.take_replies(Instant::now(), &schedule, recorder, batch)?;
        }
        loop {
            let sending = pacing.due(queued) < schedule.until;
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
                due = pacer.wait(self.index, &pacing, queued, timer.as_mut()), if sending => {
                    // A late wake-up sends every request that fell due, each
                    // stamped with its own scheduled time.
                    let mut next = pacing.due(queued);
                    while next <= due && next < schedule.until {
                        self.queue_request(next);
                        queued += 1;
                        next = pacing.due(queued);
                    }
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
