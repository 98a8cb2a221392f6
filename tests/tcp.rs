//! `timecho serve` over TCP: line framing, partial lines, limits, half-close,
//! IPv6 and shutdown, against the real binary on ephemeral ports.

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    assert_texts, parse_reply, reply_texts, serve_expecting_exit, Peer, Server, TempDir,
};

/// Long enough for a reply that is not due to have arrived on loopback.
const SILENCE: Duration = Duration::from_millis(300);

#[test]
fn each_of_many_concurrent_clients_gets_exactly_its_own_replies_in_order() {
    const CLIENTS: usize = 120;
    const LINES: usize = 5;
    let server = Server::start(&[]);
    let addr = server.tcp_addr();
    // Everyone connects before anyone sends, so the lines really interleave.
    let all_connected = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let all_connected = all_connected.clone();
            thread::spawn(move || {
                let mut peer = Peer::tcp(addr);
                all_connected.wait();
                let lines: Vec<String> =
                    (0..LINES).map(|l| format!("client {c} line {l}")).collect();
                for (l, line) in lines.iter().enumerate() {
                    peer.send(format!("{line}\n").as_bytes());
                    thread::sleep(Duration::from_millis(((c * 7 + l * 3) % 10) as u64));
                }
                peer.close_write();
                assert_texts(&reply_texts(&peer.read_to_end()), &lines);
            })
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        if client.join().is_err() {
            panic!("client {c} got wrong replies (see its panic above)");
        }
    }
}

#[test]
fn line_trickled_one_byte_per_write_gets_exactly_one_reply() {
    // The line takes longer than the partial timeout to arrive, but no gap between
    // bytes does: the idle timer restarts with every byte.
    let server = Server::start(&["--partial-timeout", "1s"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    let line = b"one byte at a time, slowly";
    for byte in line {
        peer.send(&[*byte]);
        thread::sleep(Duration::from_millis(50));
    }
    peer.send(b"\n");
    let (_, text) = parse_reply(&peer.read_line());
    assert_texts(&[text], &[line]);
    let extra = peer.read_for(SILENCE);
    assert!(
        extra.is_empty(),
        "more than one reply: \"{}\"",
        extra.escape_ascii()
    );
}

#[test]
fn a_sub_second_idle_timeout_is_reported_in_milliseconds() {
    let server = Server::start(&["--idle-timeout", "300ms"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    assert_eq!(peer.read_line(), b"error: idle for 300ms; closing");
    assert!(peer.read_to_end().is_empty());
}

#[test]
fn many_lines_in_one_write_get_as_many_replies_in_order() {
    let server = Server::start(&[]);
    let mut peer = Peer::tcp(server.tcp_addr());
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    peer.send(format!("{}\n", lines.join("\n")).as_bytes());
    peer.close_write();
    assert_texts(&reply_texts(&peer.read_to_end()), &lines);
}

#[test]
fn crlf_line_is_answered_without_the_carriage_return() {
    let server = Server::start(&[]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"from windows\r\n");
    let reply = peer.read_line();
    assert!(
        !reply.contains(&b'\r'),
        "reply has a \\r: \"{}\"",
        reply.escape_ascii()
    );
    assert_texts(&[parse_reply(&reply).1], &["from windows"]);
}

#[test]
fn non_utf8_and_nul_bytes_are_echoed_byte_exact() {
    let server = Server::start(&[]);
    let mut peer = Peer::tcp(server.tcp_addr());
    let line: &[u8] = b"\x00nul \xff\xfe not utf-8 \xc3\x28 \x00";
    peer.send(&[line, b"\n"].concat());
    assert_texts(&[parse_reply(&peer.read_line()).1], &[line]);
}

#[test]
fn partial_line_is_answered_after_the_partial_timeout() {
    // What the tutorial's client does: send a line without its newline and wait.
    let server = Server::start(&[]);
    let mut peer = Peer::tcp(server.tcp_addr());
    let sent = Instant::now();
    peer.send(b"hello");
    let reply = peer.read_line();
    let waited = sent.elapsed();
    assert_texts(&[parse_reply(&reply).1], &["hello"]);
    assert!(
        waited >= Duration::from_millis(90),
        "answered after {waited:?}, before the 100 ms partial timeout"
    );
    assert!(
        waited < Duration::from_secs(2),
        "answered only after {waited:?}"
    );
}

#[test]
fn a_line_clients_slow_line_is_not_split_by_the_partial_timeout() {
    // A client that has ended a line with a newline is a line client: a pause
    // in its next line, longer than the partial timeout, does not cut it.
    let server = Server::start(&["--partial-timeout", "100ms"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"first\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["first"]);
    peer.send(b"hel");
    let early = peer.read_for(Duration::from_millis(400));
    assert!(
        early.is_empty(),
        "a line client's partial line was answered: \"{}\"",
        early.escape_ascii()
    );
    peer.send(b"lo\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["hello"]);
    // A partial line left at the end of the stream is still answered.
    peer.send(b"tail");
    peer.close_write();
    assert_texts(&reply_texts(&peer.read_to_end()), &["tail"]);
}

#[test]
fn partial_line_waits_for_its_newline_when_partial_timeout_is_off() {
    let server = Server::start(&["--partial-timeout", "0"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"hel");
    let early = peer.read_for(SILENCE);
    assert!(
        early.is_empty(),
        "answered before the newline: \"{}\"",
        early.escape_ascii()
    );
    peer.send(b"lo\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["hello"]);
}

#[test]
fn raw_framing_answers_each_write_as_it_came_without_a_newline() {
    let server = Server::start(&["--framing", "raw", "--no-http"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"hello");
    let reply = peer.read_until_quiet(Duration::from_millis(200));
    assert!(
        !reply.ends_with(b"\n"),
        "raw reply has a newline added: \"{}\"",
        reply.escape_ascii()
    );
    assert_texts(&[parse_reply(&reply).1], &["hello"]);
}

#[test]
fn over_long_line_gets_an_error_and_the_next_line_is_answered() {
    let server = Server::start(&["--max-line", "16"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"this line is longer than sixteen bytes\n");
    let error = peer.read_line();
    assert_eq!(
        String::from_utf8_lossy(&error),
        "error: line longer than 16 bytes; discarded"
    );
    peer.send(b"exactly 16 bytes\nok\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["exactly 16 bytes"]);
    assert_texts(&[parse_reply(&peer.read_line()).1], &["ok"]);

    // One that arrives in pieces is refused as soon as it is too long, once,
    // and skipped up to its newline.
    peer.send(b"twenty bytes, no end");
    assert_eq!(peer.read_line(), error);
    peer.send(b" and more of the same line\nok again\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["ok again"]);
}

#[test]
fn half_closed_client_gets_every_reply_then_end_of_stream() {
    // The server may not start writing before our side is closed.
    let server = Server::start(&["--partial-timeout", "0"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"first\nsecond\nno newline at the end");
    peer.close_write();
    assert_texts(
        &reply_texts(&peer.read_to_end()),
        &["first", "second", "no newline at the end"],
    );
}

#[test]
fn ipv6_loopback_listener_answers() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        eprintln!("note: skipped, this machine has no IPv6 loopback ({e})");
        return;
    }
    let server = Server::start(&["--tcp", "[::1]:0"]);
    let v6 = *server
        .tcp_addrs()
        .iter()
        .find(|a| a.is_ipv6())
        .expect("an IPv6 listener is reported");
    assert!(v6.ip().is_loopback() && v6.port() != 0, "reported {v6}");
    let mut peer = Peer::tcp(v6);
    peer.send(b"over ipv6\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["over ipv6"]);
}

#[test]
fn sigterm_answers_received_lines_and_exits_zero_promptly() {
    // With partial timeouts off, the unfinished line is only answered because of
    // the shutdown.
    let mut server = Server::start(&["--partial-timeout", "0"]);
    let mut peer = Peer::tcp(server.tcp_addr());
    // A first round trip makes sure the server has accepted this client.
    peer.send(b"ready?\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["ready?"]);

    peer.send(b"one\ntwo\nthree\nunfinished");
    let signalled = Instant::now();
    server.sigterm();
    let replies = peer.read_to_end();
    // The server lingers until its client closes too, as any client does at EOF.
    drop(peer);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server exits after SIGTERM");
    let took = signalled.elapsed();
    assert_texts(
        &reply_texts(&replies),
        &["one", "two", "three", "unfinished"],
    );
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} to exit (drain deadline is 5 s)"
    );
}

#[test]
fn sigterm_right_after_the_banner_stops_gracefully() {
    // The banner is what scripts and supervisors wait for before they may stop
    // the server; the race is narrow, so try a few times.
    let dir = TempDir::new();
    let path = dir.path().join("quick.sock");
    for attempt in 1..=10 {
        let mut server = Server::start(&["--unix", path.to_str().unwrap()]);
        server.sigterm();
        let status = server
            .wait_exit(Duration::from_secs(5))
            .expect("server exits after SIGTERM");
        assert!(
            status.success(),
            "attempt {attempt}: exit status after SIGTERM: {status}"
        );
        assert!(!path.exists(), "attempt {attempt}: socket file left behind");
    }
}

#[test]
fn port_in_use_stops_start_with_a_message_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let exited = serve_expecting_exit(&["--tcp", &addr]);
    assert!(
        !exited.status.success(),
        "started on a used port: {exited:?}"
    );
    assert!(
        exited.stderr.contains(&addr),
        "address not named: {}",
        exited.stderr
    );
    assert!(!exited.stderr.contains("panicked"), "{}", exited.stderr);
}
