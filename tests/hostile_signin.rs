//! Sign-in under attack, over a real `timecho serve --auth basic:FILE`: a burst
//! of wrong passwords from one address must cost at most the rate limit's worth
//! of password checks (each argon2 check takes ~19 MiB and a core for a while),
//! and must not lock out people signing in from elsewhere; nor may a flood of
//! wrong bearer tokens from thousands of addresses (which costs no checks),
//! nor can one sign-in take every WebSocket slot.

// Only the memory probe of the abuse suite's helpers is used here.
#[allow(dead_code, unused_imports)]
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abuse_support::Memory;
use crate::support::{metric, scrape, Server, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Barrier;

const ATTACKERS: usize = 200;
/// Attempts one address may make in a minute (the server's limit).
const ATTEMPTS_PER_MINUTE: f64 = 5.0;
/// Generous for a debug build on a shared machine; the attack itself should
/// finish in a few seconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
const MIB: u64 = 1024;
const VERIFICATIONS: &str = "timecho_signin_verifications_total";

/// A users file with `ada` / `lovelace`, made as the README says.
fn users_file(dir: &TempDir) -> String {
    crate::support::basic_users_file(dir, "ada", "lovelace")
}

/// `POST /api/login` from `source`, as the page sends it; the status code and
/// the whole answer, or the error that kept an answer from coming.
async fn login(
    source: &str,
    http: SocketAddr,
    (user, password): (&str, &str),
    ready: Option<&Barrier>,
) -> Result<(u16, String), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut stream = socket
        .connect(http)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {http}\r\nOrigin: http://{http}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Some(ready) = ready {
        ready.wait().await;
    }
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("no answer within {ANSWER_TIMEOUT:?}"))?
        .map_err(|e| format!("read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {raw:?}"))?;
    Ok((status, raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_burst_costs_at_most_the_rate_limit_in_checks_and_memory() {
    let dir = TempDir::new();
    let auth = users_file(&dir);
    // Metrics come from their own listener: under --auth the main one wants sign-in.
    let server = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--auth",
        &auth,
    ]);
    let http = server.http_addr();
    let ops = server.listener("metrics");
    assert!(
        scrape(ops).contains(VERIFICATIONS),
        "the server exports no {VERIFICATIONS}"
    );
    let memory = Memory::start(&server);

    let ready = Arc::new(Barrier::new(ATTACKERS));
    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let ready = ready.clone();
            tokio::spawn(
                async move { login("127.0.0.1", http, ("ada", "wrong"), Some(&ready)).await },
            )
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for attacker in attackers {
        let answer = match attacker.await.expect("attacker task") {
            Ok((503, answer)) if !answer.to_ascii_lowercase().contains("retry-after: 1\r\n") => {
                format!("503 without Retry-After: {answer}")
            }
            Ok((status, _)) => status.to_string(),
            Err(e) => e,
        };
        *answers.entry(answer).or_default() += 1;
    }
    let took = started.elapsed();

    let verifications = metric(ops, VERIFICATIONS, &[]);
    let rate_limited = metric(ops, "timecho_signin_rate_limited_total", &[]);
    let busy = metric(ops, "timecho_signin_busy_total", &[]);
    eprintln!(
        "{ATTACKERS} wrong passwords from one address in {took:?}: answers {answers:?}; \
         {verifications} password checks, {rate_limited} rate-limited, {busy} busy"
    );
    memory.assert_peak_growth_below(200 * MIB, "wrong-password burst");

    // The limit refills one attempt every 12 s: more can pass if the burst was slow.
    let allowed = ATTEMPTS_PER_MINUTE + (took.as_secs_f64() / 12.0).floor();
    assert!(
        verifications <= allowed,
        "{verifications} password checks for one address (at most {allowed})"
    );
    let unexpected: Vec<_> = answers
        .keys()
        .filter(|a| !["401", "429", "503"].contains(&a.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {answers:?}");

    // Someone else, at another address, still signs in.
    let (status, answer) = login("127.0.0.2", http, ("ada", "lovelace"), None)
        .await
        .expect("an answer to the right password");
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("set-cookie: timecho_session="),
        "{answer}"
    );
}

/// Clients the server's sign-in limiters remember at most (each).
const TRACKED_CLIENTS: u32 = 10_000;

/// `GET /api/session` from `source` with a bearer token; the status code.
async fn session_with_token(source: &str, http: SocketAddr, token: &str) -> Result<u16, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut stream = socket
        .connect(http)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /api/session HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("no answer within {ANSWER_TIMEOUT:?}"))?
        .map_err(|e| format!("read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {raw:?}"))
}

/// 127.1.x.y: a loopback address of its own for each attacker `n`.
fn attacker(n: u32) -> String {
    format!("127.1.{}.{}", n / 250, n % 250 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_a_table_full_of_addresses_do_not_lock_out_passwords() {
    let dir = TempDir::new();
    let users = users_file(&dir);
    let tokens_path = dir.path().join("tokens.txt");
    std::fs::write(&tokens_path, "right-token-for-scripts\n").unwrap();
    let tokens = format!("token:{}", tokens_path.display());
    let server = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--auth",
        &users,
        "--auth",
        &tokens,
    ]);
    let http = server.http_addr();
    let ops = server.listener("metrics");

    // One wrong token from each of as many addresses as the limiter remembers:
    // each leaves an entry for 24 s, so the token table is full.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let flooders: Vec<_> = (0..32)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut answers: BTreeMap<String, usize> = BTreeMap::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= TRACKED_CLIENTS {
                        return answers;
                    }
                    let answer = match session_with_token(&attacker(n), http, "guess").await {
                        Ok(status) => status.to_string(),
                        Err(e) => e,
                    };
                    *answers.entry(answer).or_default() += 1;
                }
            })
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for flooder in flooders {
        for (answer, count) in flooder.await.expect("flooder task") {
            *answers.entry(answer).or_default() += count;
        }
    }
    eprintln!(
        "{TRACKED_CLIENTS} wrong tokens from as many addresses in {:?}: {answers:?}",
        started.elapsed()
    );
    assert_eq!(
        answers.get("401"),
        Some(&(TRACKED_CLIENTS as usize)),
        "{answers:?}"
    );

    // The table is full: a new guesser is counted against the strangers'
    // shared allowance, not refused outright...
    assert_eq!(
        session_with_token("127.2.0.1", http, "guess").await,
        Ok(401)
    );
    // ...and a password from a fresh address is let in, as is the right token.
    let (status, answer) = login("127.3.0.1", http, ("ada", "lovelace"), None)
        .await
        .expect("an answer to the right password");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        session_with_token("127.3.0.2", http, "right-token-for-scripts").await,
        Ok(200)
    );
    assert_eq!(
        metric(ops, "timecho_signin_rate_limited_total", &[]),
        0.0,
        "nobody was rate-limited"
    );
}

/// Opens `/ws` as a script signed in with `authorization`; the session, or
/// the refusal's status and text.
async fn ws_as(http: SocketAddr, authorization: &str) -> Result<crate::support::Ws, (u16, String)> {
    match crate::support::ws_connect_with(http, &[("authorization", authorization)]).await {
        Ok(ws) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_cannot_take_every_websocket_slot() {
    let dir = TempDir::new();
    let users = users_file(&dir);
    let tokens_path = dir.path().join("tokens.txt");
    std::fs::write(&tokens_path, "token-of-one-script\ntoken-of-another\n").unwrap();
    let tokens = format!("token:{}", tokens_path.display());
    let server = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--auth",
        &users,
        "--auth",
        &tokens,
        "--max-websockets",
        "8",
        "--max-websockets-per-user",
        "2",
    ]);
    let http = server.http_addr();
    let ops = server.listener("metrics");
    let one = "Bearer token-of-one-script";
    let ada = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ada:lovelace")
    );

    let mut first = ws_as(http, one).await.expect("a first session");
    let _second = ws_as(http, one).await.expect("a second session");
    let (status, text) = ws_as(http, one).await.expect_err("a third is refused");
    assert_eq!(status, 429, "{text}");
    assert!(
        text.contains("this sign-in already has 2 WebSocket sessions open"),
        "{text}"
    );
    // Another token is another sign-in, and so is a user.
    let _other = ws_as(http, "Bearer token-of-another")
        .await
        .expect("another token's session");
    let _ada = ws_as(http, &ada).await.expect("ada's session");
    let _ada_too = ws_as(http, &ada).await.expect("ada's second session");
    assert_eq!(ws_as(http, &ada).await.err().map(|(s, _)| s), Some(429));

    // A closed session gives its place back.
    futures_util::SinkExt::close(&mut first).await.unwrap();
    while futures_util::StreamExt::next(&mut first).await.is_some() {}
    let open = "timecho_websocket_sessions_open";
    tokio::task::spawn_blocking(move || {
        crate::support::wait_for_metric(ops, open, &[], 4.0, ANSWER_TIMEOUT)
    })
    .await
    .unwrap();
    let _again = ws_as(http, one).await.expect("a place again after a close");
}
