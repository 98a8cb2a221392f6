//! The timecho chat page: type a line, see it come back with the server's time.
//!
//! Built for wasm32 by `cargo xtask web`; `state` is plain Rust
//! so its tests run natively with `cargo test -p timecho-web`.

mod api;
mod app;
mod components;
mod hooks;
pub mod state;

use wasm_bindgen::prelude::*;

pub use app::App;

/// Renders the page into `#app`, replacing its "loading" placeholder, or into
/// `<body>` when the host page has no such element.
#[wasm_bindgen(start)]
pub fn start() {
    let root = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("app"));
    match root {
        Some(root) => {
            root.set_inner_html("");
            yew::Renderer::<App>::with_root(root).render();
        }
        None => {
            yew::Renderer::<App>::new().render();
        }
    }
}

/// This device's clock, in nanoseconds since the epoch: the page's start by
/// the wall clock plus the monotonic time since, so that a clock step while
/// the page is open does not look like a round trip. Sub-millisecond, unlike
/// `Date.now()`.
fn now_nanos() -> i64 {
    let Some(performance) = web_sys::window().and_then(|w| w.performance()) else {
        return (js_sys::Date::now() * 1e6) as i64;
    };
    ((performance.time_origin() + performance.now()) * 1e6) as i64
}

/// A browser exception as text for people.
fn js_reason(err: JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "the browser gave no reason".into())
}
