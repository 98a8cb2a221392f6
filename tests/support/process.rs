//! The real `timecho serve` process: started on ephemeral addresses, read until it
//! says where it listens, stopped with SIGTERM. Its stderr is kept so a failing
//! test can show what the server said.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The `timecho` binary under test. Cargo hands its path to this package's
/// tests; the load generator's tests (package `timecho-bench`, which shares
/// this tree) are another package's, so for them it is `TIMECHO_BIN`, or the
/// `timecho` in the target directory they run from, where `cargo test
/// --workspace` (and `cargo nextest run --workspace`) builds it. Fails the
/// test, saying how to build it, if there is none.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match (
            option_env!("CARGO_BIN_EXE_timecho"),
            std::env::var_os("TIMECHO_BIN"),
        ) {
            (Some(ours), _) => PathBuf::from(ours),
            (None, Some(given)) => PathBuf::from(given),
            // target/<profile>/deps/<test binary> -> target/<profile>/timecho
            (None, None) => std::env::current_exe()
                .expect("the test binary's path")
                .parent()
                .and_then(Path::parent)
                .expect("the test binary is in target/<profile>/deps")
                .join("timecho"),
        };
        assert!(
            path.is_file(),
            "no server binary at {} (build it with `cargo build -p timecho`, or run \
             `cargo test --workspace`, which builds it too; or set TIMECHO_BIN)",
            path.display()
        );
        path
    })
}

/// The last line `serve` prints once every listener is bound.
const READY_LINE: &str = "Press Ctrl-C to stop.";
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any drain a test waits for, shorter than the default 5 s drain
/// deadline plus slack, so a hung shutdown shows up as a failure.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// The binary with an environment that does not depend on the caller's shell:
/// no TIMECHO_* settings or log filter leak in; panics would show a backtrace.
pub fn timecho() -> Command {
    clean_command(bin())
}

/// `program` with an environment that does not depend on the caller's shell
/// (see [`timecho`]): for the other programs of the workspace, such as the
/// load generator.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TIMECHO_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// Whether this build has the HTTP gateway, whose default port would make
/// parallel servers collide.
fn has_http_flag() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let out = timecho()
            .args(["serve", "--help"])
            .output()
            .expect("timecho serve --help runs");
        String::from_utf8_lossy(&out.stdout).contains("--http <ADDR>")
    })
}

/// `serve` on ephemeral loopback addresses, plus the caller's arguments.
fn serve_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["serve", "--tcp", "127.0.0.1:0"].map(String::from).into();
    let chooses_http = extra
        .iter()
        .any(|a| a.starts_with("--http") || *a == "--no-http");
    if has_http_flag() && !chooses_http {
        args.extend(["--http", "127.0.0.1:0"].map(String::from));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Collects everything a child writes to one pipe, on its own thread.
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    fn new(mut pipe: impl Read + Send + 'static) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Capture {
            bytes,
            reader: Some(reader),
        }
    }

    /// What was written so far; after the child exited, everything it wrote.
    fn text(&mut self, exited: bool) -> String {
        if exited {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the process has a SIGTERM handler installed (Linux: `SigCgt` in
/// /proc/PID/status); `None` if that cannot be told.
fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A running `timecho serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// (kind, address) per listener line of the start-up banner.
    listening: Vec<(String, String)>,
    /// The banner's lines, as printed.
    banner: Vec<String>,
    stderr: Capture,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts `timecho serve --tcp 127.0.0.1:0 <args>` and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(&[], args)
    }

    /// As [`Server::start`], with extra environment variables (such as `TZ`).
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = timecho();
        cmd.envs(env.iter().copied());
        Server::spawn(cmd, args)
    }

    /// As [`Server::start`], in a process that may open at most `nofile`
    /// descriptors (soft and hard limit), as under a strict `LimitNOFILE=`.
    pub fn start_with_nofile(nofile: u64, args: &[&str]) -> Server {
        use std::os::unix::process::CommandExt;
        let mut cmd = timecho();
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Server::spawn(cmd, args)
    }

    /// As [`Server::start`], for arguments that name a free port (see
    /// [`super::free_addr`]): `Err` with the server's stderr when another
    /// process took that port first, so the caller can try a fresh one. Any
    /// other failure to start fails the test.
    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        Server::try_spawn(timecho(), args)
    }

    fn spawn(cmd: Command, args: &[&str]) -> Server {
        Server::try_spawn(cmd, args).unwrap_or_else(|stderr| {
            panic!("timecho {args:?} found its address taken; stderr:\n{stderr}")
        })
    }

    fn try_spawn(mut cmd: Command, args: &[&str]) -> Result<Server, String> {
        let args = serve_args(args);
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("timecho starts");
        let mut stderr = Capture::new(child.stderr.take().expect("piped stderr"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (lines_tx, lines) = mpsc::channel();
        // Keeps reading after the banner so the server never blocks on a full pipe.
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let mut listening = Vec::new();
        let mut banner = Vec::new();
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(wait) {
                Ok(line) if line == READY_LINE => break,
                Ok(line) => {
                    banner.push(line.clone());
                    let mut words = line.split_whitespace();
                    if let (true, Some(kind), Some(addr)) =
                        (line.starts_with("  "), words.next(), words.next())
                    {
                        listening.push((kind.to_owned(), addr.to_owned()));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_for(&mut child, START_TIMEOUT);
                    let stderr = stderr.text(status.is_some());
                    if lost_its_port(&stderr) {
                        return Err(stderr);
                    }
                    panic!(
                        "timecho {args:?} exited ({status:?}) before listening; stderr:\n{stderr}"
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "timecho {args:?} did not say {READY_LINE:?} within {START_TIMEOUT:?}; stderr:\n{}",
                        stderr.text(true)
                    );
                }
            }
        }
        Ok(Server {
            child,
            listening,
            banner,
            stderr,
            exited: None,
        })
    }

    fn addrs<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.listening
            .iter()
            .filter(move |(k, _)| k == kind)
            .map(|(_, a)| a.as_str())
    }

    fn socket_addr(&self, kind: &str) -> SocketAddr {
        let addr = self
            .addrs(kind)
            .next()
            .unwrap_or_else(|| panic!("no {kind} listener in {:?}", self.listening));
        addr.parse()
            .unwrap_or_else(|e| panic!("{kind} address {addr:?}: {e}"))
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs("tcp")
            .map(|a| a.parse().expect("tcp address parses"))
            .collect()
    }

    /// The first TCP listener: the `127.0.0.1:0` every server gets.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.socket_addr("tcp")
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.socket_addr("udp")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.socket_addr("http")
    }

    /// Every HTTP listener: a name given to --http has one per address.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.addrs("http")
            .map(|a| a.parse().expect("http address parses"))
            .collect()
    }

    pub fn unix_path(&self) -> PathBuf {
        let path = self
            .addrs("unix")
            .next()
            .unwrap_or_else(|| panic!("no unix listener in {:?}", self.listening));
        PathBuf::from(path)
    }

    /// The start-up banner's lines (where it listens, what to try).
    pub fn banner(&self) -> &[String] {
        &self.banner
    }

    /// The process id, e.g. to read `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub fn stderr(&mut self) -> String {
        self.stderr.text(self.exited.is_some())
    }

    /// The server's stderr once it holds `count` lines containing `needle`;
    /// fails the test if that takes longer than a reply may.
    pub fn wait_for_log(&mut self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + super::REPLY_TIMEOUT;
        loop {
            let log = self.stderr();
            if log.matches(needle).count() >= count {
                return log;
            }
            if Instant::now() >= deadline || self.exited.is_some() {
                panic!(
                    "the server did not log {needle:?} {count} times; stderr:
{log}"
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                continue;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_none()
    }

    /// Sends SIGTERM, as a supervisor that has seen the banner would: the
    /// handlers are installed before the banner is printed.
    pub fn sigterm(&self) {
        send_signal(&self.child, libc::SIGTERM);
    }

    /// Sends any signal (SIGHUP reloads the TLS certificate).
    pub fn signal(&self, signal: libc::c_int) {
        send_signal(&self.child, signal);
    }

    /// Where `/metrics` is served without sign-in: the `--metrics` listener
    /// when there is one, else the HTTP listener.
    pub fn metrics_addr(&self) -> SocketAddr {
        match self.addrs("metrics").next() {
            Some(_) => self.socket_addr("metrics"),
            None => self.http_addr(),
        }
    }

    /// The address of the first listener of `kind` (`tcp`, `tls`, `https`, ...).
    pub fn listener(&self, kind: &str) -> SocketAddr {
        self.socket_addr(kind)
    }

    /// The listener of `kind` bound on the IP address `ip`.
    pub fn listener_on(&self, kind: &str, ip: &str) -> SocketAddr {
        self.addrs(kind)
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .find(|a| a.ip().to_string() == ip)
            .unwrap_or_else(|| panic!("no {kind} listener on {ip} in {:?}", self.listening))
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_for(&mut self.child, limit);
        }
        self.exited
    }

    /// SIGTERM, then the exit status; fails the test if the server does not stop.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "timecho did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.sigterm();
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        if thread::panicking() {
            eprintln!("--- timecho serve stderr ---\n{}", self.stderr());
        }
    }
}

/// How a process that was expected to end, ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    /// Whether it could not listen on an address because another process
    /// had it: with a free port (see [`super::free_addr`]), a reason to try
    /// another rather than a failure.
    pub fn lost_its_port(&self) -> bool {
        lost_its_port(&self.stderr)
    }
}

/// Whether `timecho serve` said it could not bind an address in use.
fn lost_its_port(stderr: &str) -> bool {
    stderr.contains("cannot listen on") && stderr.contains("Address already in use")
}

/// Runs `cmd` with `input` on stdin and waits for it to end (killing it and
/// failing the test after `limit`).
pub fn run_to_exit(mut cmd: Command, input: &[u8], limit: Duration) -> Exited {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = Capture::new(child.stdout.take().expect("piped stdout"));
    let mut stderr = Capture::new(child.stderr.take().expect("piped stderr"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A process that exits without reading its input must not block the test.
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let Some(status) = wait_for(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} still running after {limit:?}; stdout:\n{}\nstderr:\n{}",
            stdout.text(true),
            stderr.text(true)
        );
    };
    Exited {
        status,
        stdout: stdout.text(true),
        stderr: stderr.text(true),
    }
}

/// Runs `timecho serve --tcp 127.0.0.1:0 <args>`, which is expected to refuse to start.
pub fn serve_expecting_exit(args: &[&str]) -> Exited {
    let mut cmd = timecho();
    cmd.args(serve_args(args));
    run_to_exit(cmd, b"", Duration::from_secs(10))
}
