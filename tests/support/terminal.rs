//! A real terminal for the interactive client: a detached tmux session of its
//! own (its own server socket, so parallel tests and the user's tmux are
//! untouched), typed into with send-keys and read with capture-pane.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::TempDir;

pub struct Terminal {
    socket: String,
    /// The session's HOME, where the client keeps its history.
    _home: TempDir,
}

impl Terminal {
    /// Runs `args` (the timecho binary's arguments) in a 100x30 terminal; when
    /// it exits the terminal shows `EXIT=<status>` and stays open.
    pub fn run(args: &[&str]) -> Terminal {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "timecho-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let home = TempDir::new();
        let quoted: Vec<String> = std::iter::once(super::bin().to_str().expect("a UTF-8 path"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!("{}; echo EXIT=$?; sleep 600", quoted.join(" "));
        // The same clean environment as every other run of the binary.
        let cmd = super::timecho();
        let mut tmux = Command::new("tmux");
        for (name, value) in cmd.get_envs() {
            match value {
                Some(v) => tmux.env(name, v),
                None => tmux.env_remove(name),
            };
        }
        let status = tmux
            .env("HOME", home.path())
            .env("TERM", "xterm")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "100", "-y", "30", &script])
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): install it (cargo xtask test does, with apt)")
            });
        assert!(status.success(), "tmux new-session failed: {status:?}");
        Terminal {
            socket,
            _home: home,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` a key at a time, as a person does.
    pub fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.tmux(&["send-keys", "-l", &c.to_string()]);
        }
    }

    /// Presses Enter.
    pub fn enter(&self) {
        self.tmux(&["send-keys", "Enter"]);
    }

    /// What the terminal shows, trailing blank lines dropped.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"]).trim_end().to_owned()
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal did not show {needle:?} within {limit:?}; it shows:\n{screen}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}
