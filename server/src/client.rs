//! `timecho client`: the tutorial's client done properly.
//!
//! On a terminal it prompts `> `, sends each line and prints the reply, with line
//! editing and history. With piped input it streams: every line is sent as fast
//! as the server takes it, every reply is printed, and it exits once the server
//! has answered everything (it half-closes and reads to the end). Blocking I/O
//! keeps it simple; the one concurrent part (streaming) uses a second thread.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

use crate::cli::{ClientArgs, DEFAULT_PORT};

/// A reply with no newline (from a server using raw framing) is taken as complete
/// once no more bytes arrive for this long.
const QUIET: Duration = Duration::from_millis(150);

pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let interactive = io::stdin().is_terminal();
    if args.udp {
        let addr = resolve(&args.addr)?;
        return udp_session(addr, args.timeout, interactive);
    }
    let conn = match &args.unix {
        Some(path) => Conn::unix(path)?,
        None => Conn::tcp(&args.addr)?,
    };
    if interactive {
        interactive_session(conn, args.timeout)
    } else {
        stream_session(conn, args.timeout)
    }
}

/// `HOST:PORT`, `HOST`, an IPv6 address with or without brackets and port.
fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let found = if has_port {
        addr.to_socket_addrs()
    } else {
        (addr, DEFAULT_PORT).to_socket_addrs()
    };
    found
        .with_context(|| format!("cannot resolve {addr:?}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
}

/// A connected stream socket of either family.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn tcp(addr: &str) -> anyhow::Result<Conn> {
        let sa = resolve(addr)?;
        let s = TcpStream::connect_timeout(&sa, Duration::from_secs(10)).map_err(|e| {
            anyhow!("cannot connect to {sa}: {e} (is `timecho serve` running there?)")
        })?;
        s.set_nodelay(true)?;
        Ok(Conn::Tcp(s))
    }

    fn unix(path: &Path) -> anyhow::Result<Conn> {
        let s = UnixStream::connect(path).map_err(|e| {
            anyhow!(
                "cannot connect to {}: {e} (is `timecho serve --unix` running there?)",
                path.display()
            )
        })?;
        Ok(Conn::Unix(s))
    }

    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
    let sent_all = Arc::new(AtomicBool::new(false));
    let sent_flag = sent_all.clone();
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut stdin = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            writer.write_all(&line)?;
        }
        writer.shutdown_write()?;
        sent_flag.store(true, Ordering::Release);
        Ok(())
    });

    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_reply = Instant::now();
    conn.set_read_timeout(Duration::from_millis(200))?;
    let outcome = loop {
        match conn.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
                last_reply = Instant::now();
            }
            Err(e) if is_timeout(&e) => {
                if sender.is_finished() && last_reply.elapsed() >= timeout {
                    break Err(anyhow!(
                        "no reply for {timeout:?} after the last line; giving up"
                    ));
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
    if !sent_all.load(Ordering::Acquire) {
        return Err(anyhow!(
            "the server closed the connection before all lines were sent"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_the_tutorial_port() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            "127.0.0.1:8899".parse().unwrap()
        );
        assert_eq!(resolve("::1").unwrap(), "[::1]:8899".parse().unwrap());
        assert_eq!(resolve("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(resolve("localhost:7").unwrap().port(), 7);
        assert_eq!(resolve("localhost").unwrap().port(), 8899);
    }
}
