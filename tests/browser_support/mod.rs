//! What the browser tests share: chromedriver and its pages, the gateway
//! under test, and what a failing test leaves in `tests/artifacts/`.

mod driver;
mod page;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use futures_util::FutureExt;
use serde_json::Value;

use crate::support::{http, Server, TempDir};
use driver::Driver;

pub use driver::Window;
pub use page::{wait_until, Page, View, SHOW_TIMEOUT};

/// The workspace root (this package is `server/`).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where failing tests leave screenshots and browser logs (gitignored).
pub const ARTIFACTS: &str = "tests/artifacts";

/// The browsers of one test. Cheap to clone.
#[derive(Clone)]
pub struct Browser {
    inner: Arc<Inner>,
}

struct Inner {
    test: String,
    pages: Mutex<Vec<Page>>,
    profiles: Mutex<Vec<TempDir>>,
    // Dropped last: the sessions it runs are closed first.
    driver: Driver,
}

impl Browser {
    /// A page in a new desktop-sized browser.
    pub async fn page(&self, label: &str) -> Page {
        self.page_with(label, Window::DESKTOP).await
    }

    /// A page in a new browser of its own (own profile, own cookies).
    pub async fn page_with(&self, label: &str, window: Window) -> Page {
        let profile = TempDir::new();
        let client = self.inner.driver.session(window, &profile).await;
        let page = Page {
            client,
            label: label.to_owned(),
        };
        self.inner.pages.lock().unwrap().push(page.clone());
        self.inner.profiles.lock().unwrap().push(profile);
        page
    }

    /// Saves a screenshot, the browser's console and the DOM of every page;
    /// returns the lines that say where.
    async fn save_artifacts(&self) -> String {
        let dir = workspace().join(ARTIFACTS);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return format!("could not create {}: {e}", dir.display());
        }
        let pages = self.inner.pages.lock().unwrap().clone();
        let mut saved = Vec::new();
        for page in pages {
            let base = format!("{}-{}", self.inner.test, page.label);
            let png = command(page.screenshot()).await;
            saved.push(save(&dir, &format!("{base}.png"), png));
            let console = console_log(&page).await.map(String::into_bytes);
            saved.push(save(&dir, &format!("{base}.console.txt"), console));
            let dom = command(page.client.source()).await.map(String::into_bytes);
            saved.push(save(&dir, &format!("{base}.html"), dom));
        }
        if saved.is_empty() {
            "no page was open".to_owned()
        } else {
            format!("saved:\n  {}", saved.join("\n  "))
        }
    }

    async fn close(&self) {
        let pages = std::mem::take(&mut *self.inner.pages.lock().unwrap());
        for page in pages {
            let _ = command(page.client.close()).await;
        }
    }
}

/// Runs a browser test: starts chromedriver, runs `body`, and if it fails,
/// saves what every page showed before failing with the paths added. With
/// `TIMECHO_BROWSER_ARTIFACTS` set, passing tests save theirs too (to look at
/// the pages).
///
/// Keep the servers a test needs alive *outside* `body` (pass references in):
/// a failing body's own values are dropped before the screenshots are taken.
pub async fn browser_test<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()>,
{
    let browser = Browser {
        inner: Arc::new(Inner {
            test: test.to_owned(),
            pages: Mutex::new(Vec::new()),
            profiles: Mutex::new(Vec::new()),
            driver: Driver::start(),
        }),
    };
    let outcome = AssertUnwindSafe(body(browser.clone())).catch_unwind().await;
    let failure = match outcome {
        Ok(()) => {
            if std::env::var_os("TIMECHO_BROWSER_ARTIFACTS").is_some() {
                browser.save_artifacts().await;
            }
            None
        }
        Err(panic) => Some((panic, browser.save_artifacts().await)),
    };
    browser.close().await;
    if let Some((panic, saved)) = failure {
        panic!("{}\n{saved}", panic_message(&*panic));
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(a panic without a message)")
}

/// A WebDriver command made while cleaning up, bounded so that a hung
/// browser cannot hang the test run.
async fn command<T, E: std::fmt::Display>(
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the browser did not answer within 10 s".to_owned()),
    }
}

/// Writes one artifact; the line that says where (or why not).
fn save(dir: &Path, name: &str, bytes: Result<Vec<u8>, String>) -> String {
    let shown = format!("{ARTIFACTS}/{name}");
    match bytes.and_then(|b| std::fs::write(dir.join(name), b).map_err(|e| e.to_string())) {
        Ok(()) => shown,
        Err(e) => format!("{shown}: not saved ({e})"),
    }
}

/// chromedriver's log endpoint (a Selenium extension it still serves): the
/// console messages and errors the page produced, kept through
/// `goog:loggingPrefs`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// The page's console so far, one entry a line.
pub async fn console_log(page: &Page) -> Result<String, String> {
    let entries = command(page.client.issue_cmd(BrowserLog)).await?;
    let Value::Array(entries) = entries else {
        return Ok(format!("{entries}\n"));
    };
    Ok(entries
        .iter()
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap_or_default().to_owned();
            format!(
                "{} {} {}\n",
                e["timestamp"],
                field("level"),
                field("message")
            )
        })
        .collect())
}

/// Fails the test unless `web/dist` holds a built page: the binary embeds it.
pub fn assert_page_built() {
    let index = workspace().join("web/dist/index.html");
    let built = std::fs::metadata(&index).is_ok_and(|m| m.len() > 0);
    assert!(
        built,
        "{} is missing or empty: run `cargo xtask web` before the browser tests",
        index.display()
    );
}

/// `timecho serve` with the page and the gateway on plain http; fails the
/// test if the binary serves the "not built" page instead of the chat.
pub fn start_gateway(args: &[&str]) -> Server {
    assert_page_built();
    let server = Server::start(args);
    let response = http::get("/").send(server.http_addr());
    assert!(
        response.status != 503 || !response.text().contains("not built"),
        "the timecho binary has no page built in (GET / is 503): run `cargo xtask web`, \
         then the tests again (the binary embeds web/dist when it is compiled)"
    );
    assert_eq!(response.status, 200, "GET / answered {response}");
    server
}

pub fn page_url(server: &Server) -> String {
    format!("http://{}/", server.http_addr())
}

/// Writes the README's screenshot when it is missing, or when
/// `TIMECHO_UPDATE_SCREENSHOT` is set: it is committed, and the stamps in it
/// change with every run. A copy always goes to `tests/artifacts/`.
pub fn save_docs_screenshot(png: &[u8]) -> PathBuf {
    let dir = workspace().join(ARTIFACTS);
    std::fs::create_dir_all(&dir).expect("create tests/artifacts");
    std::fs::write(dir.join("screenshot.png"), png).expect("write the screenshot artifact");
    let docs = workspace().join("docs/screenshot.png");
    if !docs.exists() || std::env::var_os("TIMECHO_UPDATE_SCREENSHOT").is_some() {
        std::fs::create_dir_all(workspace().join("docs")).expect("create docs/");
        std::fs::write(&docs, png).expect("write docs/screenshot.png");
    }
    docs
}
