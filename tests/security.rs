//! TLS and access control over real sockets: `--tcp-tls` with openssl and with
//! rustls clients, wss with a test CA, certificate reload on SIGHUP, plaintext on
//! a TLS port, `--allow`/`--deny`, and sign-in for the page's API and `/ws`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::http::{self, Response};
use crate::support::{parse_reply, serve_expecting_exit, Server, TempDir, REPLY_TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A test CA and a `localhost`/`127.0.0.1` certificate it signed, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("timecho test CA {name}"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, leaf.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

/// A server with `pki`'s certificate on a `--tcp-tls` and an https listener:
/// the server, and those two addresses.
fn tls_server(pki: &Pki, extra: &[&str]) -> (Server, SocketAddr, SocketAddr) {
    let mut args = vec![
        "--tcp-tls",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let (tls, https) = (server.listener("tls"), server.listener("https"));
    (server, tls, https)
}

fn connector(ca: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type TlsLines = BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn tls_connect(addr: SocketAddr, ca: &Path) -> std::io::Result<TlsLines> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    Ok(BufReader::new(connector(ca).connect(name, tcp).await?))
}

async fn exchange(conn: &mut TlsLines, text: &str) -> String {
    conn.get_mut()
        .write_all(format!("{text}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(REPLY_TIMEOUT, conn.read_line(&mut line))
        .await
        .expect("a reply in time")
        .unwrap();
    line
}

#[test]
fn tls_listener_speaks_the_wire_format_to_openssl_s_client() {
    let dir = TempDir::new();
    let pki = make_pki(dir.path(), "a");
    let (_server, tls_addr, _) = tls_server(&pki, &[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
        .arg(&pki.ca)
        .args([
            "-connect",
            &tls_addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (cargo xtask test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello over tls\n")
        .unwrap();
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut buf = [0u8; 256];
    while !out.ends_with(b"\n") && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = out.strip_suffix(b"\n").unwrap_or(&out);
    let (_, text) = parse_reply(line);
    assert_eq!(text, b"hello over tls");
}

#[test]
fn timecho_client_verifies_the_server_certificate() {
    let dir = TempDir::new();
    let pki = make_pki(dir.path(), "a");
    let other = make_pki(dir.path(), "other");
    let (_server, tls_addr, _) = tls_server(&pki, &[]);
    let run = |ca: &Path| {
        let mut child = crate::support::timecho()
            .args(["client", "--tls", "--ca"])
            .arg(ca)
            .arg(format!("localhost:{}", tls_addr.port()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"one\ntwo\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let good = run(&pki.ca);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let texts = crate::support::reply_texts(&good.stdout);
    assert_eq!(texts, vec![b"one".to_vec(), b"two".to_vec()]);

    let wrong = run(&other.ca);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    // In plain words, with what to do; no rustls variant names.
    assert!(
        err.contains("not signed by a CA this machine trusts"),
        "{err}"
    );
    assert!(
        err.contains("--ca FILE") && !err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(wrong.stdout.is_empty());
}

#[test]
fn plaintext_client_on_a_tls_port_is_closed_promptly() {
    let dir = TempDir::new();
    let pki = make_pki(dir.path(), "a");
    let (_server, tls_addr, _) = tls_server(&pki, &[]);
    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    plain.write_all(b"hello, no tls here\n").unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let result = plain.read_to_end(&mut got);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(
        result.is_ok() || result.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
    );
    // Whatever came back is a TLS alert record, never an echo.
    assert!(!got.windows(5).any(|w| w == b"hello"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_reload_on_sighup_keeps_open_connections() {
    let dir = TempDir::new();
    let first = make_pki(dir.path(), "first");
    let live = Pki {
        ca: first.ca.clone(),
        cert: dir.path().join("live-cert.pem"),
        key: dir.path().join("live-key.pem"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let (server, tls_addr, _) = tls_server(&live, &[]);

    let mut kept = tls_connect(tls_addr, &first.ca).await.unwrap();
    assert!(exchange(&mut kept, "before").await.ends_with("] before\n"));

    let second = make_pki(dir.path(), "second");
    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    server.signal(libc::SIGHUP);

    // New handshakes soon present the new certificate: the old CA stops working.
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        match tls_connect(tls_addr, &second.ca).await {
            Ok(mut fresh) => {
                assert!(exchange(&mut fresh, "after").await.ends_with("] after\n"));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the new certificate was not served: {e}"),
        }
    }
    assert!(tls_connect(tls_addr, &first.ca).await.is_err());
    // The connection made before the reload is untouched.
    assert!(exchange(&mut kept, "still here")
        .await
        .ends_with("] still here\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wss_relays_with_a_test_ca() {
    let dir = TempDir::new();
    let pki = make_pki(dir.path(), "a");
    let (_server, _, https_addr) = tls_server(&pki, &[]);
    let tcp = tokio::net::TcpStream::connect(https_addr).await.unwrap();
    let tls = connector(&pki.ca)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let request = format!("wss://localhost:{}/ws", https_addr.port())
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    ws.send(Message::text("secure hello")).await.unwrap();
    let reply = tokio::time::timeout(REPLY_TIMEOUT, ws.next())
        .await
        .expect("a reply in time")
        .expect("the socket stays open")
        .unwrap();
    let text = reply.into_text().unwrap();
    let (_, echoed) = parse_reply(text.as_bytes());
    assert_eq!(echoed, b"secure hello");
}

/// Connects from `source` (a loopback address) to `server`.
fn connect_from(source: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(format!("{source}:0").parse().unwrap())?;
        socket.connect(server).await?.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

#[test]
fn denied_address_gets_nothing_and_others_are_served() {
    let server = Server::start(&["--deny", "127.0.0.2/32", "--no-http"]);
    let addr = server.tcp_addr();

    let mut denied = connect_from("127.0.0.2", addr).unwrap();
    denied.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let _ = denied.write_all(b"let me in\n");
    let mut got = Vec::new();
    let _ = denied.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "a denied client got {:?}",
        String::from_utf8_lossy(&got)
    );

    let mut allowed = crate::support::Peer::tcp(addr);
    allowed.send(b"welcome\n");
    let (_, text) = parse_reply(&allowed.read_line());
    assert_eq!(text, b"welcome");
}

/// Whether a client from `source` gets its line answered by `addr`.
fn served_from(source: &str, addr: SocketAddr) -> bool {
    let mut s = connect_from(source, addr).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let _ = s.write_all(b"am I in?\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    !got.is_empty()
}

#[test]
fn rules_written_as_the_log_prints_addresses_match_on_a_dual_stack_listener() {
    // An IPv4 client of [::] arrives as ::ffff:127.0.0.6; the log says
    // 127.0.0.6, and a rule written either way matches it.
    for deny in ["::ffff:127.0.0.6/128", "127.0.0.6"] {
        let mut server = Server::start(&["--tcp", "[::]:0", "--deny", deny, "--no-http"]);
        let port = server.listener_on("tcp", "::").port();
        let dual = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
        assert!(
            !served_from("127.0.0.6", dual),
            "--deny {deny} did not match"
        );
        assert!(
            served_from("127.0.0.7", dual),
            "--deny {deny} matched another client"
        );
        let log = server.stderr();
        assert!(
            !log.contains("::ffff:"),
            "a mapped address in the log:\n{log}"
        );
    }
    let server = Server::start(&[
        "--tcp",
        "[::]:0",
        "--allow",
        "::ffff:127.0.0.6/128",
        "--no-http",
    ]);
    let port = server.listener_on("tcp", "::").port();
    let dual = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    assert!(
        served_from("127.0.0.6", dual),
        "--allow did not let the client in"
    );
    assert!(!served_from("127.0.0.7", dual));
    let exited = serve_expecting_exit(&["--deny", "::ffff:0:0/80"]);
    assert!(exited.stderr.contains("IPv4 ranges"), "{exited:?}");
}

/// `POST /api/login` as a script would send it (no `Origin`).
fn login(addr: SocketAddr, user: &str, password: &str) -> Response {
    let body = format!(r#"{{"user":"{user}","password":"{password}"}}"#);
    http::post("/api/login", body)
        .header("Content-Type", "application/json")
        .send(addr)
}

fn auth_server(dir: &TempDir) -> Server {
    auth_server_with(dir, &[])
}

fn auth_server_with(dir: &TempDir, extra: &[&str]) -> Server {
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "script-token-123\n").unwrap();
    let basic = crate::support::basic_users_file(dir, "ada", "lovelace");
    let token = format!("token:{}", tokens.display());
    let mut args = vec!["--http", "127.0.0.1:0", "--auth", &basic, "--auth", &token];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn sign_in_sets_a_strict_cookie_and_bad_passwords_are_rate_limited() {
    let dir = TempDir::new();
    let mut server = auth_server(&dir);
    let addr = server.http_addr();

    let response = http::get("/api/session").send(addr);
    assert_eq!(response.status, 401, "{response}");
    assert!(response.text().contains("sign in first"), "{response}");

    let response = login(addr, "ada", "lovelace");
    assert_eq!(response.status, 200);
    let cookie = response.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let response = http::get("/api/session")
        .header("Cookie", session)
        .send(addr);
    assert_eq!(response.status, 200);
    assert!(response.text().contains(r#""user":"ada""#), "{response}");

    // Every attempt counts, right or wrong: the sign-in above was the first of
    // five a minute.
    for _ in 0..4 {
        let response = login(addr, "ada", "wrong");
        assert_eq!(response.status, 401, "{response}");
        assert!(
            response.text().contains("wrong user name or password"),
            "{response}"
        );
    }
    let response = login(addr, "ada", "lovelace");
    assert_eq!(response.status, 429, "{response}");
    // Failed sign-ins are logged, but never with the password.
    let log = server.wait_for_log("sign-in refused", 1);
    assert!(
        !log.contains("lovelace") && !log.contains("wrong\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ws_without_a_session_is_refused_and_a_token_lets_scripts_in() {
    let dir = TempDir::new();
    let mut server = auth_server(&dir);
    let addr = server.http_addr();
    let url = format!("ws://{addr}/ws");

    // A script without credentials: 401.
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // A page without a session: the socket opens and closes with 1008 and the reason.
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", format!("http://{addr}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    match tokio::time::timeout(REPLY_TIMEOUT, ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason.as_str(), "sign in first");
        }
        other => panic!("expected a 1008 close, got {other:?}"),
    }

    // A script with its bearer token gets relayed.
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer script-token-123".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text("token ok")).await.unwrap();
    let reply = tokio::time::timeout(REPLY_TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (_, text) = parse_reply(reply.into_text().unwrap().as_bytes());
    assert_eq!(text, b"token ok");

    // Secrets never reach the log.
    let log = server.stderr();
    assert!(
        !log.contains("lovelace") && !log.contains("script-token-123"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_ends_the_pages_open_websocket() {
    let dir = TempDir::new();
    let server = auth_server_with(&dir, &["--ws-ping", "200ms"]);
    let addr = server.http_addr();
    let response = tokio::task::spawn_blocking(move || login(addr, "ada", "lovelace"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let session = response
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();

    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("origin", format!("http://{addr}").parse().unwrap());
    headers.insert("cookie", session.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text("signed in")).await.unwrap();
    let reply = tokio::time::timeout(REPLY_TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(reply.into_text().unwrap().ends_with("] signed in"));

    let cookie = session.clone();
    let response = tokio::task::spawn_blocking(move || {
        http::post("/api/logout", "")
            .header("Cookie", cookie)
            .send(addr)
    })
    .await
    .unwrap();
    assert_eq!(response.status, 204);
    let closed = tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("the socket is closed soon after sign-out");
    let frame = closed.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "signed out");
}

/// Runs a `timecho ...` command line as the banner prints it, with `input`.
fn run_as_printed(command: &str, input: &[u8]) -> crate::support::Exited {
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("timecho"), "{command}");
    let mut cmd = crate::support::timecho();
    cmd.args(words);
    crate::support::run_to_exit(cmd, input, REPLY_TIMEOUT)
}

#[test]
fn the_self_signed_banners_try_line_works_as_printed_and_without_the_pin_says_what_to_do() {
    let server = Server::start(&["--tls-self-signed", "--tcp-tls", "127.0.0.1:0", "--no-http"]);
    let try_line = server
        .banner()
        .iter()
        .find_map(|l| l.split("try: ").nth(1).filter(|t| t.contains("--tls")))
        .expect("a try line for the TLS listener")
        .to_owned();
    assert!(try_line.contains("--pin sha256:"), "{try_line}");
    let out = run_as_printed(&try_line, b"hello\n");
    assert!(
        out.status.success() && out.stdout.ends_with("] hello\n"),
        "{try_line}: {out:?}"
    );

    let addr = server.listener("tls").to_string();
    let unpinned = run_as_printed(&format!("timecho client --tls {addr}"), b"hello\n");
    assert!(!unpinned.status.success(), "{unpinned:?}");
    assert!(
        unpinned
            .stderr
            .contains("not signed by a CA this machine trusts")
            && unpinned.stderr.contains("--pin sha256:")
            && !unpinned.stderr.contains("UnknownIssuer"),
        "{unpinned:?}"
    );
    let wrong = format!(
        "timecho client --tls --pin sha256:{} {addr}",
        "00".repeat(32)
    );
    let wrong = run_as_printed(&wrong, b"hello\n");
    assert!(wrong.stderr.contains("not the one pinned"), "{wrong:?}");
}

#[test]
fn an_openssl_self_signed_certificate_given_as_ca_is_trusted() {
    let dir = TempDir::new();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success());
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tcp-tls",
        "127.0.0.1:0",
        "--no-http",
    ]);
    let port = server.listener("tls").port();
    let line = format!(
        "timecho client --tls --ca {} localhost:{port}",
        cert.display()
    );
    let out = run_as_printed(&line, b"hello\n");
    assert!(
        out.status.success() && out.stdout.ends_with("] hello\n"),
        "{out:?}"
    );
}
