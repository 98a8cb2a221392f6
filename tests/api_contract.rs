//! The page's HTTP API over a real socket, read with the very types the page
//! and the server share (`timecho_shared::api`): `/api/config` tells the flags
//! the server was started with, and describes the stamps it really writes.

use std::net::SocketAddr;

use crate::support::http::{self, Response};
use crate::support::{split_reply, Peer, Server, TempDir};
use timecho_shared::api::{path, status, ServerConfig, SessionInfo, StampInfo};
use timecho_shared::relay::subprotocol;
use timecho_shared::Stamp;

/// `GET path` with `Host: host`, asking for JSON as the page does.
fn get(addr: SocketAddr, path: &str, host: &str) -> Response {
    http::get(path)
        .host(host)
        .header("Accept", "application/json")
        .send(addr)
}

fn config_of(server: &Server) -> ServerConfig {
    let addr = server.http_addr();
    let response = get(addr, path::CONFIG, &addr.to_string());
    assert_eq!(response.status, 200, "{response}");
    response.json()
}

/// The stamp of one reply from the timestamp server.
fn stamp_of_a_reply(server: &Server) -> String {
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"what time is it\n");
    split_reply(&peer.read_line()).0
}

#[test]
fn config_answers_the_flags_the_server_was_started_with() {
    let server = Server::start(&[
        "--max-line",
        "100",
        "--time-format",
        "rfc3339",
        "--precision",
        "ms",
        "--utc",
        "--instance",
        "web-2",
    ]);
    let addr = server.http_addr();
    let response = get(addr, path::CONFIG, &addr.to_string());
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let config: ServerConfig = response.json();
    assert_eq!(
        config,
        ServerConfig {
            max_line: 100,
            max_frame: 100,
            stamp: StampInfo {
                format: "rfc3339".into(),
                precision: "ms".into(),
                utc: true,
                utc_offset_seconds: 0,
            },
            subprotocols: subprotocol::SUPPORTED.map(String::from).to_vec(),
            auth: false,
            renew_every_seconds: None,
            instance: Some("web-2".into()),
        }
    );

    // The layout it names is the one the replies are written in.
    let stamp = stamp_of_a_reply(&server);
    let format = config
        .stamp
        .stamp_format()
        .expect("a layout the flags take");
    match format.parse(&stamp) {
        Ok(Stamp::Zoned(t)) => assert_eq!(t.offset().local_minus_utc(), 0, "{stamp}"),
        other => panic!("{stamp:?} read as {other:?}"),
    }
    assert!(stamp.ends_with('Z') && stamp.len() == "2026-11-25T16:02:40.123Z".len());
}

#[test]
fn config_in_a_local_zone_gives_its_offset() {
    // A POSIX TZ string: always 5:30 east of UTC, no daylight saving time.
    let server = Server::start_with_env(&[("TZ", "IST-5:30")], &["--time-format", "rfc3339"]);
    let config = config_of(&server);
    assert_eq!(
        config.stamp,
        StampInfo {
            format: "rfc3339".into(),
            precision: "s".into(),
            utc: false,
            utc_offset_seconds: 5 * 3600 + 30 * 60,
        }
    );
    assert_eq!(config.max_line, timecho_shared::DEFAULT_MAX_LINE);
    let stamp = stamp_of_a_reply(&server);
    assert!(stamp.ends_with("+05:30"), "{stamp}");

    let server = Server::start_with_env(&[("TZ", "IST-5:30")], &["--time-format", "%H:%M"]);
    let stamp = config_of(&server).stamp;
    assert_eq!((stamp.format.as_str(), stamp.utc), ("%H:%M", false));
}

#[test]
fn config_follows_the_host_rules_like_every_other_route() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    let refused = get(addr, path::CONFIG, "evil.example");
    assert_eq!(refused.status, 421, "{refused}");
    assert!(refused.text().contains("--allow-host"), "{refused}");
    assert_eq!(get(addr, path::CONFIG, "localhost").status, 200);

    let server = Server::start(&["--allow-host", "evil.example"]);
    let allowed = get(server.http_addr(), path::CONFIG, "evil.example");
    assert_eq!(allowed.status, 200, "{allowed}");
}

#[test]
fn config_needs_no_sign_in_and_says_that_sign_in_is_on() {
    let dir = TempDir::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "script-token-123\n").expect("write the tokens file");
    let auth = format!("token:{}", tokens.display());
    let server = Server::start(&["--auth", &auth, "--token-lifetime", "90s"]);
    let addr = server.http_addr();

    let config = config_of(&server);
    assert!(config.auth);
    assert_eq!(
        config.renew_every_seconds,
        Some(30),
        "a third of the token's life"
    );

    let session = get(addr, path::SESSION, &addr.to_string());
    assert_eq!(session.status, status::UNAUTHORIZED, "{session}");
    let info: SessionInfo = session.json();
    assert!(info.auth && info.user.is_none(), "{info:?}");
    assert!(info.reason.is_some_and(|r| !r.is_empty()));
}

#[test]
fn session_without_sign_in_is_open_in_the_shared_format() {
    let server = Server::start(&[]);
    assert!(!config_of(&server).auth);
    let addr = server.http_addr();
    let session = get(addr, path::SESSION, &addr.to_string());
    assert_eq!(session.status, 200, "{session}");
    assert_eq!(
        session.json::<SessionInfo>(),
        SessionInfo {
            auth: false,
            user: None,
            reason: None,
        }
    );
}

/// The host name, as `hostname` prints it.
fn host_name() -> String {
    let out = std::process::Command::new("hostname")
        .output()
        .expect("hostname runs");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

#[test]
fn every_http_answer_says_which_instance_answered() {
    let dir = TempDir::new();
    let file = dir.path().join("timecho.toml");
    std::fs::write(&file, "instance = \"from-the-file\"\n").unwrap();
    let file = file.to_str().unwrap();
    for (env, args, name) in [
        (
            vec![],
            vec!["--instance", "eu-west-1a"],
            "eu-west-1a".to_owned(),
        ),
        (
            vec![("TIMECHO_INSTANCE", "from-env")],
            vec![],
            "from-env".into(),
        ),
        (vec![], vec!["--config", file], "from-the-file".into()),
        (vec![], vec![], host_name()),
    ] {
        let mut args = args;
        args.extend(["--metrics", "127.0.0.1:0"]);
        let server = Server::start_with_env(&env, &args);
        let http = server.http_addr();
        let host = http.to_string();
        assert_eq!(config_of(&server).instance.as_deref(), Some(name.as_str()));
        // The page, the API, the operations endpoints, a 404, and a 421.
        for (addr, path, host) in [
            (http, "/", host.as_str()),
            (http, path::CONFIG, &host),
            (http, "/readyz", &host),
            (http, "/no/such/page", &host),
            (http, "/", "elsewhere.example"),
            (server.metrics_addr(), "/metrics", "localhost"),
        ] {
            let response = get(addr, path, host);
            assert_eq!(
                response.header(timecho_shared::api::header::INSTANCE),
                Some(name.as_str()),
                "{path} (Host {host}): {}",
                response.status
            );
        }
    }
}

#[test]
fn an_instance_name_that_cannot_go_into_a_header_is_refused() {
    for bad in ["two words", "", &"x".repeat(65), "caf\u{e9}"] {
        let exited = crate::support::serve_expecting_exit(&["--instance", bad]);
        assert_eq!(exited.status.code(), Some(2), "{bad:?}: {exited:?}");
        assert!(
            exited.stderr.contains("instance name"),
            "{bad:?}: {exited:?}"
        );
    }
}
