//! Peer-chosen text in the server's log, over a real process: a sign-in whose
//! user name carries a forged log line, terminal escapes and megabytes of
//! padding must leave the log with one short, inert line per event.

use std::net::SocketAddr;

use crate::support::{http, Server, TempDir};

/// What a forged line would start with, were the user name logged raw.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO timecho::gateway::api: signed in";
/// Longest log line allowed: a line is an event, not a peer's payload.
const LINE_MAX: usize = 4 * 1024;

fn auth_server(dir: &TempDir) -> Server {
    let basic = crate::support::basic_users_file(dir, "ada", "lovelace");
    // An empty NO_COLOR counts as unset: colours must be off because stderr is
    // a pipe, so that any ESC byte in the log would have come from a peer.
    Server::start_with_env(
        &[("NO_COLOR", "")],
        &["--http", "127.0.0.1:0", "--auth", &basic],
    )
}

/// The start of a log that may hold megabytes, for a failure message.
fn excerpt(log: &str) -> String {
    log.chars().take(2000).collect()
}

/// A user name that would forge a log line and colour the terminal, padded to `len` bytes.
fn hostile_name(len: usize) -> String {
    let mut name = format!("eve\n{FORGED} user=root\x1b[31m");
    name.extend(std::iter::repeat_n('A', len - name.len()));
    name
}

/// `POST /api/login` as the page would send it; the response's status code
/// (which may come before the server has read a large body).
fn login(addr: SocketAddr, user: &str) -> u16 {
    let body = serde_json::json!({ "user": user, "password": "guess" }).to_string();
    http::post("/api/login", body)
        .header("Origin", format!("http://{addr}"))
        .header("Content-Type", "application/json")
        .send(addr)
        .status
}

#[test]
fn hostile_user_name_leaves_one_short_inert_log_line() {
    let dir = TempDir::new();
    let mut server = auth_server(&dir);
    let addr = server.http_addr();

    // Under axum's 2 MB body limit, so the name reaches the handler; a 10 KB
    // one as well, in case a limit refuses the larger body before logging.
    let huge = login(addr, &hostile_name(1_900_000));
    let large = login(addr, &hostile_name(10_000));
    println!("sign-in with a 1.9 MB name: {huge}; with a 10 KB name: {large}");
    assert_eq!(
        large, 401,
        "the 10 KB name was not refused as a bad sign-in"
    );
    let logged = if huge == 401 { 2 } else { 1 };
    let log = server.wait_for_log("sign-in refused", logged);

    let longest = log.lines().map(str::len).max().unwrap_or(0);
    println!(
        "server log: {} bytes, {} lines, longest {longest} bytes",
        log.len(),
        log.lines().count()
    );
    assert_eq!(
        log.matches("sign-in refused").count(),
        logged,
        "sign-ins not logged:\n{}",
        excerpt(&log)
    );
    // The name is there, escaped: the attempt is visible, not hidden.
    assert!(
        log.contains(r"user=eve\n2026-01-01T00:00:00"),
        "{}",
        excerpt(&log)
    );
    assert!(log.contains(r"\x1b[31mAAA"), "{}", excerpt(&log));
    assert!(
        !log.lines().any(|line| line.starts_with(FORGED)),
        "a forged line got in:\n{}",
        excerpt(&log)
    );
    assert!(!log.contains('\x1b'), "an escape sequence got in");
    assert!(
        longest <= LINE_MAX,
        "a log line of {longest} bytes; the first 300: {:?}",
        log.lines()
            .find(|l| l.len() > LINE_MAX)
            .map(|l| l.chars().take(300).collect::<String>())
    );
}

#[test]
fn a_flood_of_refused_sign_ins_is_one_log_line_per_client_and_interval() {
    let dir = TempDir::new();
    let mut server = auth_server(&dir);
    let addr = server.http_addr();
    let statuses: Vec<u16> = (0..40).map(|n| login(addr, &format!("guess{n}"))).collect();
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429)),
        "{statuses:?}"
    );
    // The log names the client once per interval (the metrics count each).
    let log = server.wait_for_log("sign-in refused", 1);
    assert_eq!(
        log.matches("sign-in refused").count(),
        1,
        "{}",
        excerpt(&log)
    );
}
