//! Who may use the page's WebSocket: people who signed in (a session cookie),
//! and scripts with a bearer token or HTTP Basic credentials.
//!
//! Browsers cannot set headers on a WebSocket, so the page signs in with a form
//! (`POST /api/login`) and gets a `HttpOnly; SameSite=Strict` cookie (`Secure`
//! under TLS) that the browser sends with the upgrade. Secrets never appear in
//! a URL or a log line.
//!
//! A password or token attempt is first counted against its client
//! (`limiter`), then given one of a few password-check slots (`credentials`),
//! and only then checked, so that neither a flood from one address nor one
//! from many can make the server run more argon2 checks than it has cores.
//! Session cookies are not counted: looking one up is cheap.

mod credentials;
mod limiter;
mod sessions;
mod tokens;

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use credentials::{Busy, Credentials};
use limiter::{Limiter, RateLimited};
use sessions::Sessions;
use tokens::{unix_now, Claims, SessionKeys};

pub use credentials::{hash_password, AuthFileError, AuthSource};
pub use sessions::{Ended, SessionEnd};
pub use tokens::KeyError;

pub const COOKIE_NAME: &str = "timecho_session";
/// How long a sign-in lasts, however often its token is renewed.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How sessions are signed and how long a token lasts.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings<'a> {
    /// The key file shared by instances; `None`: a random key of this process.
    pub key: Option<&'a Path>,
    /// How long one token is accepted (`--token-lifetime`). The open page
    /// renews it at a third of that (`GET /api/session`); a sign-out is
    /// honoured by every instance within this bound, at once by the one that
    /// sees it.
    pub token_lifetime: Duration,
}
/// Password attempts (right or wrong) and wrong tokens one client may send in a minute.
const ATTEMPTS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(5).unwrap();
/// Bounds on the in-memory tables, so a flood cannot grow them without limit.
const MAX_SESSIONS: usize = 100_000;
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Why a request was not let in; the text is shown to the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoCredentials,
    BadCredentials,
    RateLimited,
    /// Every password-check slot was taken; nothing was checked.
    Busy,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::NoCredentials => "sign in first",
            Denied::BadCredentials => "wrong user name or password",
            Denied::RateLimited => "too many sign-in attempts; wait a minute",
            Denied::Busy => "sign-in is busy; try again in a moment",
        }
    }
}

impl From<RateLimited> for Denied {
    fn from(_: RateLimited) -> Denied {
        Denied::RateLimited
    }
}

impl From<Busy> for Denied {
    fn from(_: Busy) -> Denied {
        Denied::Busy
    }
}

/// Why sign-in could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

pub struct Auth {
    credentials: Credentials,
    limiter: Limiter,
    sessions: Sessions,
    keys: SessionKeys,
    token_lifetime: Duration,
    /// Mark cookies `Secure` (the page is served over TLS).
    pub secure_cookies: bool,
}

impl Auth {
    /// Reads the credentials; sign-in events are counted in `metrics`.
    /// Session tokens are signed with the key in `session.key`, shared by the
    /// instances that should honour each other's sign-ins, or with a random
    /// key of this process's own.
    pub fn load(
        sources: &[AuthSource],
        session: SessionSettings<'_>,
        secure_cookies: bool,
        metrics: &Metrics,
    ) -> Result<Auth, AuthError> {
        // One argon2 check per core at a time: more would only queue for CPU
        // while each holds its ~19 MiB.
        let check_slots = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Ok(Auth {
            credentials: Credentials::load(
                sources,
                check_slots,
                metrics.signin_verifications.clone(),
                metrics.signin_busy.clone(),
            )?,
            limiter: Limiter::new(
                ATTEMPTS_PER_MINUTE,
                MAX_TRACKED_CLIENTS,
                metrics.signin_rate_limited.clone(),
            ),
            sessions: Sessions::new(MAX_SESSIONS, SESSION_LIFETIME),
            keys: SessionKeys::load(session.key, SESSION_LIFETIME)?,
            token_lifetime: session.token_lifetime,
            secure_cookies,
        })
    }

    /// Checks a request to `/ws` or `/api/session`: session cookie, bearer
    /// token, or Basic credentials. Returns the user's name.
    pub async fn authorize(&self, headers: &HeaderMap, client: IpAddr) -> Result<String, Denied> {
        if let Some(claims) = self.session(headers) {
            return Ok(claims.user);
        }
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(Denied::NoCredentials);
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            // A token costs one hash to check, so a right one is let in at once
            // (scripts open sockets often); only wrong ones count, against guessing.
            if self.credentials.token_ok(token.trim()) {
                return Ok("token".to_owned());
            }
            self.limiter.attempt(client)?;
            return Err(Denied::BadCredentials);
        }
        // A password costs an argon2 check: the attempt counts before it starts.
        self.limiter.attempt(client)?;
        let decoded = value
            .strip_prefix("Basic ")
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|d| String::from_utf8(d).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(Denied::BadCredentials);
        };
        self.check_password(user, password).await?;
        Ok(user.to_owned())
    }

    /// `POST /api/login`: on success, the `Set-Cookie` value of a new session.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<String, Denied> {
        self.limiter.attempt(client)?;
        self.check_password(user, password).await?;
        let claims = Claims::new(user, unix_now(), self.token_lifetime);
        Ok(self.cookie(&self.keys.sign(&claims), self.token_lifetime.as_secs()))
    }

    /// A fresh token for the session this request's cookie names, while it
    /// lasts: the open page asks every minute, so its token never expires
    /// under it, while a copy of the cookie taken elsewhere soon does.
    pub fn renew(&self, headers: &HeaderMap) -> Option<String> {
        let claims = self.session(headers)?;
        let renewed = claims.renewed(
            unix_now(),
            self.token_lifetime,
            self.sessions.end_time(&claims),
        );
        let max_age = renewed.expires.saturating_sub(unix_now());
        Some(self.cookie(&self.keys.sign(&renewed), max_age))
    }

    /// How long one token lasts: the page renews at a third of it.
    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// SIGHUP: re-reads the session key file, if there is one.
    pub fn reload_key(&self) -> Result<bool, KeyError> {
        self.keys.reload()
    }

    /// Whether the session key comes from a file (and so SIGHUP reloads it).
    pub fn key_is_reloadable(&self) -> bool {
        self.keys.source().is_some()
    }

    /// The live session this request's cookie carries a valid token of.
    fn session(&self, headers: &HeaderMap) -> Option<Claims> {
        let now = unix_now();
        let claims = self.keys.verify(session_cookie(headers)?, now)?;
        self.sessions.is_live(&claims, now).then_some(claims)
    }

    /// `POST /api/logout`: ends the session, and so every WebSocket opened
    /// with it; returns the cookie that clears it.
    pub fn logout(&self, headers: &HeaderMap) -> String {
        if let Some(claims) = self.session(headers) {
            self.sessions.end(&claims);
        }
        self.cookie("", 0)
    }

    /// When the session this request's cookie names ends (sign-out, eviction
    /// or expiry), for a WebSocket opened with it to close then.
    pub fn session_ends(&self, headers: &HeaderMap) -> Option<SessionEnd> {
        Some(self.sessions.end_of(&self.session(headers)?))
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<(), Denied> {
        match self.credentials.password_ok(user, password).await? {
            true => Ok(()),
            false => Err(Denied::BadCredentials),
        }
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )
    }
}

/// Resolves when `session` ends, saying how; never, when there is none (a
/// script signed in with a token or a password has nothing to be signed out of).
pub async fn signed_out(session: Option<SessionEnd>) -> Ended {
    match session {
        Some(end) => end.ended().await,
        None => std::future::pending().await,
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn auth() -> (Auth, Arc<Metrics>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("timecho-signin-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        let tokens = dir.join("tokens");
        std::fs::write(&users, hash_password("ada", "lovelace").unwrap() + "\n").unwrap();
        std::fs::write(&tokens, "# scripts\ns3cret-token\n").unwrap();
        let metrics = Arc::new(Metrics::new());
        let auth = Auth::load(
            &[AuthSource::Basic(users), AuthSource::Token(tokens)],
            SessionSettings {
                key: None,
                token_lifetime: TOKEN_LIFETIME,
            },
            false,
            &metrics,
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (auth, metrics)
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            name.parse::<axum::http::HeaderName>().unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    fn basic(user_password: &str) -> HeaderMap {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        headers("authorization", &format!("Basic {encoded}"))
    }

    const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    /// The cookie header a browser would send back after `Set-Cookie: set_cookie`.
    fn cookie_of(set_cookie: &str) -> HeaderMap {
        headers("cookie", set_cookie.split(';').next().unwrap())
    }

    #[tokio::test]
    async fn login_gives_a_session_cookie_that_authorizes_until_logout() {
        let (a, _) = auth();
        let cookie = a.login("ada", "lovelace", CLIENT).await.unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let h = cookie_of(&cookie);
        assert_eq!(a.authorize(&h, CLIENT).await, Ok("ada".to_owned()));
        a.logout(&h);
        assert_eq!(a.authorize(&h, CLIENT).await, Err(Denied::NoCredentials));
    }

    #[tokio::test]
    async fn renewal_gives_a_fresh_token_of_the_same_session_until_sign_out() {
        let (a, _) = auth();
        let first = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let renewed = a.renew(&first).expect("a live session renews");
        assert!(
            renewed.contains(&format!("Max-Age={}", TOKEN_LIFETIME.as_secs())),
            "{renewed}"
        );
        let second = cookie_of(&renewed);
        assert_eq!(a.authorize(&second, CLIENT).await, Ok("ada".to_owned()));
        // Signing out with either token ends the session for both.
        a.logout(&second);
        assert_eq!(
            a.authorize(&first, CLIENT).await,
            Err(Denied::NoCredentials)
        );
        assert_eq!(a.renew(&first), None);
        assert_eq!(a.renew(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn tokens_and_basic_credentials_work_for_scripts() {
        let (a, _) = auth();
        assert!(a
            .authorize(&headers("authorization", "Bearer s3cret-token"), CLIENT)
            .await
            .is_ok());
        assert_eq!(
            a.authorize(&basic("ada:lovelace"), CLIENT).await,
            Ok("ada".to_owned())
        );
        assert_eq!(
            a.authorize(&headers("authorization", "Bearer nope"), CLIENT)
                .await,
            Err(Denied::BadCredentials)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_wrong_passwords_from_one_address_get_five_checks_at_most() {
        let (a, metrics) = auth();
        let a = Arc::new(a);
        let attempts: Vec<_> = (0..50)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.login("ada", "wrong", CLIENT).await })
            })
            .collect();
        let mut refused = Vec::new();
        for attempt in attempts {
            refused.push(attempt.await.unwrap().unwrap_err());
        }
        let checks = metrics.signin_verifications.get();
        assert!(checks <= 5, "{checks} password checks");
        let rate_limited = refused.iter().filter(|d| **d == Denied::RateLimited);
        assert_eq!(rate_limited.count(), 45, "{refused:?}");
        assert_eq!(metrics.signin_rate_limited.get(), 45);
        assert!(refused.iter().all(|d| matches!(
            d,
            Denied::BadCredentials | Denied::Busy | Denied::RateLimited
        )));
        // Even the right password is refused now, before any check...
        assert_eq!(
            a.login("ada", "lovelace", CLIENT).await,
            Err(Denied::RateLimited)
        );
        assert_eq!(metrics.signin_verifications.get(), checks);
        // ...but other addresses are not affected.
        assert!(a.login("ada", "lovelace", OTHER).await.is_ok());
    }

    #[tokio::test]
    async fn passwords_and_wrong_tokens_count_but_right_tokens_and_cookies_do_not() {
        let (a, _) = auth();
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        assert!(a.authorize(&basic("ada:lovelace"), CLIENT).await.is_ok());
        let wrong = headers("authorization", "Bearer nope");
        for _ in 0..3 {
            assert_eq!(
                a.authorize(&wrong, CLIENT).await,
                Err(Denied::BadCredentials)
            );
        }
        // Five attempts made: guesses and passwords are refused now...
        assert_eq!(a.authorize(&wrong, CLIENT).await, Err(Denied::RateLimited));
        assert_eq!(
            a.authorize(&basic("ada:lovelace"), CLIENT).await,
            Err(Denied::RateLimited)
        );
        // ...while the right token and the session cookie cost nothing.
        let right = headers("authorization", "Bearer s3cret-token");
        for _ in 0..20 {
            assert_eq!(a.authorize(&right, CLIENT).await, Ok("token".to_owned()));
            assert_eq!(a.authorize(&cookie, CLIENT).await, Ok("ada".to_owned()));
        }
        let nothing = HeaderMap::new();
        assert_eq!(
            a.authorize(&nothing, CLIENT).await,
            Err(Denied::NoCredentials),
            "asking without credentials is no attempt"
        );
    }

    #[tokio::test]
    async fn an_attempt_finding_every_check_slot_taken_is_busy_at_once() {
        let (a, metrics) = auth();
        let taken = a.credentials.take_all_check_slots();
        assert_eq!(a.login("ada", "lovelace", CLIENT).await, Err(Denied::Busy));
        assert_eq!(
            a.authorize(&basic("ada:lovelace"), CLIENT).await,
            Err(Denied::Busy)
        );
        assert_eq!(metrics.signin_busy.get(), 2);
        assert_eq!(metrics.signin_verifications.get(), 0);
        drop(taken);
        assert!(a.login("ada", "lovelace", CLIENT).await.is_ok());
    }

    #[tokio::test]
    async fn logout_ends_the_sessions_open_sockets() {
        let (a, _) = auth();
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let end = a.session_ends(&cookie).expect("a live session");
        let ended = tokio::spawn(signed_out(Some(end)));
        tokio::task::yield_now().await;
        assert!(!ended.is_finished());
        a.logout(&cookie);
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("ended at logout")
            .unwrap();
        assert!(a.session_ends(&cookie).is_none());
        let token = headers("authorization", "Bearer s3cret-token");
        assert!(
            a.session_ends(&token).is_none(),
            "no session, nothing to end"
        );
    }
}
