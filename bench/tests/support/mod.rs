//! What the bench's end-to-end tests share: the two real programs, this
//! crate's `timecho-bench` and the server's `timecho`, as separate processes.
//!
//! The server is another package's binary, so cargo does not hand its path
//! over as it does this crate's (`CARGO_BIN_EXE_timecho-bench`): it is
//! `TIMECHO_BIN`, or else the `timecho` beside `timecho-bench` in the same
//! target directory, where `cargo test --workspace` builds both.

// Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// This crate's binary.
pub const BENCH_BIN: &str = env!("CARGO_BIN_EXE_timecho-bench");

/// The last line `serve` prints once every listener is bound.
const READY_LINE: &str = "Press Ctrl-C to stop.";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// The server binary the tests run: `TIMECHO_BIN`, or the `timecho` beside
/// `timecho-bench`. Fails the test, saying how to build it, if there is none.
pub fn server_bin() -> PathBuf {
    let path = match std::env::var_os("TIMECHO_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(BENCH_BIN).with_file_name("timecho"),
    };
    assert!(
        path.is_file(),
        "no server binary at {} (build it with `cargo build -p timecho`, or run \
         `cargo test --workspace`, which builds both; or set TIMECHO_BIN)",
        path.display()
    );
    path
}

/// `program` with an environment that does not depend on the caller's shell:
/// no TIMECHO_* settings or log filter leak in; panics show a backtrace.
fn clean(program: &Path) -> Command {
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

/// The server binary, in a clean environment.
pub fn timecho() -> Command {
    clean(&server_bin())
}

/// `timecho-bench`, in a clean environment but for `TIMECHO_BIN` when the
/// caller set it (so that `--fresh-server` starts the same server the tests
/// do; without it, the bench finds the `timecho` beside it by itself).
/// Fails the test up front if there is no server to run against.
pub fn timecho_bench() -> Command {
    let server = server_bin();
    let mut cmd = clean(Path::new(BENCH_BIN));
    if std::env::var_os("TIMECHO_BIN").is_some() {
        cmd.env("TIMECHO_BIN", server);
    }
    cmd
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

/// A running `timecho serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// (kind, address) per listener line of the start-up banner.
    listening: Vec<(String, String)>,
    stderr: Capture,
}

impl Server {
    /// Starts `timecho serve --tcp 127.0.0.1:0 <args>` (and `--http
    /// 127.0.0.1:0` unless `args` choose) and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(&[], args)
    }

    /// As [`Server::start`], with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Server {
        let chooses_http = args
            .iter()
            .any(|a| a.starts_with("--http") || *a == "--no-http");
        let mut cmd = timecho();
        cmd.envs(env.iter().copied())
            .args(["serve", "--tcp", "127.0.0.1:0"]);
        if !chooses_http {
            // The default port would make parallel servers collide.
            cmd.args(["--http", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
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
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(wait) {
                Ok(line) if line == READY_LINE => break,
                Ok(line) => {
                    let mut words = line.split_whitespace();
                    if let (true, Some(kind), Some(addr)) =
                        (line.starts_with("  "), words.next(), words.next())
                    {
                        listening.push((kind.to_owned(), addr.to_owned()));
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "timecho serve {args:?} did not say {READY_LINE:?} ({e}); stderr:\n{}",
                        stderr.text(true)
                    );
                }
            }
        }
        Server {
            child,
            listening,
            stderr,
        }
    }

    /// The address of the first listener of `kind` (`tcp`, `http`, `metrics`).
    pub fn listener(&self, kind: &str) -> SocketAddr {
        let (_, addr) = self
            .listening
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} listener in {:?}", self.listening));
        addr.parse()
            .unwrap_or_else(|e| panic!("{kind} address {addr:?}: {e}"))
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.listener("tcp")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.listener("http")
    }

    /// The process id, for `--server-pid`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if wait_for(&mut self.child, STOP_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- timecho serve stderr ---\n{}", self.stderr.text(true));
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

/// A `basic:FILE` for `--auth` with one user, made as the README says:
/// `printf 'PASSWORD\n' | timecho hash-password USER`.
pub fn basic_users_file(dir: &TempDir, user: &str, password: &str) -> String {
    let mut cmd = timecho();
    cmd.args(["hash-password", user]);
    let out = run_to_exit(
        cmd,
        format!("{password}\n").as_bytes(),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "hash-password: {out:?}");
    let path = dir.path().join(format!("users-{user}.txt"));
    std::fs::write(&path, &out.stdout).expect("write the users file");
    format!("basic:{}", path.display())
}

/// A fresh directory, removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("timecho-bench-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
