//! The gateway's sign-in API (`/api/session`, `/api/login`, `/api/logout`)
//! over `fetch`. The browser parses the JSON (`JSON.parse`), which keeps a
//! JSON library out of the wasm; what the answers mean is decided in
//! `state::access`, where it is tested.

use js_sys::{Object, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use crate::js_reason;
use crate::state::ApiReply;

/// `GET /api/session`: whether sign-in is on, and who is signed in.
pub async fn session() -> Result<ApiReply, String> {
    call("GET", "/api/session", None).await
}

/// `POST /api/login`: on success the browser keeps the session cookie, which
/// it then sends with the WebSocket upgrade.
pub async fn login(user: &str, password: &str) -> Result<ApiReply, String> {
    let body = Object::new();
    Reflect::set(&body, &"user".into(), &user.into()).map_err(js_reason)?;
    Reflect::set(&body, &"password".into(), &password.into()).map_err(js_reason)?;
    let body = JSON::stringify(&body).map_err(js_reason)?;
    call("POST", "/api/login", Some(String::from(body))).await
}

/// `POST /api/logout`: ends the session and clears its cookie.
pub async fn logout() -> Result<ApiReply, String> {
    call("POST", "/api/logout", None).await
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
    Ok(read_reply(response.status(), body))
}

/// The fields of a JSON answer; a body that is not JSON leaves them `None`.
fn read_reply(status: u16, body: String) -> ApiReply {
    let json = JSON::parse(&body).ok().filter(JsValue::is_object);
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| Reflect::get(j, &JsValue::from_str(name)).ok())
    };
    ApiReply {
        status,
        auth: field("auth").and_then(|v| v.as_bool()),
        user: field("user").and_then(|v| v.as_string()),
        reason: field("reason").and_then(|v| v.as_string()),
        body,
    }
}
