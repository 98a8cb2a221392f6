//! One connection under load: keep `pipeline` requests in flight (or, with
//! `--rate`, send on a schedule: `paced`), check every reply against its
//! request, time it, and stop cleanly when the run ends.
//!
//! Writing and reading alternate in one task. That cannot deadlock: at most
//! `pipeline` replies are ever owed, which the socket buffers hold. Every buffer
//! (payload, output, input, the ring of send times) is allocated when the
//! connection opens and reused for every message.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use timecho_shared::reply::ReplyBytes;
use timecho_shared::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::payload::{self, Payload};
use super::schedule::Schedule;
use super::stats::{Batch, Errors, Recorder};

mod paced;

/// Room for a stamp and framing around each reply.
pub const REPLY_OVERHEAD: usize = 320;
/// Smallest input buffer; enough for a few short replies at once.
const MIN_INBUF: usize = 4 * 1024;

/// How requests and replies look on the wire: lines over TCP, or WebSocket frames.
pub trait Codec: Send {
    /// Appends one request carrying `payload` to `out`.
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>);

    /// Decodes whole replies at the front of `input`, calling `on_reply` for each
    /// reply line, and returns how many bytes it used. Anything the protocol
    /// requires to be answered (a WebSocket ping) is appended to `control`.
    fn decode<F: FnMut(Frame<'_>)>(
        &mut self,
        input: &[u8],
        control: &mut Vec<u8>,
        on_reply: F,
    ) -> Result<usize, ProtocolError>;

    /// Bytes to send before closing, such as a WebSocket close frame.
    fn goodbye(&mut self, _out: &mut Vec<u8>) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the server closed the WebSocket (code {code}{reason})")]
    Closed { code: u16, reason: String },
    #[error("the server broke the WebSocket protocol: {0}")]
    Invalid(&'static str),
    #[error("the server broke the WebSocket protocol: {0}")]
    Header(tungstenite::Error),
}

/// Why a connection stopped before the end of the run.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Eof,
    #[error("a reply is larger than the {0}-byte input buffer")]
    Overflow(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

pub struct Session<C> {
    stream: TcpStream,
    codec: C,
    index: usize,
    payload: Payload,
    next_seq: u64,
    expect_seq: u64,
    /// Send times of the requests in flight, oldest first.
    in_flight: VecDeque<Instant>,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    filled: usize,
}

impl<C: Codec> Session<C> {
    /// `leftover` is input already read past a handshake.
    pub fn new(
        stream: TcpStream,
        codec: C,
        index: usize,
        size: usize,
        pipeline: usize,
        leftover: &[u8],
    ) -> Self {
        let mut inbuf = vec![0; (2 * pipeline * (size + REPLY_OVERHEAD)).max(MIN_INBUF)];
        let filled = leftover.len().min(inbuf.len());
        inbuf[..filled].copy_from_slice(&leftover[..filled]);
        let first = Payload::first_seq(index);
        Session {
            stream,
            codec,
            index,
            payload: Payload::new(size),
            next_seq: first,
            expect_seq: first,
            in_flight: VecDeque::with_capacity(pipeline),
            out: Vec::with_capacity(pipeline * (size + 16)),
            inbuf,
            filled,
        }
    }

    /// Sends load until `schedule.until`, then collects the replies still owed.
    /// Failures are counted in `recorder`. The connection stays open until
    /// [`Session::close`], so that the server's CPU time can be read first (a
    /// server that forks per client loses a child, and its CPU time, on close).
    pub async fn run_load(
        &mut self,
        pipeline: usize,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
    ) {
        let mut batch = Batch::new();
        let result = self
            .load_loop(pipeline, reply_timeout, schedule, recorder, &mut batch)
            .await;
        batch.flush(recorder);
        if let Err(broken) = result {
            self.report_broken(&broken, recorder);
        }
    }

    async fn load_loop(
        &mut self,
        pipeline: usize,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
        batch: &mut Batch,
    ) -> Result<(), Broken> {
        let mut now = Instant::now();
        let mut last_reply = now;
        // One timer per connection, moved only when it fires: a request is late
        // when nothing at all has arrived for `reply_timeout`.
        let watchdog = sleep_until(now + reply_timeout);
        tokio::pin!(watchdog);
        if self.filled > 0 {
            self.take_replies(now, &schedule, recorder, batch)?;
        }
        loop {
            if now < schedule.until {
                while self.in_flight.len() < pipeline {
                    self.queue_request(now);
                }
            } else if self.in_flight.is_empty() {
                return Ok(());
            }
            self.send_out().await?;
            let n = tokio::select! {
                biased;
                read = self.stream.read(&mut self.inbuf[self.filled..]) => read?,
                () = &mut watchdog => {
                    if self.in_flight.is_empty() || last_reply.elapsed() < reply_timeout {
                        watchdog.as_mut().reset(last_reply + reply_timeout);
                        now = Instant::now();
                        continue;
                    }
                    return Err(Broken::Timeout(reply_timeout));
                }
            };
            if n == 0 {
                return Err(Broken::Eof);
            }
            now = Instant::now();
            last_reply = now;
            self.filled += n;
            self.take_replies(now, &schedule, recorder, batch)?;
        }
    }

    /// Exchanges one message, proving the whole path works; false (and counted) if not.
    pub async fn echo_once(&mut self, reply_timeout: Duration, recorder: &Recorder) -> bool {
        let now = Instant::now();
        // Nothing is measured and nothing more is sent: `until` has passed.
        let schedule = Schedule {
            start: now,
            measure_from: now,
            until: now,
        };
        self.queue_request(now);
        let mut batch = Batch::new();
        let exchanged = self
            .load_loop(1, reply_timeout, schedule, recorder, &mut batch)
            .await;
        if let Err(broken) = exchanged {
            self.report_broken(&broken, recorder);
            return false;
        }
        true
    }

    /// Keeps the connection open and idle (answering pings) until `stop`, then
    /// closes it. False if the server closed it first.
    pub async fn idle_until(&mut self, stop: &CancellationToken, recorder: &Recorder) -> bool {
        let never = Schedule {
            start: Instant::now(),
            measure_from: Instant::now(),
            until: Instant::now(),
        };
        let mut batch = Batch::new();
        loop {
            let read = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.close().await;
                    return true;
                }
                read = self.stream.read(&mut self.inbuf[self.filled..]) => read,
            };
            match read {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    self.filled += n;
                    let taken = self.take_replies(Instant::now(), &never, recorder, &mut batch);
                    if taken.is_err() || self.send_out().await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    fn queue_request(&mut self, now: Instant) {
        let bytes = self.payload.for_seq(self.next_seq);
        self.codec.encode(bytes, &mut self.out);
        self.next_seq += 1;
        self.in_flight.push_back(now);
    }

    async fn send_out(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Checks and times every whole reply in the input buffer, then keeps the rest.
    fn take_replies(
        &mut self,
        now: Instant,
        schedule: &Schedule,
        recorder: &Recorder,
        batch: &mut Batch,
    ) -> Result<(), Broken> {
        let Session {
            codec,
            index,
            payload,
            expect_seq,
            in_flight,
            out,
            inbuf,
            filled,
            ..
        } = self;
        let measured = schedule.measures(now);
        let used = codec.decode(&inbuf[..*filled], out, |frame| {
            let Some(sent) = in_flight.pop_front() else {
                recorder.error(
                    Errors {
                        mismatched: 1,
                        ..Errors::default()
                    },
                    || {
                        format!(
                            "connection {index}: reply with no request: {}",
                            shown(frame)
                        )
                    },
                );
                return;
            };
            let seq = *expect_seq;
            *expect_seq += 1;
            let matched = match frame {
                Frame::Line(line) => ReplyBytes::parse(line)
                    .echoed()
                    .is_some_and(|t| payload.matches(t, seq)),
                Frame::TooLong => false,
            };
            if matched {
                batch.record(recorder, now - sent, measured, now);
            } else {
                recorder.error(
                    Errors {
                        mismatched: 1,
                        ..Errors::default()
                    },
                    || {
                        let mut expected = payload.clone();
                        format!(
                            "connection {index}: expected [<stamp>] {}, got {}",
                            payload::describe(expected.for_seq(seq)),
                            shown(frame)
                        )
                    },
                );
            }
        })?;
        inbuf.copy_within(used..*filled, 0);
        *filled -= used;
        if *filled == inbuf.len() {
            return Err(Broken::Overflow(inbuf.len()));
        }
        Ok(())
    }

    /// Counts the requests a broken connection still owed.
    fn report_broken(&self, broken: &Broken, recorder: &Recorder) {
        let owed = self.in_flight.len() as u64;
        let errors = match broken {
            Broken::Timeout(_) => Errors {
                timeouts: owed,
                ..Errors::default()
            },
            _ => Errors {
                closed: owed.max(1),
                ..Errors::default()
            },
        };
        recorder.error(errors, || format!("connection {}: {broken}", self.index));
    }

    /// Says goodbye (a WebSocket close frame) and half-closes.
    pub async fn close(&mut self) {
        self.out.clear();
        self.codec.goodbye(&mut self.out);
        // The peer may be gone already; there is nothing left to tell it then.
        let _ = self.send_out().await;
        let _ = self.stream.shutdown().await;
    }
}

fn shown(frame: Frame<'_>) -> String {
    match frame {
        Frame::Line(line) => payload::describe_reply(line),
        Frame::TooLong => "a reply longer than any expected".to_owned(),
    }
}
