//! `timecho client`: the tutorial's client done properly.
//!
//! On a terminal it prompts `> `, sends each line and prints the reply, with line
//! editing and history. With piped input it streams: every line is sent as fast
//! as the server takes it, every reply is printed, and it exits once the server
//! has answered everything (it half-closes and reads to the end). Blocking I/O
//! keeps it simple; the one concurrent part (streaming) uses a second thread.

mod conn;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

use crate::cli::ClientArgs;
use conn::{target, Conn};

/// A reply with no newline (from a server using raw framing) is taken as complete
/// once no more bytes arrive for this long.
const QUIET: Duration = Duration::from_millis(150);

pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let interactive = io::stdin().is_terminal();
    if args.udp {
        // A datagram tells nothing back: the name's preferred address it is.
        let addr = target(&args.addr)?.resolve()?[0];
        return udp_session(addr, args.timeout, interactive);
    }
    let conn = match &args.unix {
        Some(path) => Conn::unix(path)?,
        None if args.tls => Conn::tls(&args.addr, args.ca.as_deref())?,
        None => Conn::tcp(&args.addr)?,
    };
    if interactive {
        interactive_session(conn, args.timeout)
    } else {
        stream_session(conn, args.timeout)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads one reply: up to a newline, or what arrived before the server went quiet.
fn read_reply(
    conn: &mut Conn,
    pending: &mut Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=i).collect();
            line.pop();
            return Ok(line);
        }
        let now = Instant::now();
        let wait = if pending.is_empty() {
            deadline.saturating_duration_since(now)
        } else {
            QUIET
        };
        if wait.is_zero() {
            return Err(anyhow!("no reply within {timeout:?}"));
        }
        conn.set_read_timeout(wait)?;
        match conn.read(&mut buf) {
            Ok(0) if pending.is_empty() => return Err(anyhow!("the server closed the connection")),
            Ok(0) => return Ok(std::mem::take(pending)),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) && !pending.is_empty() => return Ok(std::mem::take(pending)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(anyhow!("connection lost: {e}")),
        }
    }
}

fn print_reply(reply: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(reply)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".timecho_history"))
}

/// Prompts with line editing and history; an empty line or EOF ends it.
fn prompt_lines(mut each: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let result = loop {
        match editor.readline("> ") {
            Ok(line) if line.is_empty() => break Ok(()),
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if let Err(e) = each(&line) {
                    break Err(e);
                }
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    result
}

fn interactive_session(mut conn: Conn, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut pending = Vec::new();
    let mut message = Vec::new();
    prompt_lines(|line| {
        message.clear();
        message.extend_from_slice(line.as_bytes());
        message.push(b'\n');
        conn.write_all(&message).context("cannot send")?;
        let reply = read_reply(&mut conn, &mut pending, timeout)?;
        print_reply(&reply)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Sends all of stdin while printing replies as they come; returns once the
/// server has closed after answering, or has said nothing for `timeout` after
/// the last line was sent.
fn stream_session(mut conn: Conn, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut writer = conn.try_clone()?;
    // Lines sent, once all of stdin is (0 until then).
    let sent_all = Arc::new(AtomicUsize::new(0));
    let sent_count = sent_all.clone();
    let sender = thread::spawn(move || -> io::Result<()> {
        // Whatever stdin has is sent in one write: lines need no per-line
        // round trip, and the server frames them anyway.
        let mut stdin = io::stdin().lock();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut last = b'\n';
        let mut lines = 0;
        loop {
            let n = stdin.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            writer.write_all(&chunk[..n])?;
            lines += chunk[..n].iter().filter(|&&b| b == b'\n').count();
            last = chunk[n - 1];
        }
        if last != b'\n' {
            writer.write_all(b"\n")?;
            lines += 1;
        }
        writer.shutdown_write()?;
        sent_count.store(lines.max(1), Ordering::Release);
        Ok(())
    });

    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_reply = Instant::now();
    // Replies received: complete lines, and whether one without its newline
    // came last (a raw-framing server's answer is just that).
    let (mut replies, mut unterminated) = (0, false);
    conn.set_read_timeout(Duration::from_millis(200))?;
    let outcome = loop {
        match conn.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
                last_reply = Instant::now();
                replies += buf[..n].iter().filter(|&&b| b == b'\n').count();
                unterminated = buf[n - 1] != b'\n';
            }
            // The server went quiet without closing: done, if every line got
            // its reply (checked below).
            Err(e) if is_timeout(&e) => {
                if sender.is_finished() && last_reply.elapsed() >= timeout {
                    break Ok(());
                }
            }
            Err(e) => break Err(anyhow!("connection lost: {e}")),
        }
    };
    match sender.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(anyhow!("cannot send: {e}")),
        Err(_) => return Err(anyhow!("the sending thread failed")),
    }
    let sent = sent_all.load(Ordering::Acquire);
    if sent == 0 {
        return Err(anyhow!(
            "the server closed the connection before all lines were sent"
        ));
    }
    let answered = replies + usize::from(unterminated);
    if outcome.is_ok() && answered < sent {
        return Err(anyhow!(
            "{} of {sent} lines got no reply within {timeout:?}",
            sent - answered
        ));
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// One datagram per line, one reply datagram expected for each.
fn udp_session(addr: SocketAddr, timeout: Duration, interactive: bool) -> anyhow::Result<ExitCode> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(local)?;
    socket
        .connect(addr)
        .with_context(|| format!("cannot reach {addr}"))?;
    socket.set_read_timeout(Some(timeout))?;
    let mut lost = 0usize;
    let mut buf = vec![0u8; 65_536];
    let mut exchange = |line: &[u8]| -> anyhow::Result<()> {
        socket
            .send(line)
            .with_context(|| format!("cannot send to {addr}"))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                let reply = &buf[..n];
                print_reply(reply.strip_suffix(b"\n").unwrap_or(reply))?;
            }
            Err(e) if is_timeout(&e) => {
                lost += 1;
                eprintln!("timecho: no reply from {addr} within {timeout:?} (UDP gives no error when nobody listens)");
            }
            Err(e) => return Err(anyhow!("{addr}: {e}")),
        }
        Ok(())
    };
    if interactive {
        prompt_lines(|line| exchange(line.as_bytes()))?;
    } else {
        for line in io::stdin().lock().split(b'\n') {
            let line = line?;
            exchange(line.strip_suffix(b"\r").unwrap_or(&line))?;
        }
    }
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
