//! Host names where people type addresses: `serve --tcp localhost:8899`,
//! `--http localhost:8080`, `--upstream localhost:8899`, `client localhost:8899`.
//! A name is bound on every address it resolves to (127.0.0.1, and ::1 where
//! localhost has it), so the tests accept one address or several.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{
    assert_texts, http, on_free_addrs, reply_texts, run_to_exit, serve_expecting_exit, timecho,
    ws_exchange, Peer, Server, REPLY_TIMEOUT,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// One line over TCP to `addr`, and its echo.
fn echo(addr: SocketAddr, text: &str) {
    let mut peer = Peer::tcp(addr);
    peer.send(format!("{text}\n").as_bytes());
    peer.close_write();
    assert_texts(&reply_texts(&peer.read_to_end()), &[text]);
}

/// `GET /` with `Host: host`: the status.
fn status(addr: SocketAddr, host: &str) -> u16 {
    http::get("/").host(host).send(addr).status
}

#[test]
fn tcp_given_localhost_listens_on_every_address_of_the_name() {
    let server = Server::start(&["--tcp", "localhost:0"]);
    // The first listener is the 127.0.0.1:0 every test server gets.
    let named = &server.tcp_addrs()[1..];
    assert!(!named.is_empty(), "no listener for localhost");
    for &addr in named {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        echo(addr, &format!("hello over {addr}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_given_localhost_serves_the_page_and_the_gateway_by_that_name() {
    // One port on every address of the name, as an operator gives it: port 0
    // would give each address its own, so a free port is named.
    let (server, port) = on_free_addrs("timecho", |[free]| {
        let port = free.port();
        Server::try_start(&["--http", &format!("localhost:{port}")]).map(|s| (s, port))
    });
    let listeners = server.http_addrs();
    assert!(!listeners.is_empty());
    for addr in listeners {
        assert!(addr.ip().is_loopback() && addr.port() == port, "{addr}");
        // The page, or the notice that this build has none; never 421 for our own name.
        let ours = status(addr, &format!("localhost:{port}"));
        assert!(ours == 200 || ours == 503, "{addr}: {ours}");
        let evil = status(addr, &format!("evil.example:{port}"));
        assert_eq!(evil, 421, "{addr}");
    }
    let request = format!("ws://localhost:{port}/ws")
        .into_client_request()
        .unwrap();
    let (mut ws, _) =
        tokio::time::timeout(REPLY_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .expect("a handshake in time")
            .expect("the gateway upgrades ws://localhost");
    assert_eq!(ws_exchange(&mut ws, "by name").await, "by name");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_relays_to_an_upstream_given_by_name() {
    let upstream = Server::start(&["--no-http"]);
    let port = upstream.tcp_addr().port();
    let gateway = Server::start(&["--upstream", &format!("localhost:{port}")]);
    let mut ws = crate::support::ws_connect(gateway.http_addr()).await;
    assert_eq!(ws_exchange(&mut ws, "relayed").await, "relayed");
}

#[test]
fn client_given_localhost_reaches_a_server_listening_by_that_name() {
    let server = Server::start(&["--no-http", "--tcp", "localhost:0"]);
    // With port 0 each address of the name has its own port: whichever
    // address of localhost the client tries first, only one of them answers.
    for addr in &server.tcp_addrs()[1..] {
        let mut client = timecho();
        client.args(["client", &format!("localhost:{}", addr.port())]);
        let exited = run_to_exit(client, b"hello by name\n", CLIENT_LIMIT);
        assert!(exited.status.success(), "{addr}: {exited:?}");
        assert!(exited.stdout.contains("] hello by name"), "{exited:?}");
    }
}

#[test]
fn a_listen_name_that_does_not_resolve_stops_start_up_naming_flag_and_name() {
    for flag in ["--tcp", "--http", "--udp", "--metrics"] {
        let exited = serve_expecting_exit(&[flag, "example.invalid:1"]);
        assert!(!exited.status.success(), "{flag}: {exited:?}");
        assert!(
            exited.stderr.contains(&format!(
                "{flag} example.invalid:1: cannot resolve \"example.invalid\""
            )),
            "{flag}: {}",
            exited.stderr
        );
        assert!(exited.stdout.is_empty(), "it listened: {}", exited.stdout);
    }
}

#[test]
fn an_address_without_a_port_is_refused_naming_the_flag() {
    for flag in ["--tcp", "--upstream"] {
        let exited = serve_expecting_exit(&[flag, "localhost"]);
        assert!(!exited.status.success(), "{flag}: {exited:?}");
        assert!(
            exited.stderr.contains(&format!("'{flag} <")) && exited.stderr.contains("has no port"),
            "{flag}: {}",
            exited.stderr
        );
    }
}
