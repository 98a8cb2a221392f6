//! `--fresh-server`: the idle run starts its own `timecho serve` and measures
//! that: the `timecho` given by `--server-bin` (or `TIMECHO_BIN`), or else the
//! one beside this program, where cargo puts both.
//!
//! A server that has already served traffic keeps freed memory in its heap,
//! and new connections reuse it: measured there, memory per idle connection
//! looks smaller than it is (3.2 KiB against 9.0 on a fresh server, once). A
//! server started for the run, on port 0, with nothing before it, is the
//! figure a new deployment sees.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context as _};

/// What `timecho serve` prints once every listener is up.
const READY_LINE: &str = "Press Ctrl-C to stop.";

/// The server of one run; stopped (SIGTERM, then waited for) when dropped.
pub struct FreshServer {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// `HOST:PORT` of its TCP listener.
    pub tcp: String,
    /// `HOST:PORT` of its HTTP listener (the gateway), when asked for.
    pub http: Option<String>,
}

impl FreshServer {
    /// Starts `server_bin` (default: [`beside_this_program`]) with room for
    /// `connections` clients: a timestamp listener only, or with `gateway` the
    /// HTTP side too (each session is relayed to the same process's TCP
    /// listener). Every connection of the run comes from one address, so the
    /// per-client share is the whole room: the default share (a fraction of
    /// `--max-connections`) would refuse most of them and the figure would be
    /// for the few that stayed.
    pub fn start(
        server_bin: Option<&Path>,
        connections: usize,
        gateway: bool,
    ) -> anyhow::Result<FreshServer> {
        let exe = match server_bin {
            Some(path) => path.to_owned(),
            None => beside_this_program()?,
        };
        let room = (connections + 16).to_string();
        let mut command = Command::new(&exe);
        command.args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--max-connections",
            &room,
            "--max-connections-per-client",
            &room,
        ]);
        if gateway {
            command.args(["--http", "127.0.0.1:0", "--max-websockets", &room]);
        } else {
            command.arg("--no-http");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} serve (--server-bin or TIMECHO_BIN names the timecho \
                     program to start)",
                    exe.display()
                )
            })?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        let (mut tcp, mut http) = (None, None);
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let _ = child.wait();
                bail!("timecho serve exited before it was listening");
            }
            if line.trim_end() == READY_LINE {
                break;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("tcp"), Some(addr)) => tcp = tcp.or(Some(addr.to_owned())),
                (Some("http"), Some(addr)) => http = http.or(Some(addr.to_owned())),
                _ => {}
            }
        }
        let server = FreshServer {
            child,
            _stdout: stdout,
            tcp: tcp.unwrap_or_default(),
            http,
        };
        if server.tcp.is_empty() || (gateway && server.http.is_none()) {
            bail!("timecho serve did not say where it listens");
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The `timecho` in this program's directory: cargo builds both into the
/// same target/<profile>/, and an install puts both in one bin/.
fn beside_this_program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program to find timecho")?;
    let dir = exe
        .parent()
        .context("this program is in no directory, so timecho is not beside it")?;
    Ok(dir.join("timecho"))
}

impl Drop for FreshServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; it has not been waited for,
        // so the pid cannot have been reused.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
