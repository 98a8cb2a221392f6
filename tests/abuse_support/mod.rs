//! What every abuse case checks afterwards: that clients who did nothing wrong
//! are still served promptly, and how much memory the server took meanwhile;
//! plus the attacking clients (`hostile`), the shutdown case's client
//! (`steady`) and the socket helpers they share.

mod hostile;
mod steady;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::support::{parse_reply, scrape, ws_connect, ws_exchange, Server, Ws};
pub use hostile::{flood_frames, slowloris, Noise};
pub use steady::{stream_until_gone, Streamed};

/// How long a well-behaved client may wait for its reply while a case runs.
pub const PROMPT: Duration = Duration::from_secs(1);

/// A client opened before a case and one opened after it: both must get
/// correct replies within `PROMPT`.
pub struct Health {
    addr: SocketAddr,
    long_lived: LineClient,
    round: usize,
}

impl Health {
    /// Opens the long-lived client and checks it is served.
    pub fn open(server: &Server) -> Health {
        let addr = server.tcp_addr();
        let mut health = Health {
            addr,
            long_lived: LineClient::connect(addr),
            round: 0,
        };
        health.check("before the case");
        health
    }

    /// Fails the test unless both clients are answered correctly and promptly.
    #[track_caller]
    pub fn check(&mut self, when: &str) {
        self.round += 1;
        let text = format!("long-lived client, round {}", self.round);
        self.long_lived.assert_prompt_echo(&text, when);
        let started = Instant::now();
        let mut fresh = LineClient::connect(self.addr);
        fresh.assert_prompt_echo(&format!("fresh client, round {}", self.round), when);
        let took = started.elapsed();
        assert!(
            took < PROMPT,
            "{when}: a fresh client took {took:?} to connect and be answered"
        );
    }
}

/// A blocking line client with a read timeout.
pub struct LineClient {
    reader: BufReader<TcpStream>,
}

impl LineClient {
    pub fn connect(addr: SocketAddr) -> LineClient {
        LineClient::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<LineClient> {
        let stream = TcpStream::connect_timeout(&addr, PROMPT * 5)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(PROMPT * 5))?;
        Ok(LineClient {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// The next line without its newline, or why there is none.
    pub fn line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\n") => {
                line.pop();
                Ok(line)
            }
            Ok(_) => Err(format!("end of stream after \"{}\"", line.escape_ascii())),
            Err(e) => Err(format!("{e} after \"{}\"", line.escape_ascii())),
        }
    }

    /// Sends `text` as a line; its reply must echo it within `PROMPT`.
    #[track_caller]
    pub fn assert_prompt_echo(&mut self, text: &str, when: &str) {
        let started = Instant::now();
        self.send(format!("{text}\n").as_bytes());
        let line = self
            .line()
            .unwrap_or_else(|e| panic!("{when}: no reply to {text:?}: {e}"));
        let took = started.elapsed();
        assert_eq!(parse_reply(&line).1, text.as_bytes(), "{when}");
        assert!(took < PROMPT, "{when}: {text:?} answered after {took:?}");
    }
}

/// The same for WebSocket clients of the gateway.
pub struct WsHealth {
    http: SocketAddr,
    long_lived: Ws,
    round: usize,
}

impl WsHealth {
    pub async fn open(http: SocketAddr) -> WsHealth {
        let mut health = WsHealth {
            http,
            long_lived: ws_connect(http).await,
            round: 0,
        };
        health.check("before the case").await;
        health
    }

    pub async fn check(&mut self, when: &str) {
        self.round += 1;
        let text = format!("long-lived page, round {}", self.round);
        prompt_ws_echo(&mut self.long_lived, &text, when).await;
        let started = Instant::now();
        let mut fresh = ws_connect(self.http).await;
        prompt_ws_echo(
            &mut fresh,
            &format!("fresh page, round {}", self.round),
            when,
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < PROMPT,
            "{when}: a fresh page took {took:?} to connect and be answered"
        );
    }
}

async fn prompt_ws_echo(ws: &mut Ws, text: &str, when: &str) {
    let started = Instant::now();
    assert_eq!(ws_exchange(ws, text).await, text, "{when}");
    let took = started.elapsed();
    assert!(took < PROMPT, "{when}: {text:?} answered after {took:?}");
}

/// The server's memory from the start of a case: resident now, and the peak.
pub struct Memory {
    pid: u32,
    baseline_kib: u64,
}

impl Memory {
    /// Takes the current resident size as the baseline and restarts the
    /// kernel's peak (high-water mark) from it. A first `/metrics` request
    /// beforehand keeps the HTTP side's one-time set-up out of the figures.
    pub fn start(server: &Server) -> Memory {
        scrape(server.metrics_addr());
        let pid = server.pid();
        if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
            // The peak then counts from start-up, which stays close to the baseline.
            eprintln!("note: cannot reset the peak resident size: {e}");
        }
        Memory {
            pid,
            baseline_kib: status_kib(pid, "VmRSS"),
        }
    }

    pub fn baseline_kib(&self) -> u64 {
        self.baseline_kib
    }

    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS")
    }

    /// How far the resident size rose above the baseline at its highest.
    pub fn peak_growth_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM").saturating_sub(self.baseline_kib)
    }

    /// Prints the figures (for the notes) and fails if the peak rose more than `bound_kib`.
    #[track_caller]
    pub fn assert_peak_growth_below(&self, bound_kib: u64, case: &str) {
        let growth = self.peak_growth_kib();
        eprintln!(
            "memory: {case}: baseline {} KiB, peak +{growth} KiB, now {} KiB (bound +{bound_kib} KiB)",
            self.baseline_kib,
            self.rss_kib()
        );
        assert!(
            growth < bound_kib,
            "{case}: resident memory rose {growth} KiB above the {} KiB baseline (bound {bound_kib} KiB)",
            self.baseline_kib
        );
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Makes `close` send a reset instead of a FIN (SO_LINGER with a zero timeout).
pub fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value is a valid `linger` of the size passed, and the
    // descriptor stays open for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// Bytes written to `stream` that its peer's kernel has not acknowledged yet
/// (SIOCOUTQ): 0 once everything sent has reached the peer's socket.
pub fn unacknowledged_bytes(stream: &TcpStream) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
    usize::try_from(queued).unwrap_or(0)
}

/// Whether an I/O error means "not now" rather than "never".
pub fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads until the server closes; the bytes, and whether it closed cleanly
/// (end of stream rather than a reset).
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut bytes = Vec::new();
    let clean = match stream.read_to_end(&mut bytes) {
        Ok(_) => true,
        Err(e) if would_block(&e) => panic!(
            "the server did not close within {limit:?}; got \"{}\"",
            bytes.escape_ascii()
        ),
        Err(_) => false,
    };
    (bytes, clean)
}
