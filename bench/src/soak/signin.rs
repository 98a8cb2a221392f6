//! Signing in for the soak: one sign-in whose cookie the WebSocket traffic
//! uses (renewed as the page renews it), and cycles of sign-in, a signed-in
//! socket, and sign-out, which must close that socket with 1008.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timecho_shared::api::{path, LoginRequest};
use timecho_shared::relay::close_code;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::http;
use super::tally::Tally;
use super::{ws_client, Ctx};

/// How often the traffic's cookie is renewed; far below the default token lifetime (10 m).
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// When the first sign-in cycle runs.
const FIRST_CYCLE: Duration = Duration::from_secs(1);

pub struct SignIn {
    http: SocketAddr,
    user: String,
    password: String,
    limit: Duration,
    /// `name=value` of the session cookie.
    cookie: Mutex<String>,
}

impl SignIn {
    pub async fn start(
        http: SocketAddr,
        user: String,
        password: String,
        limit: Duration,
    ) -> Result<SignIn, String> {
        let mut signin = SignIn {
            http,
            user,
            password,
            limit,
            cookie: Mutex::new(String::new()),
        };
        let cookie = signin.login().await?;
        *signin.cookie.get_mut().unwrap_or_else(|p| p.into_inner()) = cookie;
        Ok(signin)
    }

    pub fn cookie(&self) -> String {
        self.cookie
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// `POST /api/login` as the page sends it; the new session's cookie.
    async fn login(&self) -> Result<String, String> {
        let body = serde_json::to_string(&LoginRequest {
            user: self.user.clone(),
            password: self.password.clone(),
        })
        .map_err(|e| e.to_string())?;
        let headers = [
            format!("Origin: http://{}", self.http),
            "Content-Type: application/json".to_owned(),
        ];
        let answer = http::request(self.http, "POST", path::LOGIN, &headers, &body, self.limit)
            .await
            .map_err(|e| format!("sign-in: {e}"))?;
        if answer.status != 200 {
            return Err(format!(
                "sign-in refused: HTTP {} {}",
                answer.status,
                answer.body.trim()
            ));
        }
        session_cookie(&answer).ok_or_else(|| "sign-in answered without a cookie".to_owned())
    }

    /// `GET /api/session` with `cookie`: the renewed cookie.
    async fn renew(&self, cookie: &str) -> Result<String, String> {
        let answer = http::request(
            self.http,
            "GET",
            path::SESSION,
            &[format!("Cookie: {cookie}")],
            "",
            self.limit,
        )
        .await
        .map_err(|e| format!("renewal: {e}"))?;
        match (answer.status, session_cookie(&answer)) {
            (200, Some(renewed)) => Ok(renewed),
            (status, _) => Err(format!("renewal answered HTTP {status} without a cookie")),
        }
    }

    async fn logout(&self, cookie: &str) -> Result<(), String> {
        let answer = http::request(
            self.http,
            "POST",
            path::LOGOUT,
            &[format!("Cookie: {cookie}")],
            "",
            self.limit,
        )
        .await
        .map_err(|e| format!("sign-out: {e}"))?;
        match answer.status {
            200 | 204 => Ok(()),
            status => Err(format!("sign-out answered HTTP {status}")),
        }
    }
}

/// `name=value` of a Set-Cookie header.
fn session_cookie(answer: &http::Answer) -> Option<String> {
    let set = answer.header("set-cookie")?;
    let pair = set.split(';').next()?.trim();
    pair.contains('=').then(|| pair.to_owned())
}

/// Keeps the traffic's cookie fresh until the run stops.
pub async fn renew_until_stopped(ctx: Arc<Ctx>) {
    let Some(signin) = &ctx.signin else { return };
    let mut tick = interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match signin.renew(&signin.cookie()).await {
            Ok(renewed) => {
                *signin.cookie.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
                Tally::add(&ctx.tally.renewals);
            }
            Err(e) => ctx.tally.error(e),
        }
    }
}

/// A sign-in, a signed-in socket, a sign-out, every `every`.
pub async fn cycles(ctx: Arc<Ctx>, every: Duration) {
    let Some(signin) = &ctx.signin else { return };
    // The first cycle comes early, inside the warm-up: each password check takes
    // about 19 MiB, which the allocator may keep, and that step is not a leak.
    let mut tick = interval_at(Instant::now() + FIRST_CYCLE, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = cycle(&ctx, signin).await {
            ctx.tally.error(format!("sign-in cycle: {e}"));
        }
    }
}

async fn cycle(ctx: &Ctx, signin: &SignIn) -> Result<(), String> {
    let cookie = signin.login().await?;
    Tally::add(&ctx.tally.sign_ins);
    let mut ws = ws_client::connect(&ctx.targets.ws, Some(&cookie), ctx.timeout).await?;
    ws_client::exchange(&mut ws, "soak signed in", ctx.timeout)
        .await
        .map_err(|e| e.describe())?;
    signin.logout(&cookie).await?;
    Tally::add(&ctx.tally.sign_outs);
    ws_client::wait_close(&mut ws, close_code::POLICY, ctx.timeout)
        .await
        .map_err(|e| format!("the signed-out socket: {e}"))
}
