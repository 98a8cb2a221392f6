//! Clients people actually use against `timecho serve`: the tutorial's Python
//! client, netcat, and `timecho client` itself.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::support::{
    assert_texts, free_addr, parse_reply, reply_texts, run_to_exit, timecho, Server, TempDir,
};

const TUTORIAL_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tutorial_client.py");
const CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// Whether `program` can be run here; prints why a test is skipped if not.
fn available(program: &str, probe: &str) -> bool {
    match Command::new(program).arg(probe).output() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("note: skipped, {program} is not installed");
            false
        }
        _ => true,
    }
}

#[test]
fn tutorial_client_gets_each_line_back_stamped() {
    if !available("python3", "--version") {
        return;
    }
    let server = Server::start(&[]);
    let addr = server.tcp_addr();
    let mut cmd = Command::new("python3");
    cmd.arg(TUTORIAL_CLIENT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    let exited = run_to_exit(cmd, b"hello\nworld\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert!(exited.stdout.contains("] hello"), "{exited:?}");
    assert!(exited.stdout.contains("] world"), "{exited:?}");
    // It prints "> " prompts and each reply followed by an empty line.
    let texts: Vec<Vec<u8>> = exited
        .stdout
        .lines()
        .map(|l| l.trim_start_matches("> "))
        .filter(|l| l.starts_with('['))
        .map(|l| parse_reply(l.as_bytes()).1)
        .collect();
    assert_texts(&texts, &["hello", "world"]);
}

#[test]
fn netcat_gets_a_stamped_reply() {
    if !available("nc", "-h") {
        return;
    }
    let server = Server::start(&[]);
    let addr = server.tcp_addr();
    // OpenBSD netcat: -N shuts down its sending side at end of input and then reads
    // until the server closes, which is exact where -q1 would only wait a second.
    let mut cmd = Command::new("nc");
    cmd.args(["-N", &addr.ip().to_string(), &addr.port().to_string()]);
    let exited = run_to_exit(cmd, b"hi\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(&reply_texts(exited.stdout.as_bytes()), &["hi"]);
}

#[test]
fn timecho_client_streams_piped_lines_and_prints_every_reply_in_order() {
    let server = Server::start(&[]);
    let lines: Vec<String> = (0..200).map(|i| format!("piped line {i}")).collect();
    let mut cmd = timecho();
    cmd.args(["client", &server.tcp_addr().to_string()]);
    let exited = run_to_exit(
        cmd,
        format!("{}\n", lines.join("\n")).as_bytes(),
        CLIENT_LIMIT,
    );
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(&reply_texts(exited.stdout.as_bytes()), &lines);
}

#[test]
fn timecho_client_reports_a_refused_connection_in_one_line_and_fails() {
    let closed = free_addr();
    let mut cmd = timecho();
    cmd.args(["client", &closed.to_string()]);
    let exited = run_to_exit(cmd, b"anyone?\n", CLIENT_LIMIT);
    assert!(!exited.status.success(), "{exited:?}");
    assert_ne!(exited.status.code(), Some(101), "exit code of a panic");
    assert_eq!(exited.stderr.trim_end().lines().count(), 1, "{exited:?}");
    // Said once: not again beside the reason.
    assert_eq!(
        exited.stderr.matches(&closed.to_string()).count(),
        1,
        "{exited:?}"
    );
    assert!(
        exited.stderr.to_lowercase().contains("refused"),
        "{exited:?}"
    );
    assert_eq!(exited.stdout, "", "{exited:?}");
}

/// A server that answers one line with `reply` (or nothing) and then stays
/// quiet without closing, until the client goes.
fn quiet_server(reply: &'static [u8]) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        (&stream).write_all(reply).unwrap();
        // Reads the client's end of input, and never closes.
        let _ = reader.read_to_end(&mut line);
        std::mem::forget(stream);
    });
    addr
}

#[test]
fn timecho_client_succeeds_when_the_last_reply_lacks_its_newline() {
    let addr = quiet_server(b"[Wed Nov 25 13:00:00 2026] hi");
    let mut cmd = timecho();
    cmd.args(["client", "--timeout", "1s", &addr.to_string()]);
    let exited = run_to_exit(cmd, b"hi\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_eq!(exited.stdout, "[Wed Nov 25 13:00:00 2026] hi", "{exited:?}");
}

#[test]
fn timecho_client_fails_when_a_line_gets_no_reply() {
    let addr = quiet_server(b"");
    let mut cmd = timecho();
    cmd.args(["client", "--timeout", "1s", &addr.to_string()]);
    let exited = run_to_exit(cmd, b"anyone?\n", CLIENT_LIMIT);
    assert!(!exited.status.success(), "{exited:?}");
    assert!(
        exited.stderr.contains("1 of 1 lines got no reply"),
        "{exited:?}"
    );
}

#[test]
fn timecho_client_over_udp_prints_one_reply_per_line() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let mut cmd = timecho();
    cmd.args(["client", "--udp", &server.udp_addr().to_string()]);
    let exited = run_to_exit(cmd, b"first datagram\nsecond datagram\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(
        &reply_texts(exited.stdout.as_bytes()),
        &["first datagram", "second datagram"],
    );
}

#[test]
fn timecho_client_over_a_unix_socket_prints_every_reply() {
    let dir = TempDir::new();
    let path = dir.path().join("client.sock");
    let path_arg = path.to_str().unwrap();
    let _server = Server::start(&["--unix", path_arg]);
    let mut cmd = timecho();
    cmd.args(["client", "--unix", path_arg]);
    let exited = run_to_exit(cmd, b"over\nthe unix socket\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(
        &reply_texts(exited.stdout.as_bytes()),
        &["over", "the unix socket"],
    );
}

#[test]
fn timecho_client_with_no_input_sends_nothing_and_succeeds() {
    let server = Server::start(&[]);
    let mut cmd = timecho();
    cmd.args(["client", &server.tcp_addr().to_string()]);
    let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_eq!(exited.stdout, "", "{exited:?}");
}

/// Piped input is streamed: a reply is printed while the input is still open,
/// and a line sent after a pause longer than --timeout still gets its reply
/// (the timeout counts from the last line sent, not from the start).
#[test]
fn timecho_client_prints_replies_while_input_is_open_and_waits_for_late_lines() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    let server = Server::start(&[]);
    let mut child = timecho()
        .args(["client", "--timeout", "1s", &server.tcp_addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.split(b'\n') {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_reply = || {
        let line = lines
            .recv_timeout(CLIENT_LIMIT)
            .expect("a reply line within the limit");
        parse_reply(&line).1
    };

    let mut stderr = child.stderr.take().unwrap();
    let (exit_tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });

    stdin.write_all(b"early\n").unwrap();
    assert_eq!(next_reply(), b"early", "printed before the input ended");
    // Silence from both sides for longer than --timeout, with input still open.
    match exited.recv_timeout(Duration::from_millis(1500)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("the client ended while its input was still open: {other:?}"),
    }
    stdin.write_all(b"late\n").unwrap();
    drop(stdin);
    assert_eq!(next_reply(), b"late");
    let status = exited
        .recv_timeout(CLIENT_LIMIT)
        .expect("the client exits once answered")
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
    assert!(status.success(), "{status:?}: {text}");
}

#[test]
fn hash_password_refuses_a_name_with_a_colon_and_ends_quietly_into_a_closed_pipe() {
    let mut cmd = crate::support::timecho();
    cmd.args(["hash-password", "ada:admin"]);
    let out = crate::support::run_to_exit(cmd, b"pw\n", std::time::Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("cannot be empty or contain ':'"),
        "{out:?}"
    );

    // `timecho hash-password ada | head -c0`: the reader is gone before the line.
    let mut child = crate::support::timecho()
        .args(["hash-password", "ada"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    use std::io::{Read as _, Write as _};
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() && stderr.is_empty(),
        "{status:?}: {stderr}"
    );
}

#[test]
fn a_port_alone_listens_on_loopback() {
    let server = crate::support::Server::start(&["--tcp", ":0", "--no-http"]);
    let addrs = server.tcp_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

#[test]
fn a_negative_duration_is_refused_in_words_with_status_2() {
    for args in [
        &["client", "--timeout", "-1s"][..],
        &["clock", "--timeout", "-1s"],
        &["serve", "--idle-timeout", "-1s"],
    ] {
        let mut cmd = timecho();
        cmd.args(args);
        let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
        assert_eq!(exited.status.code(), Some(2), "{args:?}: {exited:?}");
        assert!(
            exited.stderr.contains("durations cannot be negative"),
            "{args:?}: {exited:?}"
        );
        assert!(!exited.stderr.contains("-- -1"), "{args:?}: {exited:?}");
    }
}

#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let mut cmd = timecho();
    cmd.arg("clinet");
    let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
    assert_eq!(exited.status.code(), Some(2), "{exited:?}");
    assert!(
        exited
            .stderr
            .contains("similar subcommand exists: 'client'"),
        "{exited:?}"
    );
}

/// How long the interactive client may take to show what a test waits for.
const SCREEN_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn interactive_client_shows_a_server_notice_as_it_comes_and_ends_when_the_server_closes() {
    let server = Server::start(&["--idle-timeout", "1s", "--no-http"]);
    let addr = server.tcp_addr().to_string();
    let term = crate::support::Terminal::run(&["client", &addr]);
    term.wait_for(&format!("connected to {addr}"), SCREEN_LIMIT);
    term.type_text("hello");
    term.enter();
    term.wait_for("] hello", SCREEN_LIMIT);
    // Nothing typed: the idle notice and the close are shown without a key
    // pressed, and the client exits by itself.
    let screen = term.wait_for("EXIT=", SCREEN_LIMIT);
    assert!(screen.contains("error: idle for 1s; closing"), "{screen}");
    assert!(
        screen.contains("timecho: the server closed the connection"),
        "{screen}"
    );
    assert!(screen.contains("EXIT=1"), "{screen}");
    let notice = screen.find("error: idle").unwrap();
    let closed = screen.find("the server closed").unwrap();
    assert!(notice < closed, "{screen}");
}

#[test]
fn interactive_client_says_how_many_typed_lines_the_closing_server_left_unanswered() {
    // Reads one line and closes without answering it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .unwrap();
    });
    let term = crate::support::Terminal::run(&["client", &addr]);
    term.wait_for("connected to", SCREEN_LIMIT);
    term.type_text("anyone?");
    term.enter();
    let screen = term.wait_for("EXIT=", SCREEN_LIMIT);
    assert!(
        screen.contains("the server closed the connection; 1 line got no reply"),
        "{screen}"
    );
    // Said below the line it is about, on a terminal given back as it was.
    let typed = screen.find("> anyone?").unwrap();
    let closed = screen.find("the server closed").unwrap();
    assert!(typed < closed, "{screen}");
    assert!(screen.contains("EXIT=1"), "{screen}");
}

#[test]
fn interactive_client_ends_on_an_empty_line_and_says_so_in_its_help() {
    let server = Server::start(&["--no-http"]);
    let addr = server.tcp_addr().to_string();
    let term = crate::support::Terminal::run(&["client", &addr]);
    term.wait_for("an empty line or Ctrl-D ends the session", SCREEN_LIMIT);
    term.type_text("one");
    term.enter();
    term.type_text("two");
    term.enter();
    term.wait_for("] two", SCREEN_LIMIT);
    term.enter();
    let screen = term.wait_for("EXIT=", SCREEN_LIMIT);
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("] one"), "{screen}");

    let mut cmd = timecho();
    cmd.args(["client", "--help"]);
    let help = run_to_exit(cmd, b"", CLIENT_LIMIT);
    assert!(help.stdout.contains("An empty line"), "{help:?}");
}

#[test]
fn piped_client_into_a_closed_pipe_ends_quietly_and_does_not_say_connected() {
    use std::io::{Read as _, Write as _};
    let server = Server::start(&["--no-http"]);
    // `seq 1 100000 | timecho client ADDR | head -c0`: the reader is gone at once.
    let mut child = timecho()
        .args(["client", &server.tcp_addr().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for n in 0..100_000 {
            if writeln!(stdin, "{n}").is_err() {
                return;
            }
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() && stderr.is_empty(),
        "{status:?}: {stderr}"
    );

    let mut cmd = timecho();
    cmd.args(["client", &server.tcp_addr().to_string()]);
    let exited = run_to_exit(cmd, b"hi\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert!(!exited.stderr.contains("connected"), "{exited:?}");
    assert!(!exited.stdout.contains("connected"), "{exited:?}");
}

#[test]
fn a_bad_environment_variable_is_named_and_the_flag_is_not() {
    for (var, value, says) in [
        ("TIMECHO_MAX_LINE", "abc", "whole number in digits"),
        ("TIMECHO_LOG_FORMAT", "xml", "use one of: text, json"),
        ("TIMECHO_IDLE_TIMEOUT", "5x", "unknown time unit"),
    ] {
        let mut cmd = timecho();
        cmd.env(var, value)
            .args(["serve", "--tcp", "127.0.0.1:0", "--no-http"]);
        let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
        assert_eq!(exited.status.code(), Some(2), "{var}: {exited:?}");
        assert!(exited.stderr.contains(var), "{var}: {exited:?}");
        assert!(exited.stderr.contains(says), "{var}: {exited:?}");
        assert!(!exited.stderr.contains("'--"), "{var}: {exited:?}");
        assert_eq!(
            exited.stderr.trim_end().lines().count(),
            1,
            "{var}: {exited:?}"
        );
    }
}

#[test]
fn a_bad_count_says_what_is_allowed_and_exits_2() {
    for (args, says) in [
        (
            &["serve", "--max-line", "abc"][..],
            "whole number in digits",
        ),
        (&["serve", "--max-line", "0"], "the least is 1"),
        (
            &["serve", "--max-connections-per-client", "1k"],
            "whole number",
        ),
        (&["clock", "--samples", "5000"], "the most is 1000"),
    ] {
        let mut cmd = timecho();
        cmd.args(args);
        let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
        assert_eq!(exited.status.code(), Some(2), "{args:?}: {exited:?}");
        assert!(exited.stderr.contains(says), "{args:?}: {exited:?}");
        assert!(
            !exited.stderr.contains("invalid digit"),
            "{args:?}: {exited:?}"
        );
    }
}

#[test]
fn client_over_websocket_streams_piped_lines_through_the_gateway_in_order() {
    let server = Server::start(&["--instance", "web-3"]);
    let url = format!("ws://{}/ws", server.http_addr());
    let lines: Vec<String> = (0..50).map(|i| format!("over ws {i}")).collect();
    let mut cmd = timecho();
    cmd.args(["client", &url]);
    // The last line has no newline: it is still one message.
    let exited = run_to_exit(cmd, lines.join("\n").as_bytes(), CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(&reply_texts(exited.stdout.as_bytes()), &lines);

    // `clock` takes the same URL.
    let mut cmd = timecho();
    cmd.args(["clock", "--samples", "2", "--json", &url]);
    let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert!(exited.stdout.contains("\"answered\":2"), "{exited:?}");
    // ... and says which instance answered, as the gateway's handshake tells.
    assert!(
        exited.stdout.contains("\"instance\":\"web-3\""),
        "{exited:?}"
    );
    let mut cmd = timecho();
    cmd.args(["clock", "--samples", "2", &url]);
    let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
    assert!(
        exited
            .stdout
            .starts_with(&format!("{url} (instance web-3): ")),
        "{exited:?}"
    );
}

#[test]
fn client_over_wss_trusts_the_pinned_certificate_and_says_what_to_do_without_it() {
    let server = Server::start(&["--tls-self-signed"]);
    let fingerprint = server
        .banner()
        .iter()
        .find_map(|l| l.split("fingerprint: ").nth(1))
        .expect("the banner prints the fingerprint")
        .trim()
        .to_owned();
    let url = format!("wss://{}/ws", server.listener("https"));
    let pin = format!("sha256:{fingerprint}");
    let mut cmd = timecho();
    cmd.args(["client", "--pin", &pin, &url]);
    let exited = run_to_exit(cmd, b"secure\n", CLIENT_LIMIT);
    assert!(exited.status.success(), "{exited:?}");
    assert_texts(&reply_texts(exited.stdout.as_bytes()), &["secure"]);

    let mut cmd = timecho();
    cmd.args(["client", &url]);
    let exited = run_to_exit(cmd, b"secure\n", CLIENT_LIMIT);
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    assert!(exited.stderr.contains("--pin sha256:"), "{exited:?}");
}

#[test]
fn client_over_websocket_reports_a_refused_handshake_and_misused_flags() {
    let server = Server::start(&[]);
    let mut cmd = timecho();
    cmd.args(["client", &format!("ws://{}/nowhere", server.http_addr())]);
    let exited = run_to_exit(cmd, b"hi\n", CLIENT_LIMIT);
    assert_eq!(exited.status.code(), Some(1), "{exited:?}");
    assert!(
        exited.stderr.contains("refused the WebSocket: 404"),
        "{exited:?}"
    );

    for args in [
        &["client", "--udp", "ws://127.0.0.1:1/ws"][..],
        &[
            "client",
            "--pin",
            &format!("sha256:{}", "00".repeat(32)),
            "127.0.0.1:1",
        ],
        &["clock", "--ca", "/dev/null", "127.0.0.1:1"],
    ] {
        let mut cmd = timecho();
        cmd.args(args);
        let exited = run_to_exit(cmd, b"", CLIENT_LIMIT);
        assert_eq!(exited.status.code(), Some(2), "{args:?}: {exited:?}");
    }
}

#[test]
fn interactive_client_over_websocket_shows_the_idle_close_and_ends() {
    let server = Server::start(&["--idle-timeout", "1s"]);
    let url = format!("ws://{}/ws", server.http_addr());
    let term = crate::support::Terminal::run(&["client", &url]);
    term.wait_for(&format!("connected to {url}"), SCREEN_LIMIT);
    term.type_text("via the gateway");
    term.enter();
    term.wait_for("] via the gateway", SCREEN_LIMIT);
    let screen = term.wait_for("EXIT=", SCREEN_LIMIT);
    assert!(screen.contains("error: idle for 1s; closing"), "{screen}");
    assert!(
        screen.contains("the server closed the connection"),
        "{screen}"
    );
    assert!(screen.contains("EXIT=1"), "{screen}");
}
