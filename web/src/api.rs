//! The gateway's API (`timecho_shared::api`: `/api/config`, `/api/session`,
//! `/api/login`, `/api/logout`) over `fetch`. The bodies are the shared types,
//! which the server serialises: the browser parses and writes the JSON
//! (`JSON.parse`, `JSON.stringify`) and serde-wasm-bindgen moves it to and
//! from those types, so no JSON library is compiled into the wasm (serde_json
//! would cost 12 KiB of brotli, this 4). What the answers mean is decided in
//! `state`, where it is tested.

use js_sys::JSON;
use serde::de::DeserializeOwned;
use timecho_shared::api::{path, LoginRequest, ServerConfig};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use crate::browser::js_reason;
use crate::state::ApiReply;

/// `GET /api/config`: the server's limits and stamp layout. `Err` when there
/// is no such answer (an older gateway, a proxy's error page).
pub async fn config() -> Result<ServerConfig, String> {
    let reply = call("GET", path::CONFIG, None).await?;
    if !(200..300).contains(&reply.status) {
        return Err(format!("the server answered HTTP {}", reply.status));
    }
    from_json(&reply.body).map_err(|e| format!("the answer is not the server's settings: {e}"))
}

/// `GET /api/session`: whether sign-in is on, and who is signed in.
pub async fn session() -> Result<ApiReply, String> {
    call("GET", path::SESSION, None).await
}

/// `POST /api/login`: on success the browser keeps the session cookie, which
/// it then sends with the WebSocket upgrade.
pub async fn login(user: &str, password: &str) -> Result<ApiReply, String> {
    let body = LoginRequest {
        user: user.into(),
        password: password.into(),
    };
    let body = serde_wasm_bindgen::to_value(&body).map_err(|e| e.to_string())?;
    let body = JSON::stringify(&body).map_err(js_reason)?;
    call("POST", path::LOGIN, Some(String::from(body))).await
}

/// `POST /api/logout`: ends the session and clears its cookie.
pub async fn logout() -> Result<ApiReply, String> {
    call("POST", path::LOGOUT, None).await
}

/// One request; `Err` only when there was no answer at all.
async fn call(method: &str, path: &str, json: Option<String>) -> Result<ApiReply, String> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(json) = &json {
        init.set_body(&JsValue::from_str(json));
    }
    let request = Request::new_with_str_and_init(path, &init).map_err(js_reason)?;
    let headers = request.headers();
    headers
        .set("accept", "application/json")
        .map_err(js_reason)?;
    if json.is_some() {
        headers
            .set("content-type", "application/json")
            .map_err(js_reason)?;
    }
    let window = web_sys::window().ok_or("this page has no window")?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(js_reason)?
        .dyn_into()
        .map_err(js_reason)?;
    let body = JsFuture::from(response.text().map_err(js_reason)?)
        .await
        .map_err(js_reason)?
        .as_string()
        .unwrap_or_default();
    Ok(ApiReply {
        status: response.status(),
        // Refusals in plain text (or a proxy's error page) have no session.
        session: from_json(&body).ok(),
        body,
    })
}

/// One of the API's bodies from its JSON text.
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let value = JSON::parse(text).map_err(js_reason)?;
    serde_wasm_bindgen::from_value(value).map_err(|e| e.to_string())
}
