//! `timecho client`: the tutorial's client done properly.
//!
//! On a terminal it says where it connected and prompts `> ` with line editing
//! and history; each typed line is sent at once, and whatever the server sends
//! (replies, and notices such as `error: idle for 5m; closing`) is shown as it
//! arrives, above the prompt. When the server closes, the prompt ends at once
//! with a message saying so and how many lines went unanswered. An empty line,
//! Ctrl-D or Ctrl-C ends the session. With piped input it streams: every line
//! is sent as fast as the server takes it, every reply is printed as it comes,
//! and it exits once the server has answered everything (it half-closes and
//! reads to the end). The connection is async (tokio): sending and receiving
//! run side by side, so neither waits for the other; standard input and the
//! line editor block, so they run on threads of their own (`input`).

pub(crate) mod conn;
mod input;
pub(crate) mod replies;
mod trust;
pub(crate) mod udp;
mod ws;

use std::collections::VecDeque;
use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::cli::{ClientArgs, ServerTarget};
use conn::{LineStream, Link};
use replies::{Replies, QUIET};
use timecho_shared::host_port::HostPort;

pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if io::stdin().is_terminal() {
        runtime.block_on(prompted(args))
    } else {
        runtime.block_on(piped(args))
    }
}

/// Whether `e` is, or was caused by, writing into a closed pipe: the reader
/// of a command's output went away (`timecho client ... | head -1`), which
/// every command that prints ends quietly on, as other Unix tools do.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The line stream to `server`: a unix socket, a WebSocket URL (`ws://`,
/// `wss://`), TLS or TCP (UDP is not a stream). One shape for all, so that
/// the sessions do not care which.
pub(crate) async fn connect(server: &ServerTarget) -> anyhow::Result<Link> {
    if let Some(url) = ws::WsUrl::parse(&server.addr)? {
        return ws::connect(&url, server.ca.as_deref(), server.pin).await;
    }
    match &server.unix {
        Some(path) => conn::unix(path).await,
        None if server.tls => {
            conn::tls(&host_port(server)?, server.ca.as_deref(), server.pin).await
        }
        None => conn::tcp(&host_port(server)?).await,
    }
}

/// `server`'s address, with the default port when it names none.
pub(crate) fn host_port(server: &ServerTarget) -> anyhow::Result<HostPort> {
    Ok(HostPort::parse_or_default_port(&server.addr)?)
}

/// A person at a terminal: connects, says where, then prompts. Over a stream,
/// what the server sends is shown as it arrives, above the prompt; when the
/// server closes, the prompt ends at once with a message saying so.
async fn prompted(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    if args.server.udp {
        let mut exchange = udp::Exchange::open(&host_port(&args.server)?, args.timeout).await?;
        let (mut typed, _screen, editor) = input::prompt()?;
        while let Some(input::Typed { line, answered }) = typed.recv().await {
            exchange.line(&line).await?;
            let _ = answered.send(());
        }
        editor.join()?;
        return Ok(exchange.finish());
    }
    let link = connect(&args.server).await?;
    eprintln!(
        "connected to {}; an empty line or Ctrl-D ends the session",
        link.peer
    );
    let (mut typed, mut screen, editor) = input::prompt()?;
    match converse(link.conn, &mut typed, &mut screen, args.timeout).await {
        Ok(()) => {
            editor.join()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Lines typed after the end are not waited for.
            drop(typed);
            // The prompt ends first, so that the reason is printed below it
            // on a terminal as it was.
            editor.stop(screen);
            Err(e)
        }
    }
}

/// Sends each typed line as it comes and shows every reply as it arrives.
/// Returns once the user has ended the session and every line has its reply;
/// fails when the server closes or the connection is lost (saying how many
/// lines went unanswered), or a line waits `timeout` for its reply.
async fn converse(
    conn: LineStream,
    typed: &mut mpsc::UnboundedReceiver<input::Typed>,
    screen: &mut input::Screen,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (read, mut write) = tokio::io::split(conn);
    let mut replies = Replies::new(read);
    // When each line still waiting for its reply was sent, oldest first.
    let mut waiting: VecDeque<Instant> = VecDeque::new();
    let mut user_done = false;
    let mut message = Vec::new();
    let mut shown = Vec::new();
    loop {
        if user_done && waiting.is_empty() {
            return Ok(());
        }
        let partial = replies.has_partial();
        let deadline = waiting.front().map(|sent| *sent + timeout);
        tokio::select! {
            next = typed.recv(), if !user_done => match next {
                Some(input::Typed { line, answered }) => {
                    message.clear();
                    message.extend_from_slice(&line);
                    message.push(b'\n');
                    send(&mut write, &message)
                        .await
                        .with_context(|| unanswered("the line was not sent", waiting.len() + 1))?;
                    waiting.push_back(Instant::now());
                    let _ = answered.send(());
                }
                None => user_done = true,
            },
            more = replies.fill() => {
                let more = more.map_err(|e| {
                    anyhow!(unanswered(&format!("{:#}", anyhow::Error::new(e)), waiting.len()))
                })?;
                shown.clear();
                let lines = replies.print_lines(&mut shown)?;
                if replies.is_full() || (!more && replies.has_partial()) {
                    replies.print_partial(&mut shown)?;
                }
                if !shown.is_empty() {
                    screen.show(&shown).context("cannot show the reply")?;
                }
                for _ in 0..lines {
                    waiting.pop_front();
                }
                if !more {
                    return Err(anyhow!(unanswered(
                        "the server closed the connection",
                        waiting.len()
                    )));
                }
            }
            // A reply without a newline is whole once the server is quiet.
            () = tokio::time::sleep(QUIET), if partial => {
                shown.clear();
                replies.print_partial(&mut shown)?;
                screen.show(&shown).context("cannot show the reply")?;
                waiting.pop_front();
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return Err(anyhow!(unanswered(
                    &format!("no reply within {timeout:?}"),
                    waiting.len()
                )));
            }
        }
    }
}

/// `what`, and how many typed lines got no reply, so that none is lost unsaid.
fn unanswered(what: &str, lines: usize) -> String {
    match lines {
        0 => what.to_owned(),
        1 => format!("{what}; 1 line got no reply"),
        n => format!("{what}; {n} lines got no reply"),
    }
}

async fn send(write: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    write.write_all(bytes).await?;
    // TLS holds records back until flushed.
    write.flush().await
}

async fn piped(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    if args.server.udp {
        let mut exchange = udp::Exchange::open(&host_port(&args.server)?, args.timeout).await?;
        let mut lines = input::stdin_lines();
        while let Some(line) = lines.recv().await {
            exchange
                .line(&line.context("cannot read standard input")?)
                .await?;
        }
        return Ok(exchange.finish());
    }
    let conn = connect(&args.server).await?.conn;
    stream(conn, args.timeout).await?;
    Ok(ExitCode::SUCCESS)
}

/// Sends all of stdin while printing replies as they come; returns once the
/// server has closed after answering, or has said nothing for `timeout` after
/// the last line was sent. Fails if a line got no reply.
async fn stream(conn: LineStream, timeout: Duration) -> anyhow::Result<()> {
    let (read, write) = tokio::io::split(conn);
    let mut sender = tokio::spawn(send_all(input::stdin_chunks(), write));
    let mut replies = Replies::new(read);
    let mut received = Received::default();
    // Lines sent, once all of stdin is.
    let mut sent: Option<usize> = None;
    let mut last_reply = Instant::now();
    // Silence is counted from the last reply or the last line sent, the later.
    let mut silent_since = last_reply;
    loop {
        let quiet_until = last_reply + QUIET;
        let partial = replies.has_partial();
        tokio::select! {
            more = replies.fill() => {
                if !more? {
                    received.print_partial(&mut replies)?;
                    break;
                }
                last_reply = Instant::now();
                silent_since = last_reply;
                received.print_lines(&mut replies)?;
            }
            done = &mut sender, if sent.is_none() => {
                sent = Some(done.context("the sending task failed")??);
                silent_since = Instant::now();
            }
            // A reply with no newline: a raw-framing server's, or the last one.
            () = sleep_until(quiet_until), if partial => received.print_partial(&mut replies)?,
            // The server went quiet without closing: done, if every line got
            // its reply (checked below).
            () = sleep_until(silent_since + timeout), if sent.is_some() => break,
        }
    }
    // The server closed: the sender is done too, unless the server did not wait
    // for the rest of the input.
    if sent.is_none() && sender.is_finished() {
        sent = Some((&mut sender).await.context("the sending task failed")??);
    }
    let Some(sent) = sent else {
        sender.abort();
        return Err(anyhow!(
            "the server closed the connection before all lines were sent"
        ));
    };
    let answered = received.answered();
    if answered < sent {
        return Err(anyhow!(
            "{} of {sent} lines got no reply within {timeout:?}",
            sent - answered
        ));
    }
    Ok(())
}

/// Sends standard input as it comes, ends it with a newline if it lacks one,
/// and half-closes; returns how many lines were sent.
async fn send_all(
    mut chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    mut write: tokio::io::WriteHalf<LineStream>,
) -> anyhow::Result<usize> {
    let mut lines = 0;
    let mut last = b'\n';
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.context("cannot read standard input")?;
        send(&mut write, &chunk).await.context("cannot send")?;
        lines += memchr::memchr_iter(b'\n', &chunk).count();
        last = chunk.last().copied().unwrap_or(last);
    }
    if last != b'\n' {
        send(&mut write, b"\n").await.context("cannot send")?;
        lines += 1;
    }
    // For TLS this sends close_notify first.
    write.shutdown().await.context("cannot send")?;
    Ok(lines)
}

/// Replies printed so far in a stream.
#[derive(Debug, Default)]
struct Received {
    lines: usize,
    /// What came last had no newline (a raw-framing server's answer is just that).
    unterminated: bool,
}

impl Received {
    fn print_lines(&mut self, replies: &mut Replies<ReadHalf<LineStream>>) -> anyhow::Result<()> {
        let lines = replies.print_lines(&mut io::stdout().lock())?;
        self.lines += lines;
        if lines > 0 {
            self.unterminated = false;
        }
        if replies.is_full() {
            self.print_partial(replies)?;
        }
        Ok(())
    }

    fn print_partial(&mut self, replies: &mut Replies<ReadHalf<LineStream>>) -> anyhow::Result<()> {
        if replies.has_partial() {
            replies.print_partial(&mut io::stdout().lock())?;
            self.unterminated = true;
        }
        Ok(())
    }

    fn answered(&self) -> usize {
        self.lines + usize::from(self.unterminated)
    }
}
