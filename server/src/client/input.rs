//! What the user sends, read on threads of its own: standard input and the
//! line editor block, so they feed the async sessions over channels.
//!
//! The threads are never joined while blocked: at exit the process ends them,
//! which is the only way to stop a read from a terminal or a pipe.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::thread;

use tokio::sync::{mpsc, oneshot};

/// Chunks of standard input in flight to the sender; a few, so that a slow
/// server slows the reading of input instead of filling memory.
const CHUNKS_IN_FLIGHT: usize = 4;
const CHUNK: usize = 64 * 1024;

/// A line typed at the prompt. The next prompt waits until `answered` is sent
/// (the reply is printed), or dropped (the session ended).
pub struct Typed {
    pub line: Vec<u8>,
    pub answered: oneshot::Sender<()>,
}

/// Prompts `> ` with line editing and history; an empty line, EOF or Ctrl-C
/// ends it (the channel closes). Join the thread to have the history saved.
pub fn prompt() -> (
    mpsc::Receiver<Typed>,
    thread::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = mpsc::channel(1);
    let editor = thread::spawn(move || prompt_lines(&tx));
    (rx, editor)
}

fn prompt_lines(tx: &mpsc::Sender<Typed>) -> anyhow::Result<()> {
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
                let (answered, done) = oneshot::channel();
                let typed = Typed {
                    line: line.into_bytes(),
                    answered,
                };
                // Either the session is gone or it dropped the reply: stop asking.
                if tx.blocking_send(typed).is_err() || done.blocking_recv().is_err() {
                    break Ok(());
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

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".timecho_history"))
}

/// Standard input as it comes, in chunks of whatever each read returned: lines
/// need no per-line round trip when the server frames them anyway.
pub fn stdin_chunks() -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let read = match stdin.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    Ok(chunk)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The lines of standard input without their `\n` or `\r\n`, for UDP, where
/// each line is one datagram.
pub fn stdin_lines() -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    thread::spawn(move || {
        for line in io::stdin().lock().split(b'\n') {
            let line = line.map(|mut l| {
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                l
            });
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}
