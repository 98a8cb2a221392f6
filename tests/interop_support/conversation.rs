//! A client that talks through its standard streams (websocat, nc, socat):
//! fed on stdin, read on stdout as bytes (replies need not be UTF-8).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a client may take to answer, or to exit once its input ended:
/// longer than a scripted session's own deadline, so that it can report.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How a client's run ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

pub struct Conversation {
    shown: String,
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: mpsc::Receiver<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Conversation {
    pub fn start(mut cmd: Command) -> Conversation {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        Conversation {
            shown,
            stdin: child.stdin.take(),
            child,
            chunks,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing its input: {e}", self.shown));
    }

    /// Waits until the client has printed `lines` newlines in all.
    pub fn wait_for_lines(&mut self, lines: usize) {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while self.stdout.iter().filter(|&&b| b == b'\n').count() < lines {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(wait) {
                Ok(chunk) => self.stdout.extend(chunk),
                Err(e) => self.fail(&format!("waiting for {lines} lines of output: {e:?}")),
            }
        }
    }

    /// Ends the client's input and waits for it to exit.
    pub fn finish(mut self) -> Ended {
        drop(self.stdin.take());
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "still running {CLIENT_TIMEOUT:?} after its input ended"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The reader ends at end of file, which follows the exit.
        while let Ok(chunk) = self.chunks.recv_timeout(CLIENT_TIMEOUT) {
            self.stdout.extend(chunk);
        }
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
        Ended {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(chunk) = self.chunks.try_recv() {
            self.stdout.extend(chunk);
        }
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
        panic!(
            "{}: {what}; stdout so far: \"{}\"; stderr: {}",
            self.shown,
            self.stdout.escape_ascii(),
            String::from_utf8_lossy(&stderr.unwrap_or_default())
        );
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
