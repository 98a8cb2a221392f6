//! Who may use the page's WebSocket: people who signed in (a session cookie),
//! and scripts with a bearer token or HTTP Basic credentials.
//!
//! Browsers cannot set headers on a WebSocket, so the page signs in with a form
//! (`POST /api/login`) and gets a `HttpOnly; SameSite=Strict` cookie (`Secure`
//! under TLS) that the browser sends with the upgrade. Secrets never appear in
//! a URL or a log line.
//!
//! A password attempt is first counted against its client (`limiter`), then
//! given one of a few password-check slots (`credentials`), and only then
//! checked, so that neither a flood from one address nor one from many can
//! make the server run more argon2 checks than it has cores. Wrong bearer
//! tokens are counted too, but in a limiter of their own: they cost no argon2
//! check, so a flood of them (cheap to send from many addresses) must not fill
//! the table that guards the checks and shut out people signing in.
//! Session cookies are not counted: looking one up is cheap (a signature, two
//! map lookups and, with `--session-store`, one round trip to the store).

mod credentials;
mod key_strength;
mod limiter;
mod reload;
mod sessions;
mod sign_outs;
mod store;
mod store_url;
mod tokens;

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::DropGuard;

use crate::metrics::Metrics;
use credentials::{Busy, Credentials};
use limiter::{Allowance, Limiter, RateLimited};
use sessions::Sessions;
use store::{SessionStore, Unavailable, CONNECT_DEADLINE};
use tokens::{unix_now, Claims, SessionKeys, CLOCK_SKEW};

pub use credentials::{hash_password, AuthFileError, AuthSource};
pub use sessions::{Ended, SessionEnd};
pub use store::StoreError;
pub use store_url::StoreUrl;
pub use tokens::KeyError;

/// The session cookie's name over plain HTTP.
pub const COOKIE_NAME: &str = "timecho_session";
/// Its name under TLS: browsers take a `__Host-` cookie only from a secure
/// page, for this host alone (no `Domain`) and for `Path=/`, so neither a
/// sibling subdomain nor a plain-HTTP answer can plant one.
pub const SECURE_COOKIE_NAME: &str = "__Host-timecho_session";
/// Session cookies of one request looked at, at most: a browser sends one or
/// two (a stale one beside a fresh one), and each costs a signature check.
const MAX_SESSION_COOKIES: usize = 4;
/// How long a sign-in lasts, however often its token is renewed.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How sessions are signed, how long a token lasts, and where sign-outs are
/// shared.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings<'a> {
    /// The key file shared by instances; `None`: a random key of this process.
    pub key: Option<&'a Path>,
    /// How long one token is accepted (`--token-lifetime`). The open page
    /// renews it at a third of that (`GET /api/session`).
    pub token_lifetime: Duration,
    /// Where sign-outs are written and read (`--session-store`), so that every
    /// instance refuses a signed-out session at once. `None`: only the
    /// instance that sees a sign-out knows of it; the others refuse the
    /// session when its last token expires, if nobody renews it there.
    pub store: Option<&'a StoreUrl>,
}
/// Password attempts (right or wrong) one client may make in a minute, and,
/// counted apart, wrong tokens.
const ATTEMPTS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(5).unwrap();
/// What all clients share when a limiter's table is full and has no room for
/// them: enough that someone new still gets in (slowly) while a flood fills
/// it, few enough that the flood's own newcomers gain little from it.
const STRANGER_ATTEMPTS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(30).unwrap();
/// Bounds on the in-memory tables, so a flood cannot grow them without limit.
const MAX_SESSIONS: usize = 100_000;
const MAX_TRACKED_CLIENTS: usize = 10_000;
const ATTEMPTS: Allowance = Allowance {
    per_client: ATTEMPTS_PER_MINUTE,
    max_clients: MAX_TRACKED_CLIENTS,
    strangers: STRANGER_ATTEMPTS_PER_MINUTE,
};

/// Why a request was not let in; the text is shown to the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoCredentials,
    BadCredentials,
    RateLimited,
    /// Every password-check slot was taken; nothing was checked.
    Busy,
    /// The session store did not answer, so a session cookie could not be
    /// told apart from a signed-out one (or a sign-out could not be shared).
    StoreUnavailable,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::NoCredentials => "sign in first",
            Denied::BadCredentials => "wrong user name or password",
            Denied::RateLimited => "too many sign-in attempts; wait a minute",
            Denied::Busy => "sign-in is busy; try again in a moment",
            Denied::StoreUnavailable => "session store unavailable; try again in a moment",
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

impl From<Unavailable> for Denied {
    fn from(_: Unavailable) -> Denied {
        Denied::StoreUnavailable
    }
}

/// Why sign-in could not be set up (or reloaded).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a request was let in as, and the session its cookie carries, if it
/// came with one (scripts' tokens and passwords have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub user: String,
    pub holder: Holder,
    session: Option<Claims>,
}

/// Whose sign-in a request was let in with, for limits per sign-in: a user
/// (however they signed in), or one bearer token. Tokens have no names, so
/// each is known by its hash: one script's token must not count against
/// another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    User(String),
    Token([u8; 32]),
}

pub struct Auth {
    credentials: Credentials,
    /// Password attempts, each of which may cost an argon2 check.
    passwords: Limiter,
    /// Wrong bearer tokens, which cost one hash each.
    wrong_tokens: Limiter,
    sessions: Arc<Sessions>,
    keys: SessionKeys,
    store: Option<SessionStore>,
    /// Stops following the store's sign-outs when sign-in goes.
    _following: Option<DropGuard>,
    token_lifetime: Duration,
    /// Mark cookies `Secure` (the page is served over TLS).
    pub secure_cookies: bool,
}

impl Auth {
    /// Reads the credentials; sign-in events are counted in `metrics`.
    /// Session tokens are signed with the key in `session.key`, shared by the
    /// instances that should honour each other's sign-ins, or with a random
    /// key of this process's own. With `session.store`, connects to it (or
    /// fails, within a deadline), so a wrong address stops start-up.
    pub async fn load(
        sources: &[AuthSource],
        session: SessionSettings<'_>,
        secure_cookies: bool,
        metrics: &Metrics,
    ) -> Result<Auth, AuthError> {
        // One argon2 check per core at a time: more would only queue for CPU
        // while each holds its ~19 MiB.
        let check_slots = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        // The files first: they fail fast, and the store is worth waiting
        // for only when the rest is right.
        let credentials = Credentials::load(
            sources,
            check_slots,
            SESSION_LIFETIME,
            metrics.signin_verifications.clone(),
            metrics.signin_busy.clone(),
        )?;
        let keys = SessionKeys::load(session.key, session.token_lifetime)?;
        let sessions = Arc::new(Sessions::new(MAX_SESSIONS, SESSION_LIFETIME));
        let (store, following) = match session.store {
            Some(url) => {
                let failures = metrics.session_store_failures.clone();
                let (store, sign_outs) =
                    SessionStore::connect(url, CONNECT_DEADLINE, failures).await?;
                // Sign-outs on other instances close this one's sockets at once.
                let stop = tokio_util::sync::CancellationToken::new();
                let here = sessions.clone();
                tokio::spawn(sign_outs.follow(move |id| here.end_id(id), stop.clone()));
                (Some(store), Some(stop.drop_guard()))
            }
            None => (None, None),
        };
        Ok(Auth {
            credentials,
            passwords: Limiter::new(ATTEMPTS, metrics.signin_rate_limited.clone()),
            wrong_tokens: Limiter::new(ATTEMPTS, metrics.signin_rate_limited.clone()),
            sessions,
            keys,
            store,
            _following: following,
            token_lifetime: session.token_lifetime,
            secure_cookies,
        })
    }

    /// Checks a request to `/ws` or `/api/session`: session cookie, bearer
    /// token, or Basic credentials.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Authorized, Denied> {
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        match self.session(headers).await {
            Ok(Some(claims)) => {
                return Ok(Authorized {
                    user: claims.user.clone(),
                    holder: Holder::User(claims.user.clone()),
                    session: Some(claims),
                })
            }
            Ok(None) => {}
            // A script that also sent credentials is not held up by the store.
            Err(unavailable) if header.is_none() => return Err(unavailable.into()),
            Err(_) => {}
        }
        let Some(value) = header else {
            return Err(Denied::NoCredentials);
        };
        let script = |user: &str, holder: Holder| Authorized {
            user: user.to_owned(),
            holder,
            session: None,
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            // A token costs one hash to check, so a right one is let in at once
            // (scripts open sockets often); only wrong ones count, against guessing.
            let token = token.trim();
            if self.credentials.token_ok(token) {
                return Ok(script("token", Holder::Token(digest(token.as_bytes()))));
            }
            self.wrong_tokens.attempt(client)?;
            return Err(Denied::BadCredentials);
        }
        // A password costs an argon2 check: the attempt counts before it starts.
        self.passwords.attempt(client)?;
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
        Ok(script(user, Holder::User(user.to_owned())))
    }

    /// `POST /api/login`: on success, the `Set-Cookie` value of a new session.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<String, Denied> {
        self.passwords.attempt(client)?;
        self.check_password(user, password).await?;
        let claims = Claims::new(user, unix_now(), self.token_lifetime);
        Ok(self.cookie(&self.keys.sign(&claims), self.token_lifetime.as_secs()))
    }

    /// A fresh token for the session `who` was let in with, while it lasts:
    /// the open page asks every third of a token lifetime, so its token never
    /// expires under it, while a copy of the cookie taken elsewhere soon does.
    pub fn renew(&self, who: &Authorized) -> Option<String> {
        let claims = who.session.as_ref()?;
        let renewed = claims.renewed(
            unix_now(),
            self.token_lifetime,
            self.sessions.end_time(claims),
        );
        let max_age = renewed.expires.saturating_sub(unix_now());
        Some(self.cookie(&self.keys.sign(&renewed), max_age))
    }

    /// How long one token lasts: the page renews at a third of it.
    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// The live session this request's cookie carries a valid token of: its
    /// user still in the users file, signed out neither here nor (asking the
    /// store) anywhere else.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Claims>, Unavailable> {
        let now = unix_now();
        // A request may carry several (one planted beside the real one, or a
        // stale one beside a fresh one): the freshest that is valid decides,
        // not whichever comes first.
        let mut candidates = self.session_claims(headers, now);
        candidates.sort_by_key(|claims| std::cmp::Reverse(claims.expires));
        let mut unavailable = None;
        for claims in candidates {
            if !self.sessions.is_live(&claims, now)
                || !self
                    .credentials
                    .has_session_user(&claims.user, claims.signed_in)
            {
                continue;
            }
            if let Some(store) = &self.store {
                match store.is_revoked(&claims.session).await {
                    Ok(false) => {}
                    Ok(true) => {
                        // Remembered here, and this instance's sockets of it close now.
                        self.sessions.end(&claims);
                        continue;
                    }
                    Err(e) => {
                        unavailable = Some(e);
                        continue;
                    }
                }
            }
            return Ok(Some(claims));
        }
        unavailable.map_or(Ok(None), Err)
    }

    /// The claims of every session cookie of this request with a valid token.
    fn session_claims(&self, headers: &HeaderMap, now: u64) -> Vec<Claims> {
        session_cookies(headers, self.cookie_name())
            .take(MAX_SESSION_COOKIES)
            .filter_map(|token| self.keys.verify(token, now))
            .collect()
    }

    fn cookie_name(&self) -> &'static str {
        match self.secure_cookies {
            true => SECURE_COOKIE_NAME,
            false => COOKIE_NAME,
        }
    }

    /// `POST /api/logout`: ends the session, here and (through the store)
    /// everywhere, and so every WebSocket opened with it; returns the cookie
    /// that clears it. When the store cannot take the sign-out, the session
    /// is still ended here, and `StoreUnavailable` says to try again (the
    /// cookie is kept for that: a sign-out can be repeated).
    pub async fn logout(&self, headers: &HeaderMap) -> Result<String, Denied> {
        // Signed out here already is no reason to skip the store: this may be
        // the repeat of a sign-out the store missed.
        // Every session the request carries is ended: which one the person
        // meant cannot be told.
        for claims in self.session_claims(headers, unix_now()) {
            self.sessions.end(&claims);
            if let Some(store) = &self.store {
                let until = self.sessions.end_time(&claims) + CLOCK_SKEW.as_secs();
                store.revoke(&claims.session, until).await?;
            }
        }
        Ok(self.cookie("", 0))
    }

    /// When the session `who` was let in with ends (sign-out, removal of its
    /// user, eviction or expiry), for a WebSocket opened with it to close then.
    pub fn session_ends(&self, who: &Authorized) -> Option<SessionEnd> {
        Some(self.sessions.end_of(who.session.as_ref()?))
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<(), Denied> {
        match self.credentials.password_ok(user, password).await? {
            true => Ok(()),
            false => Err(Denied::BadCredentials),
        }
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let name = self.cookie_name();
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        // No Domain: a `__Host-` cookie must have none, and the plain one is
        // for this host alone too.
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
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

/// The values of every cookie named `name`, in the order sent.
fn session_cookies<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Sign-in's files, for a test to change and reload.
    struct Files {
        dir: PathBuf,
        users: PathBuf,
        tokens: PathBuf,
        key: PathBuf,
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn files() -> Files {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("timecho-signin-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Files {
            users: dir.join("users"),
            tokens: dir.join("tokens"),
            key: dir.join("session.key"),
            dir,
        };
        std::fs::write(
            &files.users,
            hash_password("ada", "lovelace").unwrap() + "\n",
        )
        .unwrap();
        std::fs::write(&files.tokens, "# scripts\ns3cret-token\n").unwrap();
        std::fs::write(&files.key, tokens::tests::strong_key()).unwrap();
        files
    }

    async fn auth_with(files: &Files) -> (Auth, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let auth = Auth::load(
            &[
                AuthSource::Basic(files.users.clone()),
                AuthSource::Token(files.tokens.clone()),
            ],
            SessionSettings {
                key: Some(&files.key),
                token_lifetime: TOKEN_LIFETIME,
                store: None,
            },
            false,
            &metrics,
        )
        .await
        .unwrap();
        (auth, metrics)
    }

    async fn auth() -> (Auth, Arc<Metrics>) {
        auth_with(&files()).await
    }

    /// The user a request is let in as.
    async fn user(a: &Auth, h: &HeaderMap) -> Result<String, Denied> {
        a.authorize(h, CLIENT).await.map(|who| who.user)
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
        let (a, _) = auth().await;
        let cookie = a.login("ada", "lovelace", CLIENT).await.unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let h = cookie_of(&cookie);
        assert_eq!(user(&a, &h).await, Ok("ada".to_owned()));
        a.logout(&h).await.unwrap();
        assert_eq!(user(&a, &h).await, Err(Denied::NoCredentials));
    }

    #[tokio::test]
    async fn under_tls_the_cookie_is_host_prefixed_secure_and_for_the_whole_host() {
        let (mut a, _) = auth().await;
        a.secure_cookies = true;
        let cookie = a.login("ada", "lovelace", CLIENT).await.unwrap();
        assert!(cookie.starts_with("__Host-timecho_session="), "{cookie}");
        assert!(
            cookie.contains("; Secure") && cookie.contains("; Path=/;"),
            "{cookie}"
        );
        assert!(!cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
        assert_eq!(user(&a, &cookie_of(&cookie)).await, Ok("ada".to_owned()));
        // The same token under the plain name, as a sibling subdomain or a
        // plain-HTTP answer could have set it, is not taken under TLS.
        let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
        let plain = headers("cookie", &format!("{COOKIE_NAME}={token}"));
        assert_eq!(user(&a, &plain).await, Err(Denied::NoCredentials));
        let cleared = a.logout(&cookie_of(&cookie)).await.unwrap();
        assert!(cleared.starts_with("__Host-timecho_session=;"), "{cleared}");
    }

    #[tokio::test]
    async fn of_two_session_cookies_the_valid_one_decides_whichever_comes_first() {
        let (a, _) = auth().await;
        let fresh = a.login("ada", "lovelace", CLIENT).await.unwrap();
        let fresh = fresh.split(';').next().unwrap();
        let signed_out = a.login("ada", "lovelace", CLIENT).await.unwrap();
        let signed_out = signed_out.split(';').next().unwrap();
        a.logout(&headers("cookie", signed_out)).await.unwrap();
        let bogus = format!("{COOKIE_NAME}=planted.by-someone");
        for pair in [
            format!("{bogus}; {fresh}"),
            format!("{fresh}; {bogus}"),
            format!("{signed_out}; {fresh}"),
            format!("{fresh}; {signed_out}"),
        ] {
            assert_eq!(
                user(&a, &headers("cookie", &pair)).await,
                Ok("ada".to_owned()),
                "{pair}"
            );
        }
        // Two Cookie headers are read alike.
        let mut two = headers("cookie", &bogus);
        two.append(COOKIE, HeaderValue::from_str(fresh).unwrap());
        assert_eq!(user(&a, &two).await, Ok("ada".to_owned()));
        assert_eq!(
            user(&a, &headers("cookie", &format!("{bogus}; {signed_out}"))).await,
            Err(Denied::NoCredentials),
            "nothing valid, nothing let in"
        );
    }

    #[tokio::test]
    async fn renewal_gives_a_fresh_token_of_the_same_session_until_sign_out() {
        let (a, _) = auth().await;
        let first = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let who = a.authorize(&first, CLIENT).await.unwrap();
        let renewed = a.renew(&who).expect("a live session renews");
        assert!(
            renewed.contains(&format!("Max-Age={}", TOKEN_LIFETIME.as_secs())),
            "{renewed}"
        );
        let second = cookie_of(&renewed);
        assert_eq!(user(&a, &second).await, Ok("ada".to_owned()));
        // Signing out with either token ends the session for both.
        a.logout(&second).await.unwrap();
        assert_eq!(user(&a, &first).await, Err(Denied::NoCredentials));
        let script = a
            .authorize(&headers("authorization", "Bearer s3cret-token"), CLIENT)
            .await
            .unwrap();
        assert_eq!(a.renew(&script), None, "a script has no session to renew");
    }

    #[tokio::test]
    async fn tokens_and_basic_credentials_work_for_scripts() {
        let (a, _) = auth().await;
        assert!(a
            .authorize(&headers("authorization", "Bearer s3cret-token"), CLIENT)
            .await
            .is_ok());
        assert_eq!(user(&a, &basic("ada:lovelace")).await, Ok("ada".to_owned()));
        assert_eq!(
            a.authorize(&headers("authorization", "Bearer nope"), CLIENT)
                .await,
            Err(Denied::BadCredentials)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_wrong_passwords_from_one_address_get_five_checks_at_most() {
        let (a, metrics) = auth().await;
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
    async fn passwords_and_wrong_tokens_count_apart_but_right_tokens_and_cookies_do_not() {
        let (a, _) = auth().await;
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        assert!(a.authorize(&basic("ada:lovelace"), CLIENT).await.is_ok());
        let wrong = headers("authorization", "Bearer nope");
        for _ in 0..5 {
            assert_eq!(
                a.authorize(&wrong, CLIENT).await,
                Err(Denied::BadCredentials)
            );
        }
        // Five wrong tokens: guesses are refused now, passwords are not...
        assert_eq!(a.authorize(&wrong, CLIENT).await, Err(Denied::RateLimited));
        // (Malformed ones count without an argon2 check, so that the test
        // is quick enough for no attempt to come back meanwhile.)
        for _ in 0..3 {
            assert_eq!(
                a.authorize(&basic("ada"), CLIENT).await,
                Err(Denied::BadCredentials)
            );
        }
        // ...until they have made five attempts of their own.
        assert_eq!(
            a.authorize(&basic("ada:lovelace"), CLIENT).await,
            Err(Denied::RateLimited)
        );
        // ...while the right token and the session cookie cost nothing.
        let right = headers("authorization", "Bearer s3cret-token");
        for _ in 0..20 {
            assert_eq!(user(&a, &right).await, Ok("token".to_owned()));
            assert_eq!(user(&a, &cookie).await, Ok("ada".to_owned()));
        }
        let nothing = HeaderMap::new();
        assert_eq!(
            a.authorize(&nothing, CLIENT).await,
            Err(Denied::NoCredentials),
            "asking without credentials is no attempt"
        );
    }

    #[tokio::test]
    async fn wrong_tokens_from_a_whole_table_of_clients_do_not_shut_out_passwords() {
        let (a, _) = auth().await;
        let wrong = headers("authorization", "Bearer nope");
        let client = |n: usize| IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + n as u32));
        for n in 0..MAX_TRACKED_CLIENTS {
            for _ in 0..5 {
                assert_eq!(
                    a.authorize(&wrong, client(n)).await,
                    Err(Denied::BadCredentials)
                );
            }
        }
        let stranger = client(MAX_TRACKED_CLIENTS + 1);
        assert!(a.login("ada", "lovelace", stranger).await.is_ok());
        // Token guessers the full table has no room for share a small allowance.
        let guesses = (0..100).map(|n| client(MAX_TRACKED_CLIENTS + 2 + n));
        let mut refused = 0;
        for guesser in guesses {
            refused += usize::from(a.authorize(&wrong, guesser).await == Err(Denied::RateLimited));
        }
        assert_eq!(refused, 100 - STRANGER_ATTEMPTS_PER_MINUTE.get() as usize);
    }

    #[tokio::test]
    async fn an_attempt_finding_every_check_slot_taken_is_busy_at_once() {
        let (a, metrics) = auth().await;
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
        let (a, _) = auth().await;
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let who = a.authorize(&cookie, CLIENT).await.unwrap();
        let end = a.session_ends(&who).expect("a live session");
        let ended = tokio::spawn(signed_out(Some(end)));
        tokio::task::yield_now().await;
        assert!(!ended.is_finished());
        a.logout(&cookie).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("ended at logout")
            .unwrap();
        assert_eq!(user(&a, &cookie).await, Err(Denied::NoCredentials));
        let token = headers("authorization", "Bearer s3cret-token");
        let script = a.authorize(&token, CLIENT).await.unwrap();
        assert!(
            a.session_ends(&script).is_none(),
            "no session, nothing to end"
        );
    }

    #[tokio::test]
    async fn a_user_removed_from_the_users_file_loses_their_sessions_at_reload() {
        let files = files();
        let (a, _) = auth_with(&files).await;
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let who = a.authorize(&cookie, CLIENT).await.unwrap();
        let socket = tokio::spawn(signed_out(a.session_ends(&who)));

        std::fs::write(
            &files.users,
            hash_password("alan", "turing").unwrap() + "\n",
        )
        .unwrap();
        let report = a.reload().unwrap();
        assert_eq!(
            report.to_string(),
            "session key unchanged, users reloaded (1), tokens reloaded (1), \
             1 user(s) removed: their sessions are refused (1 open here ended)"
        );
        tokio::time::timeout(Duration::from_secs(5), socket)
            .await
            .expect("the open socket ends at the reload")
            .unwrap();
        assert_eq!(user(&a, &cookie).await, Err(Denied::NoCredentials));
        assert!(
            a.login("alan", "turing", CLIENT).await.is_ok(),
            "new users work"
        );
    }

    #[tokio::test]
    async fn a_reload_with_a_bad_file_changes_nothing_and_names_the_file() {
        let files = files();
        let (a, _) = auth_with(&files).await;
        let cookie = cookie_of(&a.login("ada", "lovelace", CLIENT).await.unwrap());
        let key_before = std::fs::read(&files.key).unwrap();
        // A good new key and a users file without ada, but a tokens file
        // that cannot be read: nothing of it is taken.
        std::fs::write(&files.key, tokens::tests::strong_key()).unwrap();
        std::fs::write(
            &files.users,
            hash_password("alan", "turing").unwrap() + "\n",
        )
        .unwrap();
        std::fs::remove_file(&files.tokens).unwrap();
        let err = a.reload().unwrap_err().to_string();
        assert!(err.contains("tokens"), "{err}");
        assert_eq!(user(&a, &cookie).await, Ok("ada".to_owned()));
        // An empty users file is refused the same way, naming it.
        std::fs::write(&files.tokens, "s3cret-token\n").unwrap();
        std::fs::write(&files.users, "").unwrap();
        let err = a.reload().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: no users", files.users.display())),
            "{err}"
        );
        assert_eq!(user(&a, &cookie).await, Ok("ada".to_owned()));
        let token = headers("authorization", "Bearer s3cret-token");
        assert_eq!(user(&a, &token).await, Ok("token".to_owned()));
        // A weak key is refused the same way.
        std::fs::write(&files.tokens, "s3cret-token\n").unwrap();
        std::fs::write(&files.key, "a".repeat(32)).unwrap();
        assert!(matches!(
            a.reload(),
            Err(AuthError::Key(KeyError::Weak(..)))
        ));
        assert_eq!(user(&a, &cookie).await, Ok("ada".to_owned()));
        // Put right, it is taken: the key is new, and the old one still signs
        // live tokens for a token lifetime.
        std::fs::write(&files.key, tokens::tests::strong_key()).unwrap();
        assert_ne!(std::fs::read(&files.key).unwrap(), key_before);
        std::fs::write(
            &files.users,
            hash_password("ada", "lovelace").unwrap() + "\n",
        )
        .unwrap();
        let report = a.reload().unwrap();
        assert_eq!(report.key, reload::KeyReload::Replaced);
        assert_eq!(user(&a, &cookie).await, Ok("ada".to_owned()));
    }
}
