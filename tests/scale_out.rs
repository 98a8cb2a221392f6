//! Scale-out behind a real load balancer: two timecho instances behind HAProxy
//! with `deploy/haproxy.cfg` (PROXY protocol v2, /readyz health checks), on
//! loopback. Clients reach both instances, the instances log the real client
//! address, and when one instance is stopped mid-load no reply is lost.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::balancer::{
    accepted, close_code_of, one_exchange, session_at, session_cookie, start_balancer, straight_to,
    ws_sessions, ws_through,
};
use crate::support::http::{self, Response};
use crate::support::{scrape, split_reply, Server};

const CLIENTS: usize = 8;
const LINES_PER_CLIENT: usize = 150;

/// Sends numbered lines one at a time through the balancer. A connection that
/// ends before a reply means the line was not processed (the server answers
/// everything it read before closing), so it is sent again on a new one.
/// Returns the texts of the replies, in order.
fn steady_client(
    lb: SocketAddr,
    id: usize,
    stop_early: Arc<AtomicBool>,
    answered_in_all: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut replies = Vec::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while i < LINES_PER_CLIENT && Instant::now() < deadline && !stop_early.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match TcpStream::connect(lb) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    conn.insert(BufReader::new(s))
                }
                Err(_) => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let text = format!("client {id} line {i}");
        let mut line = Vec::new();
        let answered = c
            .get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .is_ok()
            && matches!(c.read_until(b'\n', &mut line), Ok(n) if n > 0 && line.ends_with(b"\n"));
        if !answered {
            conn = None;
            continue;
        }
        line.pop();
        let (_, echoed) = split_reply(&line);
        replies.push(String::from_utf8_lossy(&echoed).into_owned());
        answered_in_all.fetch_add(1, Ordering::Relaxed);
        i += 1;
        thread::sleep(Duration::from_millis(10));
    }
    replies
}

#[test]
fn instances_behind_haproxy_share_clients_log_them_and_drain_without_losing_replies() {
    let args = [
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--proxy-protocol",
        "--shutdown-delay",
        "2s",
        "--log",
        "timecho=debug",
    ];
    let mut a = Server::start(&args);
    let mut b = Server::start(&args);
    let lb = start_balancer(&a, &b);

    // Both instances serve clients through the balancer, and log the client's
    // own address (from the PROXY header), not the balancer's.
    let mut locals = Vec::new();
    for n in 0..10 {
        let (local, reply) =
            one_exchange(lb.tcp, &format!("hello {n}")).expect("an answer via HAProxy");
        assert!(
            reply.ends_with(format!("] hello {n}\n").as_bytes()),
            "{reply:?}"
        );
        locals.push(local);
    }
    // Each connection's log line comes as it is accepted: wait for them all.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = format!("{}\n{}", a.stderr(), b.stderr());
        let logged = locals
            .iter()
            .filter(|l| logs.contains(&format!("peer={l}")))
            .count();
        if logged == locals.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client addresses {locals:?} not all in the logs:\n{logs}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(accepted(&a) > 0 && accepted(&b) > 0);
    let status = http::get("/readyz").send(lb.http).status;
    assert_eq!(status, 200, "the page side is served through HAProxy too");

    // Steady load, then instance A is stopped in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let addr = lb.tcp;
            thread::spawn(move || steady_client(addr, id, stop, answered))
        })
        .collect();
    // A is stopped once the load is flowing: some lines answered per client.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::Relaxed) < CLIENTS * 5 {
        assert!(Instant::now() < deadline, "the steady load did not start");
        thread::sleep(Duration::from_millis(10));
    }
    a.sigterm();
    // /readyz turns 503 as soon as the signal is handled, before the listeners close.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut status = 0;
    while Instant::now() < deadline {
        // Refused once its listeners close: 0.
        status = http::get("/readyz")
            .try_send(a.listener("metrics"))
            .map_or(0, |r| r.status);
        if status == 503 {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 503, "A must report not ready while draining");
    let exited = a.wait_exit(Duration::from_secs(10));
    assert!(
        exited.is_some_and(|s| s.success()),
        "A did not drain and exit 0: {exited:?}\n{}",
        a.stderr()
    );

    for (id, client) in clients.into_iter().enumerate() {
        let replies = client.join().expect("client thread");
        let expected: Vec<String> = (0..LINES_PER_CLIENT)
            .map(|i| format!("client {id} line {i}"))
            .collect();
        assert_eq!(replies, expected, "client {id} lost or repeated replies");
    }

    // New connections go to B now.
    let (_, reply) = one_exchange(lb.tcp, "after").expect("B answers through HAProxy");
    assert!(reply.ends_with(b"] after\n"));
    assert!(b.stderr().contains("peer="));
    drop(lb);
    assert!(b.terminate().success());
}

/// `POST /api/login` through the balancer at `lb` as the page sends it
/// (`ada`, `pw`).
fn sign_in(lb: SocketAddr) -> Response {
    http::post("/api/login", r#"{"user":"ada","password":"pw"}"#)
        .header("Origin", format!("http://{lb}"))
        .header("Content-Type", "application/json")
        .send(lb)
}

/// `GET path` through the balancer from a chosen loopback source address,
/// with the bearer `token` if any: the status, or 0 when the connection ended
/// without one.
fn http_from(source: &str, lb: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(lb).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let request = http::get(path).host("localhost");
    let request = match token {
        Some(token) => request.header("Authorization", format!("Bearer {token}")),
        None => request,
    };
    request.try_send_on(stream).map_or(0, |r| r.status)
}

#[test]
fn behind_haproxy_sign_in_limits_and_deny_see_each_browser_not_the_balancer() {
    let dir = crate::support::TempDir::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "right-token\n").unwrap();
    let auth = format!("token:{}", tokens.display());
    let args = [
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--proxy-protocol",
        "--auth",
        &auth,
        "--deny",
        "127.0.0.3/32",
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let lb = start_balancer(&a, &b);
    let (wrong, right) = (Some("wrong-token"), Some("right-token"));

    // 127.0.0.2 guesses until both instances rate-limit it...
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(http_from("127.0.0.2", lb.http, "/api/session", wrong));
    }
    eprintln!("wrong tokens from 127.0.0.2 through HAProxy: {statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // ...while another browser behind the same balancer is not locked out, on
    // either instance: its first wrong guesses are told they are wrong, not
    // rate-limited, and its right token works.
    for _ in 0..2 {
        assert_eq!(http_from("127.0.0.4", lb.http, "/api/session", wrong), 401);
    }
    for _ in 0..4 {
        assert_eq!(http_from("127.0.0.4", lb.http, "/api/session", right), 200);
    }
    // --deny names a browser's address, not HAProxy's: that one browser is refused.
    assert_eq!(http_from("127.0.0.4", lb.http, "/readyz", None), 200);
    let denied = http_from("127.0.0.3", lb.http, "/readyz", None);
    assert!(denied >= 500 || denied == 0, "denied browser got {denied}");
    let denied_count: f64 = [&a, &b]
        .iter()
        .map(|s| {
            scrape(s.listener("metrics"))
                .lines()
                .filter(|l| l.starts_with("timecho_errors_total{") && l.contains("kind=\"Denied\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    assert!(
        denied_count >= 1.0,
        "no instance counted the denied browser"
    );
}

#[test]
fn a_sign_in_through_haproxy_is_honoured_by_every_instance_and_a_sign_out_everywhere_within_the_token_lifetime(
) {
    const LIFETIME: Duration = Duration::from_secs(4);
    let dir = crate::support::TempDir::new();
    let key = dir.path().join("session.key");
    crate::support::write_session_key(&key);
    let users = crate::support::basic_users_file(&dir, "ada", "pw");
    let key_arg = key.display().to_string();
    let lifetime = format!("{}s", LIFETIME.as_secs());
    let args = [
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--proxy-protocol",
        "--auth",
        &users,
        "--session-key",
        &key_arg,
        "--token-lifetime",
        &lifetime,
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let lb = start_balancer(&a, &b);

    // Signed in through HAProxy: one instance checked the password...
    let login = sign_in(lb.http);
    assert_eq!(login.status, 200, "{login}");
    let cookie = session_cookie(&login).expect("a session cookie");
    // ...and both honour the session.
    assert_eq!(session_at(&a, &cookie).0, 200);
    assert_eq!(session_at(&b, &cookie).0, 200);

    // The page's /ws, twice at once: HAProxy puts them on different instances,
    // and both relay.
    let mut first = ws_through(lb.http, &cookie);
    let mut second = ws_through(lb.http, &cookie);
    for (ws, text) in [(&mut first, "on one"), (&mut second, "on the other")] {
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

    // Renewed on one instance, the token is good on the other.
    let (status, renewed) = session_at(&a, &cookie);
    assert_eq!(status, 200);
    // (Within the same second it is the same token: expiry is in seconds.)
    let renewed = renewed.expect("a renewed cookie");
    assert_eq!(session_at(&b, &renewed).0, 200);

    // Signed out on instance a: a refuses at once and ends its socket now;
    // b keeps honouring the token it cannot know was signed out, until the
    // token expires, and then refuses it too.
    let logout = straight_to(
        &a,
        http::post("/api/logout", "").header("Cookie", renewed.as_str()),
    );
    let signed_out = Instant::now();
    assert_eq!(logout.status, 204, "{logout}");
    assert_eq!(session_at(&a, &renewed).0, 401);
    assert_eq!(session_at(&a, &cookie).0, 401, "every token of the session");
    let deadline = signed_out + LIFETIME + Duration::from_secs(2);
    while session_at(&b, &renewed).0 == 200 {
        assert!(
            Instant::now() < deadline,
            "b still honours a signed-out session"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let refused_after = signed_out.elapsed();
    eprintln!("signed out on a; b refused the session {refused_after:?} later (token lifetime {LIFETIME:?})");
    // The sockets: 1008 from the instance that saw the sign-out, 4001 from the
    // other when the token they were opened with expired.
    let mut codes = [close_code_of(&mut first), close_code_of(&mut second)];
    codes.sort_unstable();
    assert_eq!(codes, [1008, 4001]);
}

#[test]
fn the_shipped_configuration_behind_haproxy_serves_websockets_tcp_sign_in_and_metrics() {
    // deploy/timecho.toml as it is, with this machine's addresses (HAProxy
    // runs on loopback here, where the file trusts 10/8), and the sign-in
    // the README adds for several instances.
    let dir = crate::support::TempDir::new();
    let key = dir.path().join("session.key");
    std::fs::write(
        &key,
        "c2hhcmVkLWJ5LWJvdGgtaW5zdGFuY2VzLTAxMjM0NTY3ODlhYmNkZWY=\n",
    )
    .unwrap();
    let users = crate::support::basic_users_file(&dir, "ada", "pw");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/timecho.toml");
    let key_arg = key.display().to_string();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--auth",
        &users,
        "--session-key",
        &key_arg,
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let lb = start_balancer(&a, &b);

    let (_, reply) = one_exchange(lb.tcp, "through the balancer").expect("a TCP reply");
    assert_eq!(
        split_reply(reply.strip_suffix(b"\n").unwrap()).1,
        b"through the balancer"
    );

    let login = sign_in(lb.http);
    assert_eq!(login.status, 200, "{login}");
    let cookie = session_cookie(&login).expect("a session cookie");
    // Two sockets at once land on both instances; each reply is its own
    // message's echo (no stray replies, no mangled first reply).
    let mut first = ws_through(lb.http, &cookie);
    let mut second = ws_through(lb.http, &cookie);
    for (ws, text) in [(&mut first, "one"), (&mut second, "two")] {
        for n in 0..3 {
            let text = format!("{text} {n}");
            ws.send(tungstenite::Message::text(text.as_str())).unwrap();
            match ws.read().unwrap() {
                tungstenite::Message::Text(reply) => {
                    assert_eq!(split_reply(reply.as_bytes()).1, text.as_bytes())
                }
                other => panic!("expected a reply, got {other:?}"),
            }
        }
    }
    assert_eq!(
        (ws_sessions(&a), ws_sessions(&b)),
        (1, 1),
        "one socket on each"
    );
    // Metrics are scraped on their own listener, which takes no PROXY header.
    let metrics = scrape(a.listener("metrics"));
    assert!(
        metrics.contains("timecho_websocket_sessions_total"),
        "{metrics}"
    );
}
