//! chromedriver and the headless Chromium sessions it runs: one driver per
//! test, one browser (its own profile) per page, so pages share nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::support::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to say its port. A deadline, not a wait: it
/// usually answers in well under a second, but on a 2-core machine busy with
/// builds it once took over 15 s.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times chromedriver is started when the port it picked was taken.
const DRIVER_START_ATTEMPTS: usize = 3;

/// Lines of chromedriver's output kept for the failure message when it does
/// not start.
const KEEP_OUTPUT_LINES: usize = 20;

/// How a page's browser is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    /// `--ignore-certificate-errors`: for the self-signed https test only.
    pub ignore_certificate_errors: bool,
    /// Emulates a phone's screen (Chrome's device mode): a real window cannot
    /// be narrower than 500 px.
    pub phone: bool,
}

impl Window {
    /// The size every desktop test (and the README screenshot) uses.
    pub const DESKTOP: Window = Window {
        width: 1000,
        height: 800,
        ignore_certificate_errors: false,
        phone: false,
    };

    /// A phone's viewport of `width` x `height` CSS pixels, touch and all.
    pub const fn phone(width: u32, height: u32) -> Window {
        Window {
            width,
            height,
            phone: true,
            ..Window::DESKTOP
        }
    }
}

/// A running chromedriver, killed when dropped (after its sessions closed).
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver on a port of its choosing. Fails the test, saying
    /// how to install them, when Chromium or chromedriver is missing.
    pub fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Chromium and chromedriver; \
                 run `cargo xtask test`, which installs them (apt-get install chromium chromium-driver)"
            );
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Driver::try_start() {
                Ok(driver) => return driver,
                // chromedriver's `--port=0` finds a free port, lets it go and
                // binds it again, for IPv4 and IPv6 apart: a test starting
                // beside it can take the port in between. Its race, not ours,
                // and a new pick is all it needs.
                Err(failure)
                    if attempts < DRIVER_START_ATTEMPTS
                        && failure.contains("port not available") => {}
                Err(failure) => panic!("{CHROMEDRIVER} {failure}"),
            }
        }
    }

    /// One start of chromedriver; what went wrong, with its output, if it did
    /// not say its port.
    fn try_start() -> Result<Driver, String> {
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        // Both keep reading after the port line, so the driver never blocks on
        // a full pipe; what they read before it explains a failed start.
        let kept = output.clone();
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                match line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    Some(port) => drop(port_tx.send(port)),
                    None => keep(&kept, line),
                }
            }
        });
        let kept = output.clone();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                keep(&kept, line);
            }
        });
        let failure = match port_rx.recv_timeout(DRIVER_START_TIMEOUT) {
            Ok(port) => {
                return Ok(Driver {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                format!("did not say which port it listens on within {DRIVER_START_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => match child.wait() {
                Ok(status) => format!("ended ({status}) without saying which port it listens on"),
                Err(e) => format!("closed its output, and cannot be waited for: {e}"),
            },
        };
        let output = output.lock().unwrap().join("\n  ");
        Err(format!("{failure}; its output:\n  {output}"))
    }

    /// A new browser session: its own Chromium with a fresh profile in `profile`.
    pub async fn session(&self, window: Window, profile: &TempDir) -> Client {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            // Fixed metrics and colours, so screenshots look the same everywhere.
            "--force-device-scale-factor=1".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-color-profile=srgb".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", window.width, window.height),
        ];
        if window.ignore_certificate_errors {
            args.push("--ignore-certificate-errors".to_owned());
        }
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if window.phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {
                    "width": window.width,
                    "height": window.height,
                    "pixelRatio": 1.0,
                    "mobile": true,
                    "touch": true,
                },
            });
        }
        let capabilities = json!({
            "goog:chromeOptions": options,
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Some(capabilities) = capabilities.as_object().cloned() else {
            unreachable!("capabilities are an object")
        };
        let capabilities: Capabilities = capabilities;
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps `line` among the last [`KEEP_OUTPUT_LINES`] of chromedriver's output.
fn keep(output: &Mutex<Vec<String>>, line: String) {
    let mut output = output.lock().unwrap();
    if output.len() == KEEP_OUTPUT_LINES {
        output.remove(0);
    }
    output.push(line);
}
