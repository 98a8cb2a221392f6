//! A real `redis-server` of the test's own (Debian's, as `cargo xtask test`
//! installs it) on a free loopback port (it cannot say which port it got
//! from port 0), saving nothing, stopped by PID when dropped; and a few raw
//! commands to look at what the servers wrote there.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{on_free_addrs, TempDir};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl RedisServer {
    /// Starts it on a free port, and again on a fresh one when another
    /// process took that port first.
    pub fn start() -> RedisServer {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is not installed: run `cargo xtask test`, which installs it"
        );
        on_free_addrs("redis-server", |[addr]| {
            let mut redis = RedisServer {
                child: None,
                addr,
                dir: TempDir::new(),
            };
            redis.try_resume().map(|()| redis)
        })
    }

    /// `redis://ADDR`, for `--session-store`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops the server (SIGKILL to its PID): clients see their connections
    /// drop and new ones refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it saves nothing), once it
    /// answers `PING`. Its clients were given that port, so there is no
    /// fresh one to try: another process taking it meanwhile fails the test.
    pub fn resume(&mut self) {
        self.try_resume().unwrap_or_else(|log| {
            panic!("redis-server lost {} to another process: {log}", self.addr)
        });
    }

    /// One start on its port, once it answers `PING`: `Err` with its log when
    /// another process had the port; any other failure fails the test.
    fn try_resume(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.path().join("redis.log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", &self.addr.ip().to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while self.command(&["PING"]).as_deref() != Some("PONG") {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                if said.contains("Address already in use") {
                    return Err(said);
                }
                panic!(
                    "redis-server on {} exited: {status}; its log:\n{said}",
                    self.addr
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not answer PING within {START_TIMEOUT:?}; its log:\n{}",
                self.addr,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// One command; its answer as text (an array's items joined with
    /// newlines), or `None` when the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(request.as_bytes()).ok()?;
        let mut reader = BufReader::new(s);
        read_value(&mut reader)
    }

    /// The sign-outs the instances wrote, each with its remaining seconds.
    pub fn sign_outs(&self) -> Vec<(String, u64)> {
        let keys = self
            .command(&["KEYS", "timecho:signed-out:*"])
            .unwrap_or_default();
        keys.lines()
            .filter(|k| !k.is_empty())
            .map(|k| {
                let ttl = self.command(&["TTL", k]).and_then(|t| t.parse().ok());
                (k.to_owned(), ttl.unwrap_or(0))
            })
            .collect()
    }
}

fn read_value(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at_checked(1)?;
    match kind {
        "+" | ":" | "-" => Some(rest.to_owned()),
        "$" if rest == "-1" => Some(String::new()),
        "$" => {
            let mut value = String::new();
            reader.read_line(&mut value).ok()?;
            Some(value.trim_end().to_owned())
        }
        "*" => {
            let n: usize = rest.parse().ok()?;
            let items: Option<Vec<String>> = (0..n).map(|_| read_value(reader)).collect();
            Some(items?.join("\n"))
        }
        _ => None,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("redis.log"));
            eprintln!("--- redis-server log ---\n{}", log.unwrap_or_default());
        }
    }
}
