//! What the page asks of the browser itself, beneath every other module: the
//! device's clock, and a browser exception as text.

use wasm_bindgen::prelude::*;

/// This device's clock, in nanoseconds since the epoch: the page's start by
/// the wall clock plus the monotonic time since, so that a clock step while
/// the page is open does not look like a round trip. Sub-millisecond, unlike
/// `Date.now()`.
pub fn now_nanos() -> i64 {
    let Some(performance) = web_sys::window().and_then(|w| w.performance()) else {
        return (js_sys::Date::now() * 1e6) as i64;
    };
    ((performance.time_origin() + performance.now()) * 1e6) as i64
}

/// A browser exception as text for people.
pub fn js_reason(err: JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| "the browser gave no reason".into())
}
