//! One client's life on a stream socket (TCP or unix): read, frame, stamp, reply.
//!
//! Reading and writing alternate in one task: while a write is blocked the
//! connection reads nothing, so a client that stops reading is throttled by its
//! own TCP window instead of growing our buffers (backpressure), and after
//! `stall_timeout` it is dropped. All replies produced by one read go out in one
//! write. Buffers are owned here and reused, so steady-state traffic allocates
//! nothing per message.

use std::io;
use std::time::Duration;

use chrono::Utc;
use timecho_shared::{reply, Frame, LineDecoder, StampCache};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::admission::WaitReadable;
use crate::config::{Framing, Protocol};
use crate::heap_trim;
use crate::metrics::ListenerMetrics;

/// Read buffer of a connection that only sends short lines; it grows towards the
/// line limit only while a long line is pending, and shrinks back afterwards.
const READ_CHUNK: usize = 4 * 1024;

/// A connection that has read nothing for this long has gone quiet: the
/// buffers its last burst grew are given back, and its next bytes get a new
/// read buffer. Long enough that a busy connection keeps its buffers (and
/// allocates nothing per message), short enough that a burst leaves nothing
/// behind a second later.
pub const REST_AFTER: Duration = Duration::from_millis(500);

/// Replies are flushed once this many bytes are pending, so one read full of
/// tiny lines cannot make the reply buffer grow far beyond the read buffer.
const FLUSH_AT: usize = 64 * 1024;

enum Event {
    Shutdown,
    Read(usize),
    Timer,
}

/// Why a connection ended without an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed (or half-closed) and every reply was sent.
    ClientDone,
    /// The client sent nothing for `idle_timeout`.
    Idle,
    /// The server is shutting down; lines already received were answered.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("client stopped reading its replies for {0:?}")]
    Stalled(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves one client until it leaves, idles out, stalls, or `shutdown` fires.
///
/// Not an `async fn`, and neither is `run`: an async fn keeps its arguments
/// twice in its future (as given, and moved into its body), and this future
/// is most of what an idle connection costs.
pub fn serve<'a, S>(
    stream: S,
    protocol: &'a Protocol,
    metrics: &'a ListenerMetrics,
    shutdown: &'a CancellationToken,
) -> impl std::future::Future<Output = Result<End, ConnectionError>> + use<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + WaitReadable + 'a,
{
    Connection::new(stream, protocol, metrics).run(shutdown)
}

struct Connection<'p, S> {
    stream: S,
    protocol: &'p Protocol,
    metrics: &'p ListenerMetrics,
    decoder: LineDecoder,
    stamps: StampCache,
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` holding unconsumed input.
    filled: usize,
    out: Vec<u8>,
    /// The client has ended a line with a newline: its partial lines wait for
    /// theirs. Only a client that never has (the tutorial's) gets a partial
    /// line answered after `--partial-timeout`, so a slow typist's line is
    /// never split in two.
    line_client: bool,
}

impl<'p, S: AsyncRead + AsyncWrite + Unpin + WaitReadable> Connection<'p, S> {
    fn new(stream: S, protocol: &'p Protocol, metrics: &'p ListenerMetrics) -> Self {
        Self {
            stream,
            protocol,
            metrics,
            decoder: LineDecoder::new(protocol.limits.max_line),
            stamps: StampCache::new(protocol.stamp.clone()),
            // Allocated when the client first sends: an idle client costs no buffer.
            inbuf: Vec::new(),
            filled: 0,
            out: Vec::new(),
            line_client: false,
        }
    }

    // Deliberately not an async fn (see `serve`).
    #[allow(clippy::manual_async_fn)]
    fn run<'a>(
        mut self,
        shutdown: &'a CancellationToken,
    ) -> impl std::future::Future<Output = Result<End, ConnectionError>> + use<'a, 'p, S>
    where
        'p: 'a,
        S: 'a,
    {
        async move { self.serve(shutdown).await }
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<End, ConnectionError> {
        let protocol: &'p Protocol = self.protocol;
        let limits = &protocol.limits;
        // Polled at every wake-up. The server-wide token keeps its waiters
        // under one lock that every connection would take per message (tokio's
        // Notify); a child token has a lock of its own.
        let cancelled = shutdown.child_token().cancelled_owned();
        tokio::pin!(cancelled);
        let mut last_read = Instant::now();
        // One timer serves the partial-line, the rest and the idle deadline.
        // The rest and idle deadlines are not re-armed on every read: when the
        // timer fires early it is moved to where it belongs, which keeps timer
        // work off the hot path (a busy connection sees it once per
        // `REST_AFTER`).
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut armed = false;
        // Gone quiet and given back what it could since the last read.
        let mut rested = false;

        loop {
            let partial_due = self
                .partial_pending()
                .then_some(())
                .and(limits.partial_timeout);
            if let Some(wait) = partial_due {
                timer.as_mut().reset(last_read + wait);
                armed = true;
            } else if !armed {
                let rest = (!rested && self.holds_buffers()).then(|| last_read + REST_AFTER);
                let idle = limits.idle_timeout.map(|idle| last_read + idle);
                if let Some(deadline) = earliest(rest, idle) {
                    timer.as_mut().reset(deadline);
                    armed = true;
                }
            }

            let event = if self.inbuf.is_empty() {
                tokio::select! {
                    biased;
                    _ = &mut cancelled => Event::Shutdown,
                    ready = self.stream.wait_readable() => {
                        ready?;
                        self.inbuf.resize(READ_CHUNK, 0);
                        // The replies get a page-sized buffer at once rather than
                        // doubling up from a few bytes: blocks that size are mapped
                        // on their own (heap_trim::configure), so the small steps
                        // would be the only heap blocks a burst leaves holes with.
                        self.out.reserve(READ_CHUNK);
                        // The timer may be set for the idle deadline only.
                        armed = false;
                        continue;
                    }
                    () = &mut timer, if armed => Event::Timer,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = &mut cancelled => Event::Shutdown,
                    read = self.stream.read(&mut self.inbuf[self.filled..]) => Event::Read(read?),
                    () = &mut timer, if armed => Event::Timer,
                }
            };
            match event {
                Event::Shutdown => {
                    // Once per connection, so boxed: inline it would be the
                    // biggest state of every connection's task.
                    Box::pin(self.drain_received()).await?;
                    return Ok(End::Shutdown);
                }
                Event::Read(0) => {
                    self.finish_partial();
                    self.flush().await?;
                    // Shutting down our side fails if the peer is gone; nothing is owed then.
                    let _ = self.stream.shutdown().await;
                    return Ok(End::ClientDone);
                }
                Event::Read(n) => {
                    last_read = Instant::now();
                    self.answer(n).await?;
                    self.metrics.latency.observe(last_read.elapsed());
                    if partial_due.is_some() || rested {
                        armed = false;
                        rested = false;
                    }
                }
                Event::Timer => {
                    armed = false;
                    if partial_due.is_some() {
                        self.finish_partial();
                        self.flush().await?;
                        continue;
                    }
                    let quiet = last_read.elapsed();
                    if !rested && quiet >= REST_AFTER {
                        self.rest();
                        rested = true;
                    }
                    if let Some(idle) = limits.idle_timeout {
                        if quiet >= idle {
                            reply::write_idle_notice(&mut self.out, idle);
                            self.metrics.idle.inc();
                            self.flush().await?;
                            self.close_gracefully().await;
                            return Ok(End::Idle);
                        }
                    }
                }
            }
        }
    }

    fn holds_buffers(&self) -> bool {
        self.inbuf.capacity() > 0 || self.out.capacity() > 0
    }

    /// The client has gone quiet: gives back the buffers (a burst may have
    /// grown the reply buffer to 128 KiB), so that an idle connection holds
    /// none. Called with every reply sent; a partial line keeps its buffer.
    fn rest(&mut self) {
        let mut freed = 0;
        if self.out.is_empty() {
            freed += self.out.capacity();
            self.out = Vec::new();
        }
        if self.filled == 0 {
            freed += self.inbuf.capacity();
            self.inbuf = Vec::new();
        }
        heap_trim::released(freed);
    }

    fn partial_pending(&self) -> bool {
        self.protocol.framing == Framing::Line
            && !self.line_client
            && self.filled > 0
            && !self.decoder.is_discarding()
    }

    /// Answers what the last read of `n` bytes completed, then makes room for the next read.
    async fn answer(&mut self, n: usize) -> Result<(), ConnectionError> {
        let end = self.filled + n;
        let metrics = self.metrics;
        metrics.bytes_in.inc_by(n as u64);
        match self.protocol.framing {
            Framing::Raw => {
                let stamp = self.stamps.at(Utc::now());
                reply::write_raw(&mut self.out, stamp, &self.inbuf[..end]);
                self.filled = 0;
                metrics.lines_in.inc();
                metrics.lines_out.inc();
            }
            Framing::Line => {
                let stamp = self.stamps.at(Utc::now());
                let stall = self.protocol.limits.stall_timeout;
                let mut frames = self.decoder.frames(&self.inbuf[..end]);
                let (mut lines, mut too_long) = (0, 0);
                for frame in &mut frames {
                    match frame {
                        Frame::Line(line) => {
                            lines += 1;
                            reply::write_stamped(&mut self.out, stamp, line)
                        }
                        Frame::TooLong => {
                            too_long += 1;
                            write_too_long(&mut self.out, self.protocol.limits.max_line)
                        }
                    }
                    if self.out.len() >= FLUSH_AT {
                        write_out(&mut self.stream, &mut self.out, stall, metrics).await?;
                    }
                }
                self.line_client |= lines + too_long > 0;
                metrics.lines_in.inc_by(lines + too_long);
                metrics.lines_out.inc_by(lines + too_long);
                if too_long > 0 {
                    metrics.too_long.inc_by(too_long);
                }
                let used = frames.consumed();
                self.inbuf.copy_within(used..end, 0);
                self.filled = end - used;
                self.make_room();
            }
        }
        self.flush().await
    }

    /// Grows the read buffer while a long line is pending (up to the line limit),
    /// and gives the memory back once it is not.
    fn make_room(&mut self) {
        if self.inbuf.is_empty() {
            return;
        }
        if self.filled == self.inbuf.len() {
            let grown = (self.inbuf.len() * 2).min(self.decoder.buffer_limit());
            self.inbuf.resize(grown.max(self.filled + 1), 0);
        } else if self.inbuf.len() > READ_CHUNK && self.filled < READ_CHUNK / 2 {
            self.inbuf.truncate(READ_CHUNK);
            self.inbuf.shrink_to_fit();
        }
    }

    /// Answers the pending partial line as if it had ended.
    fn finish_partial(&mut self) {
        let stamp = self.stamps.at(Utc::now());
        if let Some(line) = self.decoder.take_partial(&self.inbuf[..self.filled]) {
            if self.protocol.framing == Framing::Line {
                reply::write_stamped(&mut self.out, stamp, line);
                self.metrics.lines_in.inc();
                self.metrics.lines_out.inc();
            }
        }
        self.filled = 0;
        self.make_room();
    }

    /// On shutdown: answers what the kernel has already received from the client
    /// without waiting for more, then closes our side.
    async fn drain_received(&mut self) -> Result<(), ConnectionError> {
        if self.inbuf.is_empty() {
            self.inbuf.resize(READ_CHUNK, 0);
        }
        loop {
            // A zero timeout polls the read once: ready data is taken, nothing is awaited.
            match timeout(
                Duration::ZERO,
                self.stream.read(&mut self.inbuf[self.filled..]),
            )
            .await
            {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => self.answer(n).await?,
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        self.finish_partial();
        self.flush().await?;
        self.close_gracefully().await;
        Ok(())
    }

    /// Ends our side (a TLS close_notify, then our FIN). The socket's lingering
    /// close (`admission::Guarded`) then discards what the client still sends,
    /// so a reset cannot destroy replies it has not read yet. A client sees
    /// every reply, then end of stream: any line it sent after that was not
    /// processed, and it may safely send it again elsewhere.
    async fn close_gracefully(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    async fn flush(&mut self) -> Result<(), ConnectionError> {
        let stall = self.protocol.limits.stall_timeout;
        write_out(&mut self.stream, &mut self.out, stall, self.metrics).await
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn write_too_long(out: &mut Vec<u8>, max_line: usize) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        out,
        "{}line longer than {max_line} bytes; discarded",
        reply::ERROR_PREFIX
    );
}

async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    stall: Duration,
    metrics: &ListenerMetrics,
) -> Result<(), ConnectionError> {
    if out.is_empty() {
        return Ok(());
    }
    // The socket (`admission::Guarded`) fails a write that makes no progress
    // for the stall timeout.
    match stream.write_all(out).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            metrics.stalled.inc();
            return Err(ConnectionError::Stalled(stall));
        }
        Err(e) => return Err(e.into()),
    }
    metrics.bytes_out.inc_by(out.len() as u64);
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count;
    use crate::config::Limits;
    use crate::metrics::Metrics;
    use timecho_shared::StampFormat;
    use tokio::io::duplex;

    /// What one quiet connection may keep on the heap besides its task's
    /// future: the few small things it owns (the stamp text, its shutdown
    /// token), no buffer.
    const IDLE_CONNECTION_BYTES: i64 = 512;

    impl WaitReadable for tokio::io::DuplexStream {}

    fn protocol() -> Protocol {
        Protocol {
            framing: Framing::Line,
            stamp: StampFormat::default(),
            limits: Limits {
                max_line: 64 * 1024,
                max_connections: 10,
                max_per_client: Some(10),
                partial_timeout: Some(Duration::from_millis(100)),
                idle_timeout: Some(Duration::from_secs(300)),
                stall_timeout: Duration::from_secs(30),
                drain_timeout: Duration::from_secs(5),
                handshake_timeout: Duration::from_secs(10),
                proxy_timeout: Duration::from_secs(5),
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(10),
                linger_timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(5),
            },
        }
    }

    /// Writes `batch` (lines) and reads until as many replies have arrived.
    async fn round<S: AsyncRead + AsyncWrite + Unpin>(
        client: &mut S,
        batch: &[u8],
        lines: usize,
        buf: &mut [u8],
    ) {
        client.write_all(batch).await.unwrap();
        let mut seen = 0;
        while seen < lines {
            let n = client.read(buf).await.unwrap();
            assert!(n > 0, "server closed early");
            seen += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
    }

    /// The deterministic form of "a burst leaves nothing behind": heap bytes
    /// held by one connection besides its task's future, while it is busy
    /// and once it has gone quiet after 5,000 pipelined 1-byte lines, the
    /// burst that grows its reply buffer most.
    #[test]
    fn an_idle_connection_keeps_almost_nothing_after_a_burst() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let protocol = protocol();
        let metrics = Metrics::new().listener("test");
        let shutdown = CancellationToken::new();
        let burst = b"x\n".repeat(5000);
        let mut buf = vec![0u8; 64 * 1024];
        let (busy, idle) = rt.block_on(async {
            // A real socket, whose wait for the first byte holds no buffer
            // (an in-memory pipe cannot wait so), and whose buffers are the
            // kernel's. Loopback delivers within the write, so the paused
            // clock moves only once both ends wait.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let before = alloc_count::live_bytes();
            let mut serving = Box::pin(serve(server, &protocol, &metrics, &shutdown));
            // The task's own size depends on the build profile; what the
            // connection allocates besides it does not.
            let task = std::mem::size_of_val(&*serving) as i64;
            let driving = async {
                round(&mut client, &burst, 5000, &mut buf).await;
                let busy = alloc_count::live_bytes() - before - task;
                // Paused time: the runtime moves the clock on once all wait.
                tokio::time::sleep(REST_AFTER * 2).await;
                (busy, alloc_count::live_bytes() - before - task)
            };
            let held = tokio::select! {
                held = driving => held,
                end = &mut serving => panic!("the connection ended: {end:?}"),
            };
            drop(client);
            assert!(matches!(serving.await, Ok(End::ClientDone)));
            held
        });
        eprintln!(
            "besides its task, a connection holds {busy} bytes after a burst, {idle} once quiet"
        );
        assert!(busy > 32 * 1024, "the burst grew its buffers: {busy} bytes");
        assert!(
            idle <= IDLE_CONNECTION_BYTES,
            "{idle} bytes held once quiet"
        );
    }

    /// One connection over an in-memory pipe on a paused clock: the client's
    /// side, and the connection's life until it ends.
    fn paused<F, Fut>(protocol: Protocol, shutdown: CancellationToken, client: F) -> End
    where
        F: FnOnce(tokio::io::DuplexStream, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let metrics = Metrics::new().listener("test");
        rt.block_on(async {
            let (near, far) = duplex(64 * 1024);
            let serving = serve(far, &protocol, &metrics, &shutdown);
            let (ended, ()) = tokio::join!(serving, client(near, shutdown.clone()));
            ended.expect("the connection ends cleanly")
        })
    }

    /// Everything the server sends until it closes.
    async fn rest_of(client: &mut tokio::io::DuplexStream) -> String {
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        String::from_utf8(all).unwrap()
    }

    fn echoed(reply: &str) -> &str {
        reply.split_once("] ").map_or(reply, |(_, text)| text)
    }

    #[test]
    fn a_partial_line_is_answered_once_the_partial_timeout_has_passed() {
        let end = paused(
            protocol(),
            CancellationToken::new(),
            |mut client, _| async move {
                client.write_all(b"tutorial").await.unwrap();
                let mut buf = [0u8; 256];
                // Nothing before the 100 ms of quiet...
                let early = timeout(Duration::from_millis(99), client.read(&mut buf)).await;
                assert!(early.is_err(), "answered before the partial timeout");
                // ... then the line as it came, with a newline added.
                let n = client.read(&mut buf).await.unwrap();
                let reply = std::str::from_utf8(&buf[..n]).unwrap();
                assert!(
                    reply.starts_with('[') && echoed(reply) == "tutorial\n",
                    "{reply:?}"
                );
                client.shutdown().await.unwrap();
                assert_eq!(rest_of(&mut client).await, "");
            },
        );
        assert!(matches!(end, End::ClientDone), "{end:?}");
    }

    #[test]
    fn a_client_quiet_for_the_idle_timeout_is_told_and_closed() {
        let mut protocol = protocol();
        protocol.limits.idle_timeout = Some(Duration::from_secs(300));
        let end = paused(
            protocol,
            CancellationToken::new(),
            |mut client, _| async move {
                client.write_all(b"hello\n").await.unwrap();
                let mut buf = [0u8; 256];
                let n = client.read(&mut buf).await.unwrap();
                assert_eq!(echoed(std::str::from_utf8(&buf[..n]).unwrap()), "hello\n");
                let started = Instant::now();
                let said = rest_of(&mut client).await;
                assert_eq!(said, "error: idle for 300s; closing\n");
                assert_eq!(
                    started.elapsed(),
                    Duration::from_secs(300),
                    "at the deadline"
                );
            },
        );
        assert!(matches!(end, End::Idle), "{end:?}");
    }

    #[test]
    fn a_sub_second_idle_timeout_is_told_in_milliseconds() {
        let mut protocol = protocol();
        protocol.limits.idle_timeout = Some(Duration::from_millis(300));
        let end = paused(
            protocol,
            CancellationToken::new(),
            |mut client, _| async move {
                assert_eq!(
                    rest_of(&mut client).await,
                    "error: idle for 300ms; closing\n"
                );
            },
        );
        assert!(matches!(end, End::Idle), "{end:?}");
    }

    #[test]
    fn a_drain_answers_every_line_already_received_then_closes() {
        let end = paused(
            protocol(),
            CancellationToken::new(),
            |mut client, shutdown| async move {
                client.write_all(b"one\ntwo\nthree").await.unwrap();
                // The shutdown comes before the connection has read a byte.
                shutdown.cancel();
                let said = rest_of(&mut client).await;
                let lines: Vec<&str> = said.lines().map(echoed).collect();
                assert_eq!(lines, ["one", "two", "three"], "{said:?}");
            },
        );
        assert!(matches!(end, End::Shutdown), "{end:?}");
    }

    #[test]
    fn steady_traffic_allocates_nothing_per_message() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let protocol = protocol();
        let metrics = Metrics::new().listener("test");
        let shutdown = CancellationToken::new();
        let (mut client, server) = duplex(256 * 1024);
        let batch: Vec<u8> = (0..32)
            .flat_map(|i| format!("message {i:04}\n").into_bytes())
            .collect();
        let mut buf = vec![0u8; 64 * 1024];
        let steady = rt.block_on(async {
            let serving = serve(server, &protocol, &metrics, &shutdown);
            let driving = async {
                // Warm-up: buffers reach their working size, the stamp is cached.
                for _ in 0..50 {
                    round(&mut client, &batch, 32, &mut buf).await;
                }
                let before = alloc_count::allocations();
                for _ in 0..1000 {
                    round(&mut client, &batch, 32, &mut buf).await;
                }
                let after = alloc_count::allocations();
                drop(client);
                after - before
            };
            let (served, steady) = tokio::join!(serving, driving);
            assert!(matches!(served, Ok(End::ClientDone)));
            steady
        });
        // 32,000 lines went through. A few allocations may come from the clock
        // crossing a second (the stamp is re-formatted then), none per message.
        eprintln!("allocations for 32,000 messages in steady state: {steady}");
        assert!(steady <= 16, "{steady} allocations for 32,000 messages");
    }
}
