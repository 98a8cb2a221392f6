//! The timecho chat page: type a line, see it come back with the server's time.
//!
//! Built for wasm32 by `cargo xtask web`; `state` is plain Rust
//! so its tests run natively with `cargo test -p timecho-web`.

mod api;
mod app;
mod browser;
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
