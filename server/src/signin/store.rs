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
//! The sign-out is also published on [`CHANNEL`], which every instance
//! follows ([`SignOuts`]) to close its sockets of the session at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;
use tracing::{info, warn};

use super::lock;
use super::sign_outs::{hex, subscribe, SignOuts, CHANNEL};
use super::store_url::StoreUrl;
use super::tokens::unix_now;

/// How long one call may take: a page waits at most this long for its answer.
const CALL_DEADLINE: Duration = Duration::from_millis(500);
/// How long start-up waits for the store before giving up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// At most one warning this often while the store fails.
const WARN_EVERY: Duration = Duration::from_secs(10);
const KEY_PREFIX: &str = "timecho:signed-out:";

#[derive(Debug, thiserror::Error)]
#[error("--session-store {url}: cannot reach the session store within {deadline:?}: {why}")]
pub struct StoreError {
    url: String,
    deadline: Duration,
    why: String,
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
        let failed = |why: String| StoreError {
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

fn key(session: &[u8; 16]) -> String {
    format!("{KEY_PREFIX}{}", hex(session))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn keys_name_the_session_in_hex() {
        assert_eq!(
            key(&[0xab; 16]),
            format!("timecho:signed-out:{}", "ab".repeat(16))
        );
    }
}
