//! Who may use the page's WebSocket: people who signed in (a session cookie),
//! and scripts with a bearer token or HTTP Basic credentials.
//!
//! Browsers cannot set headers on a WebSocket, so the page signs in with a form
//! (`POST /api/login`) and gets a `HttpOnly; SameSite=Strict` cookie (`Secure`
//! under TLS) that the browser sends with the upgrade. Passwords are argon2
//! hashes; tokens and session ids are kept only as SHA-256 digests and compared
//! in constant time; secrets never appear in a URL or a log line. Failed
//! attempts are rate-limited per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use base64::Engine as _;
use password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const COOKIE_NAME: &str = "timecho_session";
/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed attempts allowed per address within `FAILURE_WINDOW`.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Bounds on the in-memory tables, so a flood cannot grow them without limit.
const MAX_SESSIONS: usize = 100_000;
const MAX_TRACKED_ADDRESSES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error(
        "--auth {0:?}: use basic:FILE (user:argon2-hash lines) or token:FILE (one token per line)"
    )]
    Spec(String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Where credentials come from, as given to `--auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    Basic(PathBuf),
    Token(PathBuf),
}

impl std::str::FromStr for AuthSource {
    type Err = AuthFileError;
    fn from_str(s: &str) -> Result<Self, AuthFileError> {
        match s.split_once(':') {
            Some(("basic", path)) if !path.is_empty() => Ok(AuthSource::Basic(path.into())),
            Some(("token", path)) if !path.is_empty() => Ok(AuthSource::Token(path.into())),
            _ => Err(AuthFileError::Spec(s.to_owned())),
        }
    }
}

/// Why a request was not let in; the text is shown to the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoCredentials,
    BadCredentials,
    RateLimited,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::NoCredentials => "sign in first",
            Denied::BadCredentials => "wrong user name or password",
            Denied::RateLimited => "too many failed attempts; wait a minute",
        }
    }
}

struct Session {
    user: String,
    expires: Instant,
}

struct Failures {
    count: u32,
    since: Instant,
}

pub struct Auth {
    /// user -> argon2 PHC hash string.
    users: HashMap<String, String>,
    /// SHA-256 of each accepted token.
    tokens: Vec<[u8; 32]>,
    /// SHA-256 of the session id -> session.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Mark cookies `Secure` (the page is served over TLS).
    pub secure_cookies: bool,
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auth {
    pub fn load(sources: &[AuthSource], secure_cookies: bool) -> Result<Auth, AuthFileError> {
        let mut users = HashMap::new();
        let mut tokens = Vec::new();
        for source in sources {
            match source {
                AuthSource::Basic(path) => {
                    for (n, line) in lines(path)? {
                        let bad = |reason: &str| AuthFileError::Line {
                            path: path.clone(),
                            line: n,
                            reason: reason.to_owned(),
                        };
                        let (user, hash) = line.split_once(':').ok_or_else(|| {
                            bad("expected user:argon2-hash (make one with `timecho hash-password`)")
                        })?;
                        PasswordHash::new(hash).map_err(|_| {
                            bad("not an argon2 hash; make one with `timecho hash-password`")
                        })?;
                        users.insert(user.to_owned(), hash.to_owned());
                    }
                }
                AuthSource::Token(path) => {
                    for (_, line) in lines(path)? {
                        tokens.push(digest(line.as_bytes()));
                    }
                }
            }
        }
        Ok(Auth {
            users,
            tokens,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            secure_cookies,
        })
    }

    /// Checks a request to `/ws` or `/api/session`: session cookie, bearer
    /// token, or Basic credentials. Returns the user's name.
    pub async fn authorize(&self, headers: &HeaderMap, client: IpAddr) -> Result<String, Denied> {
        if let Some(user) = self.session_user(headers) {
            return Ok(user);
        }
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(Denied::NoCredentials);
        };
        self.check_rate(client)?;
        let ok = if let Some(token) = value.strip_prefix("Bearer ") {
            self.token_ok(token.trim()).then(|| "token".to_owned())
        } else if let Some(encoded) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) => self
                    .password_ok(user, password)
                    .await
                    .then(|| user.to_owned()),
                None => None,
            }
        } else {
            None
        };
        ok.ok_or_else(|| self.failed(client))
    }

    /// `POST /api/login`: on success, the `Set-Cookie` value of a new session.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<String, Denied> {
        self.check_rate(client)?;
        if !self.password_ok(user, password).await {
            return Err(self.failed(client));
        }
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            // Oldest sign-ins go first; they are the nearest to expiring anyway.
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(id.as_bytes()),
            Session {
                user: user.to_owned(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Ok(self.cookie(&id, SESSION_LIFETIME.as_secs()))
    }

    /// `POST /api/logout`: ends the session; returns the cookie that clears it.
    pub fn logout(&self, headers: &HeaderMap) -> String {
        if let Some(id) = session_cookie(headers) {
            lock(&self.sessions).remove(&digest(id.as_bytes()));
        }
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )
    }

    /// The key of the live session this request carries, so a WebSocket can
    /// check later that its session was not signed out or expired.
    pub fn session_key(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        let key = digest(session_cookie(headers)?.as_bytes());
        self.session_alive(&key).then_some(key)
    }

    pub fn session_alive(&self, key: &[u8; 32]) -> bool {
        lock(&self.sessions)
            .get(key)
            .is_some_and(|s| s.expires > Instant::now())
    }

    fn session_user(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        let sessions = lock(&self.sessions);
        // Looked up by digest: the map never holds a usable session id.
        let s = sessions.get(&digest(id.as_bytes()))?;
        (s.expires > Instant::now()).then(|| s.user.clone())
    }

    fn token_ok(&self, token: &str) -> bool {
        let d = digest(token.as_bytes());
        // Every entry is compared, so timing says nothing about which one matched.
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&d))
            .into()
    }

    async fn password_ok(&self, user: &str, password: &str) -> bool {
        // Unknown users are checked against a dummy hash, so timing does not tell
        // which user names exist.
        let hash = self
            .users
            .get(user)
            .cloned()
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let known = self.users.contains_key(user);
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        verified && known
    }

    fn check_rate(&self, client: IpAddr) -> Result<(), Denied> {
        let failures = lock(&self.failures);
        match failures.get(&client) {
            Some(f) if f.count >= MAX_FAILURES && f.since.elapsed() < FAILURE_WINDOW => {
                Err(Denied::RateLimited)
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, client: IpAddr) -> Denied {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED_ADDRESSES {
            failures.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
        }
        let f = failures.entry(client).or_insert(Failures {
            count: 0,
            since: Instant::now(),
        });
        if f.since.elapsed() >= FAILURE_WINDOW {
            *f = Failures {
                count: 0,
                since: Instant::now(),
            };
        }
        f.count += 1;
        Denied::BadCredentials
    }
}

/// An argon2 hash of a random password, for unknown user names.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vf6S6MT1ko9oDRwAnbXJbW5rsKx2y6vkHOpCNPp+J0Y";

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

/// Non-empty, non-comment lines with their line numbers.
fn lines(path: &Path) -> Result<Vec<(usize, String)>, AuthFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| AuthFileError::Read(path.to_owned(), e))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect())
}

/// `timecho hash-password`: the line to put in a basic auth file.
pub fn hash_password(user: &str, password: &str) -> Result<String, password_hash::Error> {
    use argon2::PasswordHasher;
    let salt = password_hash::SaltString::generate(&mut OsRng);
    let hash = Argon2::default().hash_password(password.as_bytes(), &salt)?;
    Ok(format!("{user}:{hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        let dir = std::env::temp_dir().join(format!("timecho-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        let tokens = dir.join("tokens");
        std::fs::write(&users, hash_password("ada", "lovelace").unwrap() + "\n").unwrap();
        std::fs::write(&tokens, "# scripts\ns3cret-token\n").unwrap();
        Auth::load(
            &[AuthSource::Basic(users), AuthSource::Token(tokens)],
            false,
        )
        .unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            name.parse::<axum::http::HeaderName>().unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn login_gives_a_session_cookie_that_authorizes_until_logout() {
        let a = auth();
        let cookie = a.login("ada", "lovelace", CLIENT).await.unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let id = cookie.split(';').next().unwrap();
        let h = headers("cookie", id);
        assert_eq!(a.authorize(&h, CLIENT).await, Ok("ada".to_owned()));
        a.logout(&h);
        assert_eq!(a.authorize(&h, CLIENT).await, Err(Denied::NoCredentials));
    }

    #[tokio::test]
    async fn tokens_and_basic_credentials_work_for_scripts() {
        let a = auth();
        assert!(a
            .authorize(&headers("authorization", "Bearer s3cret-token"), CLIENT)
            .await
            .is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode("ada:lovelace");
        let h = headers("authorization", &format!("Basic {basic}"));
        assert_eq!(a.authorize(&h, CLIENT).await, Ok("ada".to_owned()));
        assert_eq!(
            a.authorize(&headers("authorization", "Bearer nope"), CLIENT)
                .await,
            Err(Denied::BadCredentials)
        );
    }

    #[tokio::test]
    async fn failed_attempts_are_rate_limited_per_address() {
        let a = auth();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                a.login("ada", "wrong", CLIENT).await,
                Err(Denied::BadCredentials)
            );
        }
        // Even the right password is refused while the address is limited...
        assert_eq!(
            a.login("ada", "lovelace", CLIENT).await,
            Err(Denied::RateLimited)
        );
        // ...but other addresses are not affected.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert!(a.login("ada", "lovelace", other).await.is_ok());
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
