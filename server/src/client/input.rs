//! What the user sends, read on threads of its own: standard input and the
//! line editor block, so they feed the async sessions over channels.
//!
//! The threads are never joined while blocked: at exit the process ends them,
//! which is the only way to stop a read from a terminal or a pipe.

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;

use nix::sys::signal::{raise, Signal};

use tokio::sync::{mpsc, oneshot};

/// Chunks of standard input in flight to the sender; a few, so that a slow
/// server slows the reading of input instead of filling memory.
const CHUNKS_IN_FLIGHT: usize = 4;
const CHUNK: usize = 64 * 1024;

/// A line typed at the prompt. The next prompt waits until `answered` is sent
/// (the line is sent, or over UDP its reply printed), or dropped (the session
/// ended).
pub struct Typed {
    pub line: Vec<u8>,
    pub answered: oneshot::Sender<()>,
}

/// Where the session shows what the server sends: above the prompt while the
/// line editor owns the terminal (rustyline's external printer redraws the
/// prompt and the half-typed line under it), or plainly on standard output
/// when there is no editor to keep out of the way.
pub struct Screen {
    printer: Option<Box<dyn rustyline::ExternalPrinter + Send>>,
}

impl Screen {
    /// Shows `text` as one or more whole lines (a missing final newline is added).
    pub fn show(&mut self, text: &[u8]) -> io::Result<()> {
        match &mut self.printer {
            Some(printer) => printer
                .print(String::from_utf8_lossy(text).into_owned())
                .map_err(io::Error::other),
            None => {
                let mut out = io::stdout().lock();
                out.write_all(text)?;
                if text.last() != Some(&b'\n') {
                    out.write_all(b"\n")?;
                }
                out.flush()
            }
        }
    }
}

/// The line editor's thread.
pub struct Editor {
    thread: thread::JoinHandle<anyhow::Result<()>>,
}

impl Editor {
    /// Waits for the user to end the session (an empty line, EOF or Ctrl-C),
    /// so that the history is saved and the terminal is as it was.
    pub fn join(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the line editor failed"))?
    }

    /// Ends the prompt from the session's side (the server went away) and
    /// gives the terminal back as it was, so that the caller can then say
    /// why on standard error, below whatever the server sent last. The
    /// session's receiver of typed lines must be dropped first, so that the
    /// editor is not left waiting for a line to be taken. If the editor
    /// cannot be ended, it is left to die with the process.
    ///
    /// rustyline has no call that ends a `readline` from another thread, but
    /// while it reads it turns SIGINT into Ctrl-C, which ends it and restores
    /// the terminal. Between reads the signal meets the handler that
    /// [`prompt`] installs, which lets it pass once stopping, so it is raised
    /// until the editor is gone: it comes back to read at once.
    ///
    /// A signal is seen before a message waiting in the external printer, and
    /// a message not yet taken would be lost with the prompt. The printer
    /// takes one message at a time and the editor draws each before it looks
    /// for the next event, so a further message, [`FLUSH`], is handed over
    /// first: once it is accepted, everything shown before it is on screen.
    pub fn stop(self, screen: Screen) {
        if let Some(mut printer) = screen.printer {
            if !self.thread.is_finished() {
                let _ = printer.print(FLUSH.to_owned());
            }
        }
        CTRL_C_ENDS.store(false, Ordering::SeqCst);
        for _ in 0..STOP_TRIES {
            if self.thread.is_finished() {
                let _ = self.join();
                return;
            }
            // To rustyline's handler (which writes a byte to a pipe) or to
            // ours (which, once stopping, does nothing).
            let _ = raise(Signal::SIGINT);
            thread::sleep(STOP_PAUSE);
        }
    }
}

/// How often, and how far apart, [`Editor::stop`] signals the editor.
const STOP_TRIES: usize = 100;
const STOP_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// SIGINT outside rustyline's reads: while this holds, a user's Ctrl-C ends
/// the process as it would without a handler; once the session ends the
/// prompt, SIGINT is its own and is let pass.
static CTRL_C_ENDS: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(true)));

/// A message that leaves the screen as it was, whichever way the printer
/// hands it on. While the editor reads, it clears the prompt, writes the
/// message (a final newline is not doubled) and draws the prompt again;
/// between reads the printer writes it straight to the terminal, where the
/// cursor is at the start of a line. Either way the cursor goes up a line
/// (CUU) and comes back down to where it was.
const FLUSH: &str = "\x1b[A\n";

/// Prompts `> ` with line editing and history; an empty line, EOF or Ctrl-C
/// ends it (the channel closes). What the server sends is shown through the
/// [`Screen`] meanwhile.
pub fn prompt() -> anyhow::Result<(mpsc::UnboundedReceiver<Typed>, Screen, Editor)> {
    // Before the first read, so that rustyline saves it and puts it back after
    // each one (it installs its own handler only while it reads).
    signal_hook::flag::register_conditional_default(
        signal_hook::consts::SIGINT,
        Arc::clone(&CTRL_C_ENDS),
    )?;
    let mut editor = rustyline::DefaultEditor::new()?;
    // No printer when standard output is not a terminal: nothing to keep tidy.
    let printer = editor
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>);
    // Unbounded, so the editor never blocks on it and is always there to draw
    // what the printer hands it; a person types slowly.
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = thread::spawn(move || prompt_lines(editor, &tx));
    Ok((rx, Screen { printer }, Editor { thread }))
}

fn prompt_lines(
    mut editor: rustyline::DefaultEditor,
    tx: &mpsc::UnboundedSender<Typed>,
) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        match editor.readline("> ") {
            Ok(line) if line.is_empty() => return Ok(()),
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                // Saved as it grows: the session may end without this thread.
                if let Some(h) = &history {
                    let _ = editor.save_history(h);
                }
                let (answered, done) = oneshot::channel();
                let typed = Typed {
                    line: line.into_bytes(),
                    answered,
                };
                // Either the session is gone or it dropped the line: stop asking.
                if tx.send(typed).is_err() || done.blocking_recv().is_err() {
                    return Ok(());
                }
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
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
