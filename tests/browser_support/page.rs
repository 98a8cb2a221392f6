//! One browser page, driven through the page's stable test hooks (`#status`,
//! `#message-input`, `#send`, `#transcript`, `.reply`, `.sent`, the sign-in
//! ids). Reads go through small scripts: one round trip instead of one per
//! element, and no stale-element races while Yew re-renders.

use std::future::Future;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// How long something the page is about to show may take to appear.
pub const SHOW_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok`, failing the test after `timeout` with
/// what it was waiting for and the last thing it saw instead.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `#status`: the connection state as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// `connecting`, `connected` or `disconnected` (`data-state`).
    pub state: String,
    /// The close code while disconnected (`data-code`).
    pub code: Option<String>,
    /// Everything the status says, reason included.
    pub text: String,
}

/// One `.reply` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reply {
    /// The stamp exactly as the server wrote it (`data-stamp`).
    pub stamp: String,
    pub text: String,
}

/// What the transcript shows, in order of kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Transcript {
    pub replies: Vec<Reply>,
    /// `.sent .text` of every message typed here.
    pub sent: Vec<String>,
    /// `.error` entries' text.
    pub errors: Vec<String>,
}

/// Which view the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Chat,
    SignIn,
}

const READ_STATUS: &str = r#"
    const s = document.getElementById("status");
    return s && { state: s.dataset.state, code: s.dataset.code ?? null, text: s.innerText };
"#;

const READ_TRANSCRIPT: &str = r##"
    const all = (sel) => [...document.querySelectorAll(sel)];
    return {
        replies: all("#transcript .reply").map((r) => ({
            stamp: r.querySelector(".stamp").dataset.stamp,
            text: r.querySelector(".text").textContent,
        })),
        sent: all("#transcript .sent .text").map((t) => t.textContent),
        errors: all("#transcript .error").map((e) => e.innerText),
    };
"##;

/// A page in its own browser. Cheap to clone: clones drive the same page.
#[derive(Clone)]
pub struct Page {
    pub(crate) client: Client,
    pub label: String,
}

impl Page {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `script` (a function body) and reads its result.
    pub async fn eval<T: DeserializeOwned>(&self, script: &str) -> T {
        let value = self
            .client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("[{}] script failed: {e}\n{script}", self.label));
        serde_json::from_value(value.clone()).unwrap_or_else(|e| {
            panic!(
                "[{}] unexpected script result {value}: {e}\n{script}",
                self.label
            )
        })
    }

    /// Loads the page at `url` and waits for the app to render (the chat or
    /// the sign-in form). Fails the test if the binary has no page built in.
    pub async fn open(&self, url: &str) -> View {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot load {url}: {e}", self.label));
        let view = wait_until("the page to render", SHOW_TIMEOUT, || async {
            let seen: Value = self
                .eval(
                    r#"return {
                        chat: !!document.getElementById("status"),
                        sign_in: !!document.getElementById("login-user"),
                        text: document.body ? document.body.innerText.slice(0, 300) : "",
                    };"#,
                )
                .await;
            let text = seen["text"].as_str().unwrap_or_default();
            assert!(
                !text.contains("not built into this binary"),
                "{url} serves the \"not built\" page: run `cargo xtask web` before the browser tests"
            );
            match (seen["chat"].as_bool(), seen["sign_in"].as_bool()) {
                (Some(true), _) => Ok(View::Chat),
                (_, Some(true)) => Ok(View::SignIn),
                _ => Err(format!("{text:?}")),
            }
        })
        .await;
        view
    }

    pub async fn status(&self) -> Option<Status> {
        self.eval(READ_STATUS).await
    }

    /// Waits until `#status` has `data-state` `state`; returns what it says.
    pub async fn wait_for_state(&self, state: &str, timeout: Duration) -> Status {
        let what = format!("[{}] #status to be {state}", self.label);
        wait_until(&what, timeout, || async {
            match self.status().await {
                Some(s) if s.state == state => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    pub async fn transcript(&self) -> Transcript {
        self.eval(READ_TRANSCRIPT).await
    }

    /// Types `text` into the message input and presses Enter.
    pub async fn send(&self, text: &str) {
        let input = self.find("#message-input").await;
        input
            .send_keys(&format!("{text}{}", char::from(Key::Enter)))
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot type {text:?}: {e}", self.label));
    }

    /// Waits for the reply that echoes `text`.
    pub async fn wait_for_reply(&self, text: &str) -> Reply {
        let what = format!("[{}] a reply to {text:?}", self.label);
        wait_until(&what, SHOW_TIMEOUT, || async {
            let t = self.transcript().await;
            match t.replies.iter().find(|r| r.text == text) {
                Some(reply) => Ok(reply.clone()),
                None => Err(format!("{t:?}; status {:?}", self.status().await)),
            }
        })
        .await
    }

    /// Sends `text` and waits for its reply.
    pub async fn round_trip(&self, text: &str) -> Reply {
        self.send(text).await;
        self.wait_for_reply(text).await
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no element {css}: {e}", self.label))
    }

    /// Waits until an element matching `css` exists.
    pub async fn wait_for_element(&self, css: &str) -> fantoccini::elements::Element {
        let what = format!("[{}] an element {css}", self.label);
        wait_until(&what, SHOW_TIMEOUT, || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(el) => Ok(el),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// The id of the focused element ("" for none).
    pub async fn focused_id(&self) -> String {
        self.eval("return document.activeElement ? document.activeElement.id : '';")
            .await
    }

    /// Presses `key` on whatever has the focus.
    pub async fn press(&self, key: Key) {
        let focused = self
            .client
            .active_element()
            .await
            .unwrap_or_else(|e| panic!("[{}] nothing has the focus: {e}", self.label));
        focused
            .send_keys(&char::from(key).to_string())
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot press {key:?}: {e}", self.label));
    }

    pub async fn screenshot(&self) -> Result<Vec<u8>, CmdError> {
        self.client.screenshot().await
    }
}
