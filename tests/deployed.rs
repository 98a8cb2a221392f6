//! timecho run as operators run it: from the shipped `deploy/timecho.toml` as it
//! is (only its addresses overridden), reloaded with SIGHUP whatever the
//! instance serves, and with the gateway and the TCP listener it feeds agreeing
//! on PROXY headers however `--proxy-protocol`, `--trusted-proxy` and
//! `--upstream` are combined; the shipped unit verified by `systemd-analyze`,
//! readiness told to a `NOTIFY_SOCKET`, `timecho health` as a container's
//! check, `/metrics` read by a Prometheus client library's parsers, and
//! browsers behind an HTTP proxy told apart by its forwarding headers.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::MaybeTlsStream;

use crate::support::{
    basic_users_file, http, on_free_addrs, parse_reply, scrape, serve_expecting_exit, split_reply,
    wait_for_metric, ws_connect, ws_exchange, Peer, Server, TempDir, Ws, REPLY_TIMEOUT,
};

/// How long a gauge or a freed place may take to settle after a session ends.
const SETTLE: Duration = Duration::from_secs(5);

/// The configuration file the README tells operators to install.
fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/timecho.toml")
}

/// The shipped file, with the test's addresses (the harness adds `--tcp
/// 127.0.0.1:0` and `--http 127.0.0.1:0`, which override the file's, and the
/// metrics listener moves to loopback too).
fn shipped(extra: &[&str]) -> Server {
    let config = shipped_config();
    let mut args = vec![
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    Server::start(&args)
}

fn tcp_exchange(addr: SocketAddr, text: &str) -> String {
    let mut peer = Peer::tcp(addr);
    peer.send(format!("{text}\n").as_bytes());
    String::from_utf8(parse_reply(&peer.read_line()).1).expect("UTF-8 echo")
}

#[tokio::test]
async fn the_shipped_configuration_serves_websockets_tcp_and_metrics() {
    let mut server = shipped(&[]);
    let mut ws = ws_connect(server.http_addr()).await;
    // Each reply is the echo of its own message: no stray replies made of a
    // PROXY header, no first reply mangled by one.
    for text in ["hello", "second", "third"] {
        assert_eq!(ws_exchange(&mut ws, text).await, text);
    }
    assert_eq!(tcp_exchange(server.tcp_addr(), "over tcp"), "over tcp");
    let metrics = scrape(server.http_addr());
    assert!(
        metrics.contains("timecho_websocket_sessions_total 1"),
        "{metrics}"
    );
    drop(ws);
    assert!(server.terminate().success(), "{}", server.stderr());
}

/// Opens `/ws` from the loopback address `source`, so that a test can trust
/// 127.0.0.1 (the gateway's own address) as a proxy and still be a browser.
async fn ws_from(source: &str, http: SocketAddr) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("an address"))
        .expect("bind the source address");
    let tcp = socket.connect(http).await.expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{http}/ws"), MaybeTlsStream::Plain(tcp))
            .await
            .expect("WebSocket handshake");
    ws
}

/// Only the gateway's own address is a trusted proxy; browsers come from elsewhere.
const GATEWAY_ONLY: [&str; 3] = ["--proxy-protocol", "--trusted-proxy", "127.0.0.1/32"];

#[tokio::test]
async fn a_browser_cannot_pass_its_bytes_off_as_a_proxy_header() {
    // The gateway relays to its own listener by address: with its address
    // trusted, that listener reads a header first, so the gateway must send one.
    // The address is named twice before the server starts: a free port.
    let (mut server, own) = on_free_addrs("timecho", |[own]| {
        let own_text = own.to_string();
        let mut args = vec!["--tcp", &own_text, "--upstream", &own_text];
        args.extend(GATEWAY_ONLY);
        Server::try_start(&args).map(|server| (server, own))
    });
    let mut ws = ws_from("127.0.0.2", server.http_addr()).await;
    let forged = format!("PROXY TCP4 203.0.113.66 127.0.0.1 4444 {}", own.port());
    assert_eq!(ws_exchange(&mut ws, &forged).await, forged);
    assert_eq!(ws_exchange(&mut ws, "hello").await, "hello");
    drop(ws);
    let log = server.stderr();
    assert!(!log.contains("203.0.113.66"), "{log}");
    assert!(server.terminate().success(), "{}", server.stderr());
}

#[tokio::test]
async fn the_gateway_introduces_browsers_only_to_a_listener_that_expects_it() {
    // Trusted: a header is sent and read. Not trusted (as in the shipped
    // file): none is sent, and the listener serves the gateway as a client.
    for trusted in ["127.0.0.1/32", "10.0.0.0/8"] {
        let server = Server::start(&["--proxy-protocol", "--trusted-proxy", trusted]);
        let mut ws = ws_from("127.0.0.2", server.http_addr()).await;
        for text in ["one", "two"] {
            assert_eq!(ws_exchange(&mut ws, text).await, text, "trusted {trusted}");
        }
    }
}

#[test]
fn combinations_that_cannot_work_are_refused_before_listening() {
    let exited = serve_expecting_exit(&["--allow", "10.0.0.0/8"]);
    assert!(
        exited.stderr.contains("which --allow/--deny refuse"),
        "{exited:?}"
    );
    let exited = serve_expecting_exit(&[
        "--upstream",
        "unix:/nonexistent.sock",
        "--upstream-proxy-protocol",
    ]);
    assert!(
        exited
            .stderr
            .contains("a unix socket takes no PROXY header"),
        "{exited:?}"
    );
    // Options that would break the reply contract: a newline in every stamp,
    // a stamp longer than the room receivers keep for it, raw framing behind
    // the gateway's one frame per line.
    let long = "%A %B ".repeat(20);
    for (args, said) in [
        (vec!["--time-format", "%H:%M\n"], "control character"),
        (vec!["--time-format", &long], "at most 253 fit"),
        (vec!["--framing", "raw"], "--framing raw answers each read"),
        // Sign-in's files are read before the banner, not after it.
        (
            vec!["--auth", "basic:/nonexistent/users"],
            "/nonexistent/users",
        ),
    ] {
        let exited = serve_expecting_exit(&args);
        assert!(exited.stderr.contains(said), "{args:?}: {exited:?}");
        assert!(!exited.stdout.contains("listening"), "{args:?}: {exited:?}");
        assert!(!exited.status.success(), "{args:?}: {exited:?}");
    }
    // It binds its listeners before it can tell: a free port, named twice.
    let exited = on_free_addrs("timecho", |[own]| {
        let own = own.to_string();
        let exited = serve_expecting_exit(&[
            "--tcp",
            &own,
            "--upstream",
            &own,
            "--upstream-proxy-protocol",
        ]);
        if exited.lost_its_port() {
            Err(exited.stderr)
        } else {
            Ok(exited)
        }
    });
    assert!(
        exited.stderr.contains("does not take a PROXY header"),
        "{exited:?}"
    );
}

/// Pipelines `lines` lines on one connection while `during` runs, and returns
/// how many replies came back, in order.
fn replies_while(addr: SocketAddr, lines: usize, during: impl FnOnce()) -> usize {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let mut batch = String::new();
        for n in 0..lines {
            batch.push_str(&format!("{n}\n"));
            if batch.len() > 16 * 1024 {
                writer.write_all(batch.as_bytes())?;
                batch.clear();
            }
        }
        writer.write_all(batch.as_bytes())?;
        writer.shutdown(Shutdown::Write)
    });
    during();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut answered = 0;
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = split_reply(line.strip_suffix(b"\n").expect("a whole line")).1;
        assert_eq!(text, answered.to_string().as_bytes(), "replies in order");
        answered += 1;
        line.clear();
    }
    sender.join().expect("sender").expect("all lines sent");
    answered
}

#[test]
fn sighup_reloads_what_it_can_and_never_stops_a_server() {
    let dir = TempDir::new();
    let users = basic_users_file(&dir, "ada", "lovelace");
    let unix = dir.path().join("timecho.sock");
    let unix = unix.to_str().expect("UTF-8");
    let kinds: [(&str, Vec<&str>, &str); 5] = [
        ("plain", vec![], "SIGHUP: nothing to reload"),
        ("no http", vec!["--no-http"], "SIGHUP: nothing to reload"),
        ("unix", vec!["--unix", unix], "SIGHUP: nothing to reload"),
        (
            "self-signed",
            vec!["--tls-self-signed", "--tcp-tls", "127.0.0.1:0"],
            "SIGHUP: nothing to reload",
        ),
        ("auth", vec!["--auth", &users], "SIGHUP: "),
    ];
    const LINES: usize = 50_000;
    for (kind, args, said) in kinds {
        let mut server = Server::start(&args);
        let answered = replies_while(server.tcp_addr(), LINES, || {
            for n in 1..=3 {
                server.signal(libc::SIGHUP);
                server.wait_for_log(said, n);
            }
        });
        assert_eq!(answered, LINES, "{kind}: replies lost around SIGHUP");
        assert!(server.is_running(), "{kind}: SIGHUP stopped the server");
        assert_eq!(tcp_exchange(server.tcp_addr(), "after"), "after", "{kind}");
        let status = server.terminate();
        assert!(status.success(), "{kind}: {status:?}\n{}", server.stderr());
        if kind == "unix" {
            assert!(!Path::new(unix).exists(), "the socket file was left behind");
        }
    }
}

/// `systemd-analyze` from Debian's `systemd` package (never booted here).
fn systemd_analyze() -> std::process::Command {
    let path = Path::new("/usr/bin/systemd-analyze");
    assert!(
        path.exists(),
        "systemd-analyze is not installed: run `cargo xtask test`, which installs it"
    );
    std::process::Command::new(path)
}

#[test]
fn the_shipped_unit_verifies_clean_and_is_hardened() {
    // A root as the README's install steps leave it: the binary where the
    // unit runs it, the unit beside the system's own units.
    let root = TempDir::new();
    let r = root.path();
    for dir in [
        "usr/local/bin",
        "bin",
        "etc/systemd/system",
        "usr/lib/systemd",
    ] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(r.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::copy(crate::support::bin(), r.join("usr/local/bin/timecho")).unwrap();
    let kill = ["/bin/kill", "/usr/bin/kill"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("kill(1)");
    std::fs::copy(kill, r.join("bin/kill")).unwrap();
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/timecho.service");
    std::fs::copy(&unit, r.join("etc/systemd/system/timecho.service")).unwrap();
    let verify = || {
        let out = systemd_analyze()
            .arg("verify")
            .arg(format!("--root={}", r.display()))
            .arg("timecho.service")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    };
    verify();
    // With the secrets drop-in installed as the README says.
    let drop_in = r.join("etc/systemd/system/timecho.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    let secrets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/timecho-secrets.conf");
    std::fs::copy(&secrets, drop_in.join("secrets.conf")).unwrap();
    verify();
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("\nType=notify\n"), "{unit_text}");

    let out = systemd_analyze()
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for timecho.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

#[test]
fn a_config_that_is_not_a_small_regular_file_is_refused_at_once() {
    let dir = TempDir::new();
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 * 1024 * 1024))).unwrap();
    for (path, said) in [
        (Path::new("/dev/zero"), "is not a regular file"),
        (fifo.as_path(), "is not a regular file"),
        (huge.as_path(), "is larger than"),
    ] {
        let exited = serve_expecting_exit(&["--config", path.to_str().unwrap()]);
        assert!(
            exited.stderr.contains(said),
            "{}: {exited:?}",
            path.display()
        );
    }
}

#[test]
fn secret_files_others_can_read_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let users = basic_users_file(&dir, "ada", "lovelace");
    let path = users.strip_prefix("basic:").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut server = Server::start(&["--auth", &users]);
    server.wait_for_log(&format!("chmod 600 {path}"), 1);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = Server::start(&["--auth", &users]);
    assert!(!server.stderr().contains("can be read by other users"));
}

/// A blocking TCP connection from the loopback address `source`.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    stream
}

/// What a server sends a connection that sends nothing, until it closes.
fn unasked(mut stream: TcpStream) -> String {
    use std::io::Read;
    let mut got = String::new();
    let _ = stream.read_to_string(&mut got);
    got
}

#[test]
fn one_address_gets_its_share_of_connections_and_others_are_served() {
    let server = Server::start(&["--max-connections-per-client", "5"]);
    let tcp = server.tcp_addr();
    let held: Vec<_> = (0..5).map(|_| connect_from("127.0.0.2", tcp)).collect();
    let mut held_line = held[0].try_clone().unwrap();
    held_line.write_all(b"still served\n").unwrap();
    let mut line = Vec::new();
    BufReader::new(&held[0])
        .read_until(b'\n', &mut line)
        .unwrap();
    assert!(line.ends_with(b"] still served\n"), "{line:?}");
    let refused = unasked(connect_from("127.0.0.2", tcp));
    assert!(
        refused.starts_with("error: too many connections from your address (5 at once)"),
        "{refused:?}"
    );
    let mut other = connect_from("127.0.0.3", tcp);
    other.write_all(b"hello\n").unwrap();
    line.clear();
    BufReader::new(&other).read_until(b'\n', &mut line).unwrap();
    assert!(line.ends_with(b"] hello\n"), "{line:?}");
    drop(held);
}

#[test]
fn idle_sockets_from_one_address_do_not_starve_the_http_listener() {
    // The default share (a quarter: 258) against 300 idle sockets from one
    // address, on an HTTP listener of 10 + 1,024 slots.
    let server = Server::start(&["--max-websockets", "10"]);
    let http = server.http_addr();
    let idle: Vec<_> = (0..300).map(|_| connect_from("127.0.0.2", http)).collect();
    let refused = unasked(connect_from("127.0.0.2", http));
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused:?}");
    for _ in 0..30 {
        let answer = http::get("/healthz")
            .host("localhost")
            .send_on(connect_from("127.0.0.3", http));
        assert_eq!(answer.status, 200, "{answer}");
    }
    let per_client = crate::support::metric(http, "timecho_errors_total", &["kind=\"PerClient\""]);
    assert!(per_client >= 43.0, "{per_client} refusals counted");
    drop(idle);
}

#[tokio::test]
async fn the_gateways_own_sessions_are_not_one_client_of_its_tcp_listener() {
    // Five browsers, each within its share of the HTTP listener; all five
    // sessions reach the TCP listener from the gateway's one address.
    let server = Server::start(&["--max-connections-per-client", "2"]);
    let mut sockets = Vec::new();
    for n in 2..7 {
        let mut ws = ws_from(&format!("127.0.0.{n}"), server.http_addr()).await;
        assert_eq!(ws_exchange(&mut ws, "hello").await, "hello", "browser {n}");
        sockets.push(ws);
    }
}

/// The handshake a browser from `source` gets: the WebSocket, or the status
/// and body of the refusal.
async fn try_ws_from(source: &str, http: SocketAddr) -> Result<Ws, String> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("an address"))
        .expect("bind the source address");
    let tcp = socket.connect(http).await.expect("connect");
    match tokio_tungstenite::client_async(format!("ws://{http}/ws"), MaybeTlsStream::Plain(tcp))
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(format!(
            "{} {}",
            response.status(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn open_websockets_count_against_their_browsers_share() {
    // Each session holds its TCP connection for its whole life, after the
    // HTTP exchange that opened it: so it holds its place in the share too.
    let server = Server::start(&["--max-connections-per-client", "2"]);
    let http = server.http_addr();
    let mut first = ws_from("127.0.0.2", http).await;
    assert_eq!(ws_exchange(&mut first, "one").await, "one");
    let mut second = ws_from("127.0.0.2", http).await;
    assert_eq!(ws_exchange(&mut second, "two").await, "two");
    let refused = try_ws_from("127.0.0.2", http).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|r| r.starts_with("429") && r.contains("too many connections")),
        "a third session from the same address: {refused:?}"
    );
    // Another browser has its own share.
    let mut other = ws_from("127.0.0.3", http).await;
    assert_eq!(ws_exchange(&mut other, "three").await, "three");
    // A session that ends gives its place back, as its socket closes (just
    // after the gauge falls).
    first.close(None).await.expect("close");
    while first.next().await.is_some() {}
    wait_for_metric(http, "timecho_websocket_sessions_open", &[], 2.0, SETTLE);
    let deadline = Instant::now() + SETTLE;
    let mut again = loop {
        match try_ws_from("127.0.0.2", http).await {
            Ok(ws) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "the closed session's place: {e}"),
        }
    };
    assert_eq!(ws_exchange(&mut again, "four").await, "four");
}

#[test]
fn the_default_limits_fit_the_descriptor_limit_so_the_busy_answer_comes_first() {
    // 3,000 descriptors: the defaults (10,000 connections and 10,000
    // WebSockets) would not fit; they are fitted, and said so.
    let mut server = Server::start_with_nofile(3_000, &["--max-connections-per-client", "100000"]);
    let log = server.wait_for_log("file descriptors allowed: at most", 1);
    let limit: usize = log
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no limit in:\n{log}"));
    assert!(limit < 1_000, "{limit} connections on 3,000 descriptors");
    let tcp = server.tcp_addr();
    let held: Vec<_> = (0..limit)
        .map(|_| TcpStream::connect(tcp).unwrap())
        .collect();
    // The next client is told, not left waiting in the backlog.
    let mut extra = TcpStream::connect(tcp).unwrap();
    extra.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(&mut extra).read_line(&mut line);
    assert!(line.starts_with("error: server busy"), "{line:?}");
    // The HTTP listener still has room for a balancer's health check.
    let probe = http::get("/healthz")
        .host("localhost")
        .send(server.http_addr());
    assert_eq!(probe.status, 200, "{probe}");
    drop(held);
}

#[test]
fn a_bad_value_is_reported_with_the_source_the_user_wrote_and_exit_status_2() {
    let dir = TempDir::new();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max-line = 0\n").unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = crate::support::timecho();
        cmd.envs(env.iter().copied()).arg("serve").args(args);
        crate::support::run_to_exit(cmd, b"", REPLY_TIMEOUT)
    };
    let cases = [
        run(&[], &["--config", file.to_str().unwrap(), "--no-http"]),
        run(&[("TIMECHO_MAX_LINE", "0")], &["--no-http"]),
        run(&[], &["--max-line", "0", "--no-http"]),
    ];
    let said = [
        "key \"max-line\"",
        "environment variable TIMECHO_MAX_LINE=\"0\"",
        "'--max-line <BYTES>'",
    ];
    for (exited, said) in cases.iter().zip(said) {
        assert_eq!(exited.status.code(), Some(2), "{exited:?}");
        assert!(exited.stderr.contains(said), "{said}: {exited:?}");
        assert!(
            exited.stderr.contains("0 is too small: the least is 1"),
            "{exited:?}"
        );
    }
}

#[test]
fn a_full_http_listener_still_answers_a_balancers_health_checks() {
    // Four clients fill all 1 + 1,024 HTTP slots with idle sockets; a probe
    // past the limit still gets its answer on a probe slot.
    let server = Server::start(&[
        "--max-websockets",
        "1",
        "--max-connections-per-client",
        "300",
    ]);
    let http = server.http_addr();
    let idle: Vec<_> = (0..1025)
        .map(|n| connect_from(&format!("127.0.0.{}", 2 + n / 300), http))
        .collect();
    let answer = http::get("/readyz")
        .host("localhost")
        .send_on(connect_from("127.0.0.9", http));
    assert_eq!(answer.status, 200, "{answer}");
    // The page itself is not served past the limit.
    let answer = http::get("/")
        .host("localhost")
        .try_send_on(connect_from("127.0.0.9", http));
    assert!(
        answer.as_ref().map_or(true, |answer| answer.status != 200),
        "{answer:?}"
    );
    drop(idle);
}

#[test]
fn the_shipped_configuration_lets_prometheus_scrape_and_answers_the_sites_name() {
    // Trusted as the balancer's range is in the file (10/8 there, loopback
    // here): the HTTP listener waits for a PROXY header that a scraper does
    // not send, and drops it; the file's metrics listener answers it.
    let server = shipped(&["--trusted-proxy", "127.0.0.0/8", "--proxy-timeout", "300ms"]);
    let scraper = http::get("/metrics").host("localhost");
    match scraper.try_send(server.http_addr()) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) => {}
        other => panic!("the HTTP listener answered a scraper: {other:?}"),
    }
    let answer = scraper.send(server.metrics_addr());
    assert_ne!(server.metrics_addr(), server.http_addr());
    assert_eq!(answer.status, 200, "{answer}");
    // A browser (not trusted) asking for the page under the file's site name
    // gets it; another name gets 421.
    let server = shipped(&[]);
    for (host, status) in [("timecho.example.org", 200), ("elsewhere.example", 421)] {
        let answer = http::get("/").host(host).send(server.http_addr());
        assert_eq!(answer.status, status, "{host}: {}", answer.status);
    }
}

/// The next datagram on systemd's notification socket.
fn notified(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_is_told_ready_once_listening_reloading_around_sighup_and_stopping() {
    let dir = TempDir::new();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let path = path.to_str().unwrap();
    let mut server = Server::start_with_env(&[("NOTIFY_SOCKET", path)], &["--udp", "127.0.0.1:0"]);
    let ready = notified(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Ready means every listener answers.
    assert_eq!(tcp_exchange(server.tcp_addr(), "ready"), "ready");
    let udp = crate::support::Datagrams::connect(server.udp_addr());
    udp.send(b"ready");
    assert!(udp.recv().ends_with(b"ready"));
    assert_eq!(http::get("/readyz").send(server.http_addr()).status, 200);

    server.signal(libc::SIGHUP);
    let reloading = notified(&socket);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let again = notified(&socket);
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");

    server.sigterm();
    let stopping = notified(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = server.wait_exit(std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", server.stderr());
}

/// `timecho health ARGS`, to its exit.
fn health(args: &[&str]) -> crate::support::Exited {
    let mut cmd = crate::support::timecho();
    cmd.arg("health").args(args);
    crate::support::run_to_exit(cmd, b"", REPLY_TIMEOUT)
}

#[test]
fn health_exits_0_only_while_readyz_answers_200() {
    let mut server = Server::start(&["--shutdown-delay", "2s"]);
    let url = format!("http://{}/readyz", server.http_addr());
    let ok = health(&[&url]);
    assert!(ok.status.success(), "{ok:?}");
    // The path defaults to /readyz.
    let bare = health(&[&format!("http://{}", server.http_addr())]);
    assert!(bare.status.success(), "{bare:?}");
    // Draining: /readyz says 503.
    server.sigterm();
    server.wait_for_log("draining", 1);
    let draining = health(&[&url]);
    assert_eq!(draining.status.code(), Some(1), "{draining:?}");
    assert!(draining.stderr.contains("503"), "{draining:?}");
    let status = server.wait_exit(std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", server.stderr());
    // Nothing listening.
    let refused = health(&[&url]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    // A listener that never answers: given up on after --timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let hung = health(&[
        "--timeout",
        "300ms",
        &format!("http://{}/readyz", silent.local_addr().unwrap()),
    ]);
    assert_eq!(hung.status.code(), Some(1), "{hung:?}");
    assert!(hung.stderr.contains("no answer"), "{hung:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let https = health(&["https://localhost/readyz"]);
    assert_eq!(https.status.code(), Some(1), "{https:?}");
    assert!(https.stderr.contains("not an http:// URL"), "{https:?}");
}

/// Debian's python3, where `cargo xtask test` installs python3-prometheus-client.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A scrape of `/metrics` on `addr` with `accept`: the content type and body.
fn scrape_as(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let request = http::get("/metrics").host("localhost");
    let request = match accept {
        Some(accept) => request.header("Accept", accept),
        None => request,
    };
    let answer = request.send(addr);
    assert_eq!(answer.status, 200, "{answer}");
    let content_type = answer
        .header("content-type")
        .unwrap_or_else(|| panic!("no content-type in {answer}"));
    (content_type.to_owned(), answer.text())
}

/// The samples a Prometheus client library's parser reads in `body`:
/// (family, type, sample name, labels, value) per line.
fn parsed(format: &str, body: &str) -> Vec<[String; 5]> {
    assert!(
        Path::new(SYSTEM_PYTHON).exists(),
        "{SYSTEM_PYTHON} is missing: run `cargo xtask test`, which installs python3-prometheus-client"
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/deployed_support/parse_metrics.py");
    let mut cmd = std::process::Command::new(SYSTEM_PYTHON);
    cmd.arg(script).arg(format);
    let out = crate::support::run_to_exit(cmd, body.as_bytes(), REPLY_TIMEOUT);
    assert!(
        out.status.success(),
        "{format} parser refused the body: {}\n{body}",
        out.stderr
    );
    out.stdout
        .lines()
        .map(|l| {
            let f: Vec<_> = l.split('\t').map(String::from).collect();
            f.try_into()
                .unwrap_or_else(|f| panic!("a sample line: {f:?}"))
        })
        .collect()
}

#[test]
fn prometheus_clients_read_every_series_typed_in_the_format_they_asked_for() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    assert_eq!(tcp_exchange(server.tcp_addr(), "counted"), "counted");
    const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, content_type, format) in [
        (
            Some(PROMETHEUS),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "openmetrics",
        ),
        (None, "text/plain; version=0.0.4; charset=utf-8", "text"),
        (
            Some("text/plain;version=0.0.4"),
            "text/plain; version=0.0.4; charset=utf-8",
            "text",
        ),
    ] {
        let (got_type, body) = scrape_as(server.http_addr(), accept);
        assert_eq!(got_type, content_type, "{accept:?}");
        let samples = parsed(format, &body);
        let type_of = |sample: &str| {
            samples
                .iter()
                .find(|s| s[2] == sample)
                .map(|s| s[1].as_str())
                .unwrap_or_else(|| panic!("{format}: no {sample} in\n{body}"))
        };
        // Nothing the parser could not type (a 0.0.4 parser reading
        // OpenMetrics names types every counter `unknown`).
        for s in &samples {
            assert!(
                s[1] != "unknown" && s[1] != "untyped",
                "{format}: {s:?}\n{body}"
            );
        }
        for counter in [
            "timecho_lines_in_total",
            "timecho_connections_accepted_total",
            "process_cpu_seconds_total",
        ] {
            assert_eq!(type_of(counter), "counter", "{format}: {counter}");
        }
        for gauge in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "timecho_connections_open",
        ] {
            assert_eq!(type_of(gauge), "gauge", "{format}: {gauge}");
        }
        let info = if format == "openmetrics" {
            "info"
        } else {
            "gauge"
        };
        assert_eq!(type_of("timecho_build_info"), info);
        let build = samples
            .iter()
            .find(|s| s[2] == "timecho_build_info")
            .unwrap();
        assert!(
            build[3].contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
            "{build:?}"
        );
        let lines_in: f64 = samples
            .iter()
            .filter(|s| s[2] == "timecho_lines_in_total" && s[3].contains("listener=tcp"))
            .map(|s| s[4].parse::<f64>().unwrap())
            .sum();
        assert!(lines_in >= 1.0, "{format}: {lines_in}");
        // Series that cannot move are not exported: no UDP budget on TCP.
        assert!(
            !samples
                .iter()
                .any(|s| s[3].contains("kind=UdpBudget") && s[3].contains("listener=tcp")),
            "{format}"
        );
        assert!(
            samples.iter().any(|s| s[3].contains("kind=UdpBudget")),
            "{format}"
        );
    }
}

/// Opens `/ws` from the loopback address `source` with these forwarding
/// headers: the socket, or the status the handshake was refused with.
async fn ws_forwarded(source: &str, http: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(http).await.unwrap();
    let mut request = format!("ws://{http}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("handshake from {source}: {e}"),
    }
}

/// A proxy at 127.0.0.5 is trusted for its forwarding headers; each browser
/// may hold one connection; 203.0.113.66 is denied.
const BEHIND_AN_HTTP_PROXY: [&str; 7] = [
    "--forwarded-headers",
    "--trusted-proxy",
    "127.0.0.5/32",
    "--max-connections-per-client",
    "1",
    "--deny",
    "203.0.113.66/32",
];

#[tokio::test]
async fn browsers_behind_a_trusted_http_proxy_get_separate_shares_and_rules() {
    let server = Server::start(&BEHIND_AN_HTTP_PROXY);
    let http = server.http_addr();
    const XFF: &str = "x-forwarded-for";
    // Two browsers through one proxy: each gets its own share.
    let mut first = ws_forwarded("127.0.0.5", http, &[(XFF, "203.0.113.7")])
        .await
        .expect("the first browser");
    let mut second = ws_forwarded("127.0.0.5", http, &[(XFF, "203.0.113.8")])
        .await
        .expect("the second browser, through the same proxy");
    assert_eq!(ws_exchange(&mut first, "one").await, "one");
    assert_eq!(ws_exchange(&mut second, "two").await, "two");
    // RFC 7239's header counts the same way.
    let mut third = ws_forwarded("127.0.0.5", http, &[("forwarded", "for=203.0.113.9")])
        .await
        .expect("a third browser, named with Forwarded");
    assert_eq!(ws_exchange(&mut third, "three").await, "three");
    // The first browser's share is held by its session: a second socket is
    // refused, whatever it claims further left.
    let again = ws_forwarded("127.0.0.5", http, &[(XFF, "198.51.100.1, 203.0.113.7")]).await;
    assert_eq!(again.err(), Some(429));
    // --deny applies to the browser the proxy names.
    let denied = ws_forwarded("127.0.0.5", http, &[(XFF, "203.0.113.66")]).await;
    assert_eq!(denied.err(), Some(403));
    // A session that ends gives its share back.
    drop(first);
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        match ws_forwarded("127.0.0.5", http, &[(XFF, "203.0.113.7")]).await {
            Ok(_) => break,
            Err(status) => {
                assert!(std::time::Instant::now() < deadline, "still {status}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let server = Server::start(&BEHIND_AN_HTTP_PROXY);
    let http = server.http_addr();
    // A browser at 127.0.0.2 claims to be a proxy's client: it is served as
    // itself (not denied as 203.0.113.66), and its share is its own address's.
    let forged = [
        ("x-forwarded-for", "203.0.113.66"),
        ("forwarded", "for=203.0.113.66"),
    ];
    let mut ws = ws_forwarded("127.0.0.2", http, &forged)
        .await
        .expect("served as itself");
    assert_eq!(ws_exchange(&mut ws, "hello").await, "hello");
    // Its connections count for its own address, whatever it claims: with
    // its one connection held, the next is refused at once.
    let refused = tokio::task::spawn_blocking(move || {
        let held = connect_from("127.0.0.2", http);
        let refused = http::get("/healthz")
            .host("localhost")
            .header("X-Forwarded-For", "203.0.113.8")
            .send_on(connect_from("127.0.0.2", http));
        drop(held);
        refused
    })
    .await
    .unwrap();
    assert_eq!(refused.status, 429, "{refused}");
    // From the trusted proxy, a header that names no one (malformed, or two
    // that disagree) leaves the proxy as the client: nothing is denied.
    for headers in [
        vec![("x-forwarded-for", "203.0.113.66 , not-an-address")],
        vec![
            ("x-forwarded-for", "203.0.113.66"),
            ("forwarded", "for=203.0.113.9"),
        ],
        vec![("forwarded", "for=unknown")],
    ] {
        let mut ws = ws_forwarded("127.0.0.5", http, &headers)
            .await
            .unwrap_or_else(|status| panic!("{headers:?}: {status}"));
        assert_eq!(ws_exchange(&mut ws, "ok").await, "ok", "{headers:?}");
    }
}

/// `POST /api/login` with a wrong password from `source`, naming `client`
/// in X-Forwarded-For: the status.
fn wrong_login_from(source: &str, http: SocketAddr, client: &str) -> u16 {
    http::post("/api/login", r#"{"user":"ada","password":"wrong"}"#)
        .host("localhost")
        .header("X-Forwarded-For", client)
        .header("Content-Type", "application/json")
        .send_on(connect_from(source, http))
        .status
}

#[test]
fn the_sign_in_limit_counts_each_browser_behind_a_trusted_http_proxy() {
    let dir = TempDir::new();
    let users = basic_users_file(&dir, "ada", "lovelace");
    let server = Server::start(&[
        "--forwarded-headers",
        "--trusted-proxy",
        "127.0.0.5/32",
        "--auth",
        &users,
    ]);
    let http = server.http_addr();
    // One browser guessing runs into its limit...
    let statuses: Vec<_> = (0..8)
        .map(|_| wrong_login_from("127.0.0.5", http, "203.0.113.7"))
        .collect();
    assert_eq!(statuses.first(), Some(&401), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // ...while another behind the same proxy is still heard.
    assert_eq!(wrong_login_from("127.0.0.5", http, "203.0.113.8"), 401);
}
