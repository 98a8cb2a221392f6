//! The gateway's API (`timecho_shared::api`: `/api/config`, `/api/session`,
//! `/api/login`, `/api/logout`) over `fetch`. The browser parses the JSON
//! (`JSON.parse`) and the fields are read by the contract's names, which keeps
//! a JSON library out of the wasm; what the answers mean is decided in
//! `state`, where it is tested.

use js_sys::{Array, Object, Reflect, JSON};
use timecho_shared::api::{path, LoginRequest, ServerConfig, SessionInfo, StampInfo};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use crate::js_reason;
use crate::state::ApiReply;

/// `GET /api/config`: the server's limits and stamp layout. `Err` when there
/// is no such answer (an older gateway, a proxy's error page).
pub async fn config() -> Result<ServerConfig, String> {
    let reply = call("GET", path::CONFIG, None).await?;
    if !(200..300).contains(&reply.status) {
        return Err(format!("the server answered HTTP {}", reply.status));
    }
    let json = Json::parse(&reply.body).ok_or("the answer is not a JSON object")?;
    let stamp = json.object(ServerConfig::STAMP)?;
    Ok(ServerConfig {
        max_line: json.size(ServerConfig::MAX_LINE)?,
        max_frame: json.size(ServerConfig::MAX_FRAME)?,
        stamp: StampInfo {
            format: stamp.string(StampInfo::FORMAT)?,
            precision: stamp.string(StampInfo::PRECISION)?,
            utc: stamp.bool(StampInfo::UTC)?,
            utc_offset_seconds: stamp.offset(StampInfo::UTC_OFFSET_SECONDS)?,
        },
        subprotocols: json.strings(ServerConfig::SUBPROTOCOLS)?,
        auth: json.bool(ServerConfig::AUTH)?,
    })
}

/// `GET /api/session`: whether sign-in is on, and who is signed in.
pub async fn session() -> Result<ApiReply, String> {
    call("GET", path::SESSION, None).await
}

/// `POST /api/login`: on success the browser keeps the session cookie, which
/// it then sends with the WebSocket upgrade.
pub async fn login(user: &str, password: &str) -> Result<ApiReply, String> {
    let body = Object::new();
    Reflect::set(&body, &LoginRequest::USER.into(), &user.into()).map_err(js_reason)?;
    Reflect::set(&body, &LoginRequest::PASSWORD.into(), &password.into()).map_err(js_reason)?;
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
        session: Json::parse(&body).and_then(|j| j.session()),
        body,
    })
}

/// A JSON object as the browser parsed it.
struct Json(JsValue);

impl Json {
    fn parse(text: &str) -> Option<Json> {
        JSON::parse(text).ok().filter(JsValue::is_object).map(Json)
    }

    fn get(&self, name: &str) -> Option<JsValue> {
        Reflect::get(&self.0, &JsValue::from_str(name))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    fn field<T>(&self, name: &str, read: impl FnOnce(JsValue) -> Option<T>) -> Result<T, String> {
        self.get(name)
            .and_then(read)
            .ok_or_else(|| format!("the answer has no valid {name:?}"))
    }

    fn string(&self, name: &str) -> Result<String, String> {
        self.field(name, |v| v.as_string())
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        self.field(name, |v| v.as_bool())
    }

    /// A byte count: a whole number, at least 0.
    fn size(&self, name: &str) -> Result<usize, String> {
        self.field(name, |v| {
            v.as_f64()
                .filter(|n| n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(n))
                .map(|n| n as usize)
        })
    }

    /// Seconds east of UTC: a whole number within a day.
    fn offset(&self, name: &str) -> Result<i32, String> {
        self.field(name, |v| {
            v.as_f64()
                .filter(|n| n.fract() == 0.0 && n.abs() <= 86_400.0)
                .map(|n| n as i32)
        })
    }

    fn object(&self, name: &str) -> Result<Json, String> {
        self.field(name, |v| v.is_object().then_some(Json(v)))
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        self.field(name, |v| {
            v.dyn_into::<Array>()
                .ok()?
                .iter()
                .map(|s| s.as_string())
                .collect()
        })
    }

    /// The session format, when this is one: `auth` is always there, `user`
    /// and `reason` when they apply.
    fn session(&self) -> Option<SessionInfo> {
        Some(SessionInfo {
            auth: self.bool(SessionInfo::AUTH).ok()?,
            user: self.string(SessionInfo::USER).ok(),
            reason: self.string(SessionInfo::REASON).ok(),
        })
    }
}
