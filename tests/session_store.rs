//! Sign-outs shared through a session store (`--session-store`), over real
//! processes: two instances behind HAProxy with `deploy/haproxy.cfg`, a real
//! `redis-server` started by the test, and the page's requests (renewal,
//! `/ws`, the API). Also what several instances without a store can and
//! cannot promise (as the README says), a store that stops answering, and the
//! start-up checks of the key and the store.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::balancer::{
    close_code_of, session_at, session_cookie, start_balancer, straight_to, ws_sessions,
    ws_through, Balancer, PROXY_HEADER,
};
use crate::support::http::{self, Response};
use crate::support::redis::RedisServer;
use crate::support::{free_addr, scrape, serve_expecting_exit, split_reply, Server, TempDir};

/// Short, so that "within one token lifetime" is seconds.
const LIFETIME: Duration = Duration::from_secs(4);

/// An instance's flags: a key shared with the other instances of the test (and
/// the store, if given), a user `ada`/`pw` and a bearer token `script-token`.
fn serve_args(dir: &TempDir, store: Option<&RedisServer>, lifetime: Duration) -> Vec<String> {
    let key = dir.path().join("session.key");
    if !key.exists() {
        crate::support::write_session_key(&key);
    }
    let users = crate::support::basic_users_file(dir, "ada", "pw");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "script-token\n").unwrap();
    let mut args: Vec<String> = [
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--proxy-protocol",
        "--auth",
        &users,
        "--auth",
        &format!("token:{}", tokens.display()),
        "--session-key",
        &key.display().to_string(),
        "--token-lifetime",
        &format!("{}s", lifetime.as_secs()),
    ]
    .map(str::to_owned)
    .into();
    if let Some(store) = store {
        args.extend(["--session-store".to_owned(), store.url()]);
    }
    args
}

fn serve(args: &[String]) -> Server {
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn instances(dir: &TempDir, store: Option<&RedisServer>, lifetime: Duration) -> (Server, Server) {
    let args = serve_args(dir, store, lifetime);
    (serve(&args), serve(&args))
}

/// `POST /api/login` through the balancer, as the page sends it: the cookie.
fn sign_in(lb: &Balancer) -> String {
    let login = http::post("/api/login", r#"{"user":"ada","password":"pw"}"#)
        .header("Origin", format!("http://{}", lb.http))
        .header("Content-Type", "application/json")
        .send(lb.http);
    assert_eq!(login.status, 200, "{login}");
    session_cookie(&login).expect("a session cookie")
}

/// `POST /api/logout` straight to `instance`.
fn sign_out(instance: &Server, cookie: &str) -> Response {
    straight_to(
        instance,
        http::post("/api/logout", "").header("Cookie", cookie),
    )
}

/// `GET path` straight to `instance` with the header `name: value`.
fn get(instance: &Server, path: &str, (name, value): (&str, &str)) -> Response {
    straight_to(instance, http::get(path).header(name, value))
}

/// A `/ws` handshake straight to `instance` as a script (no Origin) with
/// `cookie`: the status it was answered with (101 when it opened).
fn ws_status_at(instance: &Server, cookie: &str) -> u16 {
    use tungstenite::client::IntoClientRequest;
    let mut request = "ws://localhost/ws".into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let mut stream = TcpStream::connect(instance.http_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(PROXY_HEADER.as_bytes()).unwrap();
    match tungstenite::client::client(request, stream) {
        Ok(_) => 101,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            response.status().as_u16()
        }
        Err(e) => panic!("no answer to the handshake: {e}"),
    }
}

/// Asks until `done` says so, failing after `within`; how long it took.
fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not after {within:?}");
        thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn a_sign_out_on_one_instance_is_refused_by_every_instance_at_once_through_haproxy() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let (a, b) = instances(&dir, Some(&redis), LIFETIME);
    let lb = start_balancer(&a, &b);

    let cookie = sign_in(&lb);
    assert_eq!(session_at(&a, &cookie).0, 200);
    let (status, renewed_on_b) = session_at(&b, &cookie);
    assert_eq!(status, 200);
    let renewed_on_b = renewed_on_b.expect("a renewed cookie");
    // The page's /ws, twice at once: HAProxy puts one on each instance.
    let mut first = ws_through(lb.http, &cookie);
    let mut second = ws_through(lb.http, &renewed_on_b);
    for (ws, text) in [(&mut first, "one"), (&mut second, "two")] {
        ws.send(tungstenite::Message::text(text)).unwrap();
        match ws.read().unwrap() {
            tungstenite::Message::Text(reply) => {
                assert_eq!(split_reply(reply.as_bytes()).1, text.as_bytes())
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    assert_eq!(
        (ws_sessions(&a), ws_sessions(&b)),
        (1, 1),
        "one socket on each"
    );

    // Signed out on a...
    let logout = sign_out(&a, &cookie);
    let signed_out = Instant::now();
    assert_eq!(logout.status, 204, "{logout}");
    // ...which wrote it to the store until the session's end (12 h).
    let written = redis.sign_outs();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].1 > 11 * 3600,
        "expires with the session: {written:?}"
    );

    // Both sockets close at once: a's because it saw the sign-out, b's
    // because the store told it (without that, b's would close with 4001 when
    // its token expires, within one token lifetime).
    let mut codes = [close_code_of(&mut first), close_code_of(&mut second)];
    let closed = signed_out.elapsed();
    codes.sort_unstable();
    assert_eq!(codes, [1008, 1008], "closed after {closed:?}");
    eprintln!("both sockets closed {closed:?} after the sign-out (token lifetime {LIFETIME:?})");
    assert!(closed < LIFETIME / 2, "{closed:?}");

    // b refuses the session at once, whichever of its tokens comes: the
    // renewal, the API, /ws.
    for token in [&cookie, &renewed_on_b] {
        let took = eventually(LIFETIME, "renewal on b", || session_at(&b, token).0 == 401);
        eprintln!("b refused the renewal {took:?} after the sign-out on a");
        assert!(took < LIFETIME / 2, "refused only after {took:?}");
        let (status, renewed) = session_at(&b, token);
        assert_eq!((status, renewed), (401, None), "no renewed cookie either");
        assert_eq!(ws_status_at(&b, token), 401, "/ws on b");
        let metrics = get(&b, "/metrics", ("Cookie", token));
        assert_eq!(metrics.status, 401, "the API on b: {metrics}");
    }
    assert_eq!(
        session_at(&a, &renewed_on_b).0,
        401,
        "a refuses every token too"
    );
    assert_eq!(ws_status_at(&a, &renewed_on_b), 401);
    let script = get(&b, "/api/session", ("Authorization", "Bearer script-token"));
    assert_eq!(script.status, 200, "scripts' tokens are not sessions");
}

#[test]
fn without_a_store_another_instance_keeps_renewing_a_cookie_signed_out_elsewhere() {
    // What the README says several instances without a store cannot promise:
    // b never hears of a's sign-out, so a copy of the cookie that is renewed
    // on b stays signed in there (up to the session's 12 h), while one that is
    // not renewed is refused within a token lifetime.
    let dir = TempDir::new();
    let (a, b) = instances(&dir, None, LIFETIME);
    let lb = start_balancer(&a, &b);
    let cookie = sign_in(&lb);
    let (_, renewed) = session_at(&b, &cookie);
    let mut kept = renewed.expect("a renewed cookie");
    assert_eq!(sign_out(&a, &cookie).status, 204);
    assert_eq!(session_at(&a, &kept).0, 401, "a knows");
    let signed_out = Instant::now();
    while signed_out.elapsed() < LIFETIME * 2 {
        let (status, renewed) = session_at(&b, &kept);
        assert_eq!(status, 200, "b renews what it cannot know was signed out");
        kept = renewed.unwrap_or(kept);
        thread::sleep(LIFETIME / 3);
    }
    // The cookie as it was at the sign-out, never renewed, has expired.
    assert_eq!(session_at(&b, &cookie).0, 401);
}

#[test]
fn a_store_that_stops_answering_fails_sessions_closed_until_it_is_back() {
    let mut redis = RedisServer::start();
    let dir = TempDir::new();
    // Tokens outlive the outage: this is about the store, not expiry.
    let (mut a, mut b) = instances(&dir, Some(&redis), Duration::from_secs(60));
    // Straight to the instances: the balancer is not what this is about.
    let cookie = sign_in_at(&a);
    assert_eq!(session_at(&a, &cookie).0, 200);

    redis.stop();
    for _ in 0..5 {
        let answer = get(&a, "/api/session", ("Cookie", &cookie));
        assert_eq!(answer.status, 503, "{answer}");
        assert!(
            answer.text().contains("session store unavailable"),
            "{answer}"
        );
        assert!(session_cookie(&answer).is_none(), "nothing renewed");
    }
    assert_eq!(ws_status_at(&a, &cookie), 503);
    let script = get(&a, "/api/session", ("Authorization", "Bearer script-token"));
    assert_eq!(script.status, 200, "bearer tokens need no store");
    // A sign-out the store cannot take is refused too, so the person tries
    // again rather than believing every instance knows.
    let logout = sign_out(&a, &cookie);
    assert_eq!(logout.status, 503, "{logout}");
    let failures: f64 = scrape(a.listener("metrics"))
        .lines()
        .find_map(|l| l.strip_prefix("timecho_session_store_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 7.0, "{failures} failures counted");
    let warned = |a: &mut Server| a.stderr().matches("session store unavailable").count();
    eventually(Duration::from_secs(5), "a warning", || warned(&mut a) > 0);
    assert_eq!(
        warned(&mut a),
        1,
        "one warning for the burst:\n{}",
        a.stderr()
    );

    // Back (empty: it saved nothing): the repeated sign-out is taken now,
    // and the session is refused for good.
    redis.resume();
    eventually(Duration::from_secs(10), "store back", || {
        sign_out(&a, &cookie).status == 204
    });
    assert_eq!(redis.sign_outs().len(), 1);
    assert_eq!(session_at(&a, &cookie).0, 401);
    eventually(Duration::from_secs(5), "recovery logged", || {
        a.stderr().contains("session store answering again")
    });

    // Both follow sign-outs again: one on a closes b's socket at once.
    for instance in [&mut a, &mut b] {
        let stderr = instance.stderr();
        assert!(stderr.contains("subscription lost"), "{stderr}");
        eventually(Duration::from_secs(10), "resubscribed", || {
            instance
                .stderr()
                .contains("following sign-outs on the session store again")
        });
    }
    let cookie = sign_in_at(&a);
    let mut socket = ws_at(&b, &cookie);
    assert_eq!(sign_out(&a, &cookie).status, 204);
    let signed_out = Instant::now();
    assert_eq!(close_code_of(&mut socket), 1008);
    assert!(
        signed_out.elapsed() < LIFETIME / 2,
        "{:?}",
        signed_out.elapsed()
    );
}

/// `POST /api/login` straight to `instance`: the cookie.
fn sign_in_at(instance: &Server) -> String {
    let login = straight_to(
        instance,
        http::post("/api/login", r#"{"user":"ada","password":"pw"}"#)
            .header("Content-Type", "application/json"),
    );
    session_cookie(&login).unwrap_or_else(|| panic!("not signed in: {login}"))
}

#[test]
fn start_up_refuses_a_weak_key_an_unreachable_store_and_a_store_without_sign_in() {
    let dir = TempDir::new();
    let users = crate::support::basic_users_file(&dir, "ada", "pw");
    let weak = dir.path().join("weak.key");
    std::fs::write(&weak, "a".repeat(32)).unwrap();
    let weak = weak.display().to_string();
    let refused = serve_expecting_exit(&[
        "--http",
        "127.0.0.1:0",
        "--auth",
        &users,
        "--session-key",
        &weak,
    ]);
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("too weak"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("head -c 32 /dev/urandom | base64"),
        "{}",
        refused.stderr
    );

    let closed = free_addr();
    let nowhere = format!("redis://{closed}");
    let started = Instant::now();
    let refused = serve_expecting_exit(&[
        "--http",
        "127.0.0.1:0",
        "--auth",
        &users,
        "--session-store",
        &nowhere,
    ]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("cannot reach the session store")
            && refused.stderr.contains(&closed.to_string()),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stdout.contains("Press Ctrl-C"),
        "it never said it listens"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    for (args, expected) in [
        (
            vec!["--session-store", "redis://127.0.0.1:6379"],
            "--session-store needs --auth",
        ),
        (
            vec!["--auth", &users, "--session-store", "127.0.0.1:6379"],
            "not a redis:// URL",
        ),
    ] {
        let mut all = vec!["--http", "127.0.0.1:0"];
        all.extend(args);
        let refused = serve_expecting_exit(&all);
        assert!(!refused.status.success());
        assert!(
            refused.stderr.contains(expected),
            "{expected}: {}",
            refused.stderr
        );
    }
    let mut env = crate::support::timecho();
    env.args(["serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("TIMECHO_SESSION_STORE", "redis://127.0.0.1:6379");
    let refused = crate::support::run_to_exit(env, b"", Duration::from_secs(10));
    assert!(
        refused.stderr.contains("--session-store needs --auth"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_user_removed_from_the_users_file_loses_their_sessions_at_sighup() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let args = serve_args(&dir, Some(&redis), Duration::from_secs(60));
    let users = args
        .iter()
        .find_map(|a| a.strip_prefix("basic:"))
        .expect("a users file")
        .to_owned();
    let other = crate::support::basic_users_file(&dir, "grace", "pw2");
    let mut a = serve(&args);
    let cookie = sign_in_at(&a);
    let mut socket = ws_at(&a, &cookie);

    // Another user's line instead of ada's, then SIGHUP.
    std::fs::copy(other.strip_prefix("basic:").unwrap(), &users).unwrap();
    a.signal(libc::SIGHUP);
    assert_eq!(
        close_code_of(&mut socket),
        1008,
        "her socket ends at the reload"
    );
    assert_eq!(session_at(&a, &cookie).0, 401);
    let reloaded = "sign-in reloaded: session key unchanged, users reloaded (1), \
                    tokens reloaded (1), 1 user(s) removed";
    eventually(Duration::from_secs(5), "the reload logged", || {
        a.stderr().contains(reloaded)
    });
}

/// The page's `/ws` straight to `instance` (behind the PROXY header), open.
fn ws_at(instance: &Server, cookie: &str) -> tungstenite::WebSocket<TcpStream> {
    use tungstenite::client::IntoClientRequest;
    let mut request = "ws://localhost/ws".into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let mut stream = TcpStream::connect(instance.http_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(PROXY_HEADER.as_bytes()).unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("/ws refused: {e}"),
    }
}
