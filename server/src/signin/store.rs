//! The session store shared by instances (`--session-store redis://HOST:PORT`):
//! the sign-outs every instance must honour, kept where operators already keep
//! such state, in a Redis-compatible server.
//!
//! A sign-out writes `timecho:signed-out:<session id>`, expiring when no token
//! of the session can be valid any more; every instance asks for that key
//! before it takes a session cookie. Each call has a deadline: a store that
//! does not answer in time fails closed (cookie sessions are refused with 503,
//! bearer tokens and passwords do not need it), is counted, and is logged at
//! most once per [`WARN_EVERY`], with the number of failures since.
//!
//! The sign-out is also published on the channel `timecho:signed-out`, which
//! every instance follows ([`SignOuts`]) to close its sockets of the session
//! at once. A message missed (while the subscription is being restored) costs
//! only that promptness: those sockets close when the token they were opened
//! with expires, and the page's reconnection is refused by the key.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::lock;
use super::tokens::unix_now;
use crate::host_port::HostPort;

/// Redis's own port, for a URL that names none.
const DEFAULT_PORT: u16 = 6379;
/// How long one call may take: a page waits at most this long for its answer.
const CALL_DEADLINE: Duration = Duration::from_millis(500);
/// How long start-up waits for the store before giving up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// At most one warning this often while the store fails.
const WARN_EVERY: Duration = Duration::from_secs(10);
const KEY_PREFIX: &str = "timecho:signed-out:";
const CHANNEL: &str = "timecho:signed-out";
/// Waits between attempts to restore a lost subscription, doubling up to the longest.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(250);
const RESUBSCRIBE_LONGEST: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "--session-store {given:?}: {why} (expected redis://HOST:PORT or redis://HOST:PORT/DB)"
    )]
    Url { given: String, why: String },
    #[error("--session-store {url}: cannot reach the session store within {deadline:?}: {why}")]
    Connect {
        url: String,
        deadline: Duration,
        why: String,
    },
}

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, checked at start-up. Shown
/// (logs, errors) without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: String,
    shown: String,
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({})", self.shown)
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(given: &str) -> Result<StoreUrl, StoreError> {
        let bad = |why: &str| StoreError::Url {
            given: redact(given),
            why: why.to_owned(),
        };
        let Some(rest) = given.strip_prefix("redis://") else {
            return Err(bad(if given.starts_with("rediss://") {
                "TLS to the store is not supported; reach it over a trusted network with redis://"
            } else {
                "not a redis:// URL"
            }));
        };
        if rest.contains(['?', '#']) {
            return Err(bad("options (?...) are not supported"));
        }
        let (user_info, rest) = match rest.rsplit_once('@') {
            Some((user_info, rest)) => (Some(user_info), rest),
            None => (None, rest),
        };
        let (host_port, db) = rest.split_once('/').unwrap_or((rest, ""));
        if host_port.is_empty() {
            return Err(bad("it names no host"));
        }
        let host_port =
            HostPort::parse_or_port(host_port, DEFAULT_PORT).map_err(|e| bad(&e.to_string()))?;
        if host_port.port == 0 {
            return Err(bad("port 0 is no server's port"));
        }
        let db: u32 = match db {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the database after / must be a number"))?,
        };
        let shown = format!("redis://{host_port}/{db}");
        let url = match user_info {
            Some(user_info) => format!("redis://{user_info}@{host_port}/{db}"),
            None => shown.clone(),
        };
        redis::Client::open(url.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(StoreUrl { url, shown })
    }
}

/// `given` without the password it may carry, for an error message.
fn redact(given: &str) -> String {
    match given.rsplit_once('@') {
        Some((_, host)) => format!("redis://***@{host}"),
        None => given.to_owned(),
    }
}

/// The store did not answer in time (or answered with an error): the
/// session it was asked about is neither known live nor known signed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

pub struct SessionStore {
    connection: ConnectionManager,
    shown: String,
    failures: Counter,
    /// Set from the first failure to the next success: the fast path of a
    /// healthy store takes no lock.
    failing: AtomicBool,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    unreported: u64,
    last_warned: Option<Instant>,
}

impl SessionStore {
    /// Connects, checks that the server answers, and subscribes to sign-outs,
    /// within `deadline`. Failed calls are counted in `failures`.
    pub async fn connect(
        url: &StoreUrl,
        deadline: Duration,
        failures: Counter,
    ) -> Result<(SessionStore, SignOuts), StoreError> {
        let failed = |why: String| StoreError::Connect {
            url: url.shown.clone(),
            deadline,
            why,
        };
        let client = redis::Client::open(url.url.as_str()).map_err(|e| failed(e.to_string()))?;
        // A broken connection is replaced by one attempt, made when a call
        // finds it broken (and that call tries once more, see `call`): a store
        // that is down is told at once, not after a round of back-offs.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_DEADLINE))
            .set_response_timeout(Some(CALL_DEADLINE))
            .set_number_of_retries(0);
        let ready = async {
            let mut connection = ConnectionManager::new_with_config(client.clone(), config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            let subscription = subscribe(&client).await?;
            Ok::<_, redis::RedisError>((connection, subscription))
        };
        let (connection, subscription) = match tokio::time::timeout(deadline, ready).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed("no answer".to_owned())),
        };
        let store = SessionStore {
            connection,
            shown: url.shown.clone(),
            failures: failures.clone(),
            failing: AtomicBool::new(false),
            health: Mutex::new(Health::default()),
        };
        let sign_outs = SignOuts {
            client,
            subscription,
            shown: url.shown.clone(),
            failures,
        };
        Ok((store, sign_outs))
    }

    /// Records that `session` is signed out until `until` (seconds since the
    /// epoch), when none of its tokens can be valid any more.
    pub async fn revoke(&self, session: &[u8; 16], until: u64) -> Result<(), Unavailable> {
        let seconds = until.saturating_sub(unix_now()).max(1);
        let mut both = redis::pipe();
        both.atomic()
            .cmd("SET")
            .arg(key(session))
            .arg(1)
            .arg("EX")
            .arg(seconds)
            .ignore()
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(hex(session))
            .ignore();
        self.call(&Request::Pipe(both)).await
    }

    /// Whether `session` was signed out on any instance.
    pub async fn is_revoked(&self, session: &[u8; 16]) -> Result<bool, Unavailable> {
        let mut exists = redis::cmd("EXISTS");
        exists.arg(key(session));
        self.call(&Request::Cmd(exists)).await
    }

    /// Sends `request`, within the call deadline. A connection found broken
    /// (the store restarted) is reconnected by the manager, and the request
    /// sent once more on the new one, so that the first request after a
    /// restart is not failed for nothing.
    async fn call<T: redis::FromRedisValue>(&self, request: &Request) -> Result<T, Unavailable> {
        let attempts = async {
            let mut retried = false;
            loop {
                let mut connection = self.connection.clone();
                let answer = match request {
                    Request::Cmd(cmd) => cmd.query_async::<T>(&mut connection).await,
                    Request::Pipe(pipe) => pipe.query_async::<T>(&mut connection).await,
                };
                match answer {
                    Err(e) if !retried && (e.is_io_error() || e.is_connection_dropped()) => {
                        retried = true;
                    }
                    answer => return answer,
                }
            }
        };
        let answer = tokio::time::timeout(CALL_DEADLINE, attempts);
        match answer.await {
            Ok(Ok(value)) => {
                if self.failing.load(Ordering::Relaxed) {
                    self.recovered();
                }
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failed(&e.to_string())),
            Err(_) => Err(self.failed(&format!("no answer within {CALL_DEADLINE:?}"))),
        }
    }

    fn failed(&self, why: &str) -> Unavailable {
        self.failures.inc();
        self.failing.store(true, Ordering::Relaxed);
        let mut health = lock(&self.health);
        health.unreported += 1;
        let now = Instant::now();
        if health
            .last_warned
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            warn!(
                store = %self.shown,
                failures = health.unreported,
                "session store unavailable ({why}); session cookies are refused with 503 until it answers"
            );
            health.unreported = 0;
            health.last_warned = Some(now);
        }
        Unavailable
    }

    fn recovered(&self) {
        let mut health = lock(&self.health);
        if self.failing.swap(false, Ordering::Relaxed) {
            info!(
                store = %self.shown,
                failures = health.unreported,
                "session store answering again"
            );
            *health = Health::default();
        }
    }
}

enum Request {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

/// The sign-outs every instance publishes, followed by this one.
pub struct SignOuts {
    client: redis::Client,
    subscription: PubSub,
    shown: String,
    failures: Counter,
}

impl SignOuts {
    /// Calls `signed_out` with each session id signed out on any instance,
    /// until `stop`. A lost subscription is restored, with waits that grow
    /// to [`RESUBSCRIBE_LONGEST`]; it is logged when lost and when back.
    pub async fn follow(self, signed_out: impl Fn(&[u8; 16]), stop: CancellationToken) {
        let SignOuts {
            client,
            mut subscription,
            shown,
            failures,
        } = self;
        loop {
            let mut messages = subscription.on_message();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = messages.next() => match message {
                        Some(m) => {
                            if let Some(session) = session_id(m.get_payload_bytes()) {
                                signed_out(&session);
                            }
                        }
                        None => break,
                    },
                }
            }
            drop(messages);
            failures.inc();
            warn!(
                store = %shown,
                "session store subscription lost; until it is back, sockets of sessions signed \
                 out elsewhere close when their token expires"
            );
            let mut wait = RESUBSCRIBE_FIRST;
            subscription = loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match tokio::time::timeout(CALL_DEADLINE, subscribe(&client)).await {
                    Ok(Ok(subscription)) => break subscription,
                    _ => {
                        failures.inc();
                        wait = (wait * 2).min(RESUBSCRIBE_LONGEST);
                    }
                }
            };
            info!(store = %shown, "following sign-outs on the session store again");
        }
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<PubSub> {
    let mut subscription = client.get_async_pubsub().await?;
    subscription.subscribe(CHANNEL).await?;
    Ok(subscription)
}

fn key(session: &[u8; 16]) -> String {
    format!("{KEY_PREFIX}{}", hex(session))
}

fn hex(session: &[u8; 16]) -> String {
    session.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session id as [`hex`] writes it; `None` for anything else.
fn session_id(text: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(text).ok()?;
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<String, String> {
        url.parse::<StoreUrl>()
            .map(|u| u.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn store_urls_are_checked_and_shown_without_their_password() {
        assert_eq!(
            parse("redis://127.0.0.1:6380"),
            Ok("redis://127.0.0.1:6380/0".into())
        );
        assert_eq!(
            parse("redis://cache.internal/3"),
            Ok("redis://cache.internal:6379/3".into())
        );
        assert_eq!(
            parse("redis://[::1]:7000/"),
            Ok("redis://[::1]:7000/0".into())
        );
        let secret = "redis://:hunter2@10.0.0.5:6379/1";
        assert_eq!(parse(secret), Ok("redis://10.0.0.5:6379/1".into()));
        assert!(!format!("{:?}", secret.parse::<StoreUrl>().unwrap()).contains("hunter2"));
        for (bad, why) in [
            ("127.0.0.1:6379", "not a redis:// URL"),
            ("rediss://127.0.0.1:6379", "TLS"),
            ("redis://", "no host"),
            ("redis://127.0.0.1:0", "port 0"),
            ("redis://127.0.0.1:99999", "HOST:PORT"),
            ("redis://127.0.0.1:6379/zero", "must be a number"),
            ("redis://127.0.0.1:6379/0?protocol=resp3", "options"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("--session-store"),
                "{bad}: {err}"
            );
        }
        let err = parse("redis://:hunter2@127.0.0.1:x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn a_store_that_is_not_there_fails_start_up_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url: StoreUrl = format!("redis://127.0.0.1:{port}").parse().unwrap();
        let err = SessionStore::connect(&url, CONNECT_DEADLINE, Counter::default())
            .await
            .err()
            .expect("nothing listens there")
            .to_string();
        assert!(
            err.contains(&format!("redis://127.0.0.1:{port}/0")) && err.contains("cannot reach"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_store_that_never_answers_fails_start_up_at_the_deadline() {
        // Accepts connections (the kernel's backlog does) and says nothing.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: StoreUrl = format!("redis://{}", silent.local_addr().unwrap())
            .parse()
            .unwrap();
        let deadline = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = SessionStore::connect(&url, deadline, Counter::default())
            .await
            .err()
            .expect("no answer");
        assert!(started.elapsed() < deadline * 4, "{:?}", started.elapsed());
        assert!(err.to_string().contains("within 300ms"), "{err}");
    }

    #[test]
    fn keys_and_messages_name_the_session_in_hex() {
        let id = [0xab, 0x01, 0, 0xff, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0x10];
        assert_eq!(
            key(&[0xab; 16]),
            format!("timecho:signed-out:{}", "ab".repeat(16))
        );
        assert_eq!(session_id(hex(&id).as_bytes()), Some(id));
        for bad in [
            "",
            "ab",
            &"zz".repeat(16),
            &"ab".repeat(17),
            "+1ab0000000000000000000000000000",
        ] {
            assert_eq!(session_id(bad.as_bytes()), None, "{bad}");
        }
    }
}
