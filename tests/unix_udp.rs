//! `timecho serve --unix` (socket file life cycle) and `--udp` (one datagram in,
//! one stamped datagram out, within a per-source byte budget).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    assert_texts, metric, parse_reply, reply_texts, serve_expecting_exit, Datagrams, Peer, Server,
    TempDir,
};

#[test]
fn unix_socket_answers_lines() {
    let dir = TempDir::new();
    let path = dir.path().join("timecho.sock");
    let server = Server::start(&["--unix", path.to_str().unwrap()]);
    assert_eq!(server.unix_path(), path);
    let mut peer = Peer::unix(&path);
    peer.send(b"hello\nworld\n");
    peer.close_write();
    assert_texts(&reply_texts(&peer.read_to_end()), &["hello", "world"]);
}

#[test]
fn stale_unix_socket_file_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path().join("stale.sock");
    // What a crashed server leaves behind: a socket file nobody listens on.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _server = Server::start(&["--unix", path.to_str().unwrap()]);
    let mut peer = Peer::unix(&path);
    peer.send(b"fresh\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["fresh"]);
}

#[test]
fn second_server_on_a_live_unix_socket_refuses_saying_in_use() {
    let dir = TempDir::new();
    let path = dir.path().join("busy.sock");
    let path_arg = path.to_str().unwrap();
    let _first = Server::start(&["--unix", path_arg]);

    let second = serve_expecting_exit(&["--unix", path_arg]);
    assert!(
        !second.status.success(),
        "second server started: {second:?}"
    );
    assert!(second.stderr.contains("in use"), "{}", second.stderr);
    assert!(
        second.stderr.contains(path_arg),
        "path not named: {}",
        second.stderr
    );

    // The refusal must leave the first server's socket alone.
    let mut peer = Peer::unix(&path);
    peer.send(b"still mine\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["still mine"]);
}

#[test]
fn unix_socket_file_is_removed_on_sigterm() {
    let dir = TempDir::new();
    let path = dir.path().join("gone.sock");
    let mut server = Server::start(&["--unix", path.to_str().unwrap()]);
    assert!(path.exists(), "socket file not created");
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn udp_datagram_is_answered_with_one_stamped_datagram() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp = Datagrams::connect(server.udp_addr());
    udp.send(b"ping");
    let reply = udp.recv();
    assert!(
        !reply.ends_with(b"\n"),
        "datagram reply has a newline: \"{}\"",
        reply.escape_ascii()
    );
    assert_texts(&[parse_reply(&reply).1], &["ping"]);
    let extra = udp.recv_within(Duration::from_millis(200));
    assert_eq!(extra, None, "more than one datagram in reply");
}

#[test]
fn empty_udp_datagram_gets_no_reply_and_serving_continues() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp = Datagrams::connect(server.udp_addr());
    udp.send(b"");
    let reply = udp.recv_within(Duration::from_millis(300));
    assert_eq!(reply, None, "an empty datagram was answered");
    udp.send(b"still there?");
    assert_texts(&[parse_reply(&udp.recv()).1], &["still there?"]);
}

#[test]
fn the_largest_udp_datagram_answered_is_65472_bytes_and_a_larger_one_is_dropped() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp = Datagrams::connect(server.udp_addr());
    let largest = vec![b'u'; 65_472];
    udp.send(&largest);
    let reply = udp.recv();
    assert_eq!(
        parse_reply(&reply).1,
        largest,
        "the reply holds the datagram"
    );
    assert!(
        reply.len() <= 65_507,
        "{} bytes do not fit a datagram",
        reply.len()
    );
    udp.send(&[b'v'; 65_473]);
    let reply = udp.recv_within(Duration::from_millis(300));
    assert_eq!(
        reply.map(|r| r.len()),
        None,
        "an over-long datagram was answered"
    );
    udp.send(b"after the big one");
    assert_texts(&[parse_reply(&udp.recv()).1], &["after the big one"]);
    assert_eq!(
        metric(
            server.http_addr(),
            "timecho_errors_total",
            &[r#"kind="UdpDropped""#]
        ),
        1.0
    );
}

/// What a source may get back beyond three times what it sent: the allowance that
/// lets short lines be answered, plus its refill over `elapsed`
/// (`server/src/udp/budget.rs`: 1 KiB, refilled over 60 s).
fn udp_allowance(elapsed: Duration) -> u64 {
    1024 + (elapsed.as_secs_f64() * 1024.0 / 60.0).ceil() as u64
}

#[test]
fn udp_flood_of_one_byte_datagrams_gets_back_at_most_three_times_its_bytes() {
    const DATAGRAMS: u64 = 10_000;
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp_addr = server.udp_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(udp_addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let sending = Arc::new(AtomicBool::new(true));
    // Replies are read while the flood is sent, so few are lost to a full buffer here.
    let reader = {
        let socket = socket.try_clone().unwrap();
        let sending = sending.clone();
        thread::spawn(move || {
            let (mut replies, mut bytes) = (0u64, 0u64);
            let mut buf = [0u8; 2048];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        replies += 1;
                        bytes += n as u64;
                    }
                    // Quiet for 500 ms after the last datagram went out: done.
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if !sending.load(Ordering::Acquire) {
                            break;
                        }
                    }
                    Err(e) => panic!("recv: {e}"),
                }
            }
            (replies, bytes)
        })
    };
    for _ in 0..DATAGRAMS {
        socket.send(b"x").expect("send a datagram");
    }
    sending.store(false, Ordering::Release);
    let (replies, reply_bytes) = reader.join().unwrap();
    let elapsed = started.elapsed();

    let listener = format!("listener=\"udp {udp_addr}\"");
    let http = server.http_addr();
    let server_in = metric(http, "timecho_bytes_in_total", &[&listener]) as u64;
    let server_out = metric(http, "timecho_bytes_out_total", &[&listener]) as u64;
    let refused = metric(
        http,
        "timecho_errors_total",
        &[&listener, "kind=\"UdpBudget\""],
    ) as u64;
    let allowance = udp_allowance(elapsed);
    println!(
        "sent {DATAGRAMS} datagrams ({DATAGRAMS} bytes) in {elapsed:?}; received {replies} \
         replies ({reply_bytes} bytes); the server counted {server_in} bytes in, \
         {server_out} bytes out, {refused} replies refused by the budget; \
         allowance {allowance} bytes"
    );
    assert!(server_in > 0 && replies > 0, "nothing got through");
    assert!(
        reply_bytes <= 3 * DATAGRAMS + allowance,
        "{reply_bytes} reply bytes for {DATAGRAMS} bytes sent"
    );
    assert!(
        server_out <= 3 * server_in + allowance,
        "the server sent {server_out} bytes for {server_in} received"
    );
}

#[test]
fn short_udp_lines_one_after_another_are_each_answered() {
    let server = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp = Datagrams::connect(server.udp_addr());
    // What `nc -u` sends: each line, newline included, as one datagram.
    for line in ["hi", "hello there", "3", "what time is it?", "bye"] {
        udp.send(format!("{line}\n").as_bytes());
        let reply = udp.recv();
        let text = parse_reply(&reply).1;
        assert_texts(&[text], &[format!("{line}\n")]);
    }
}

#[test]
fn one_source_has_one_budget_however_many_udp_listeners_it_sends_to() {
    const PER_LISTENER: u64 = 100;
    let server = Server::start(&[
        "--udp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.2:0",
        "--udp",
        "127.0.0.3:0",
    ]);
    let listeners: Vec<_> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| {
            let port = server.listener_on("udp", ip).port();
            std::net::SocketAddr::from((ip.parse::<std::net::Ipv4Addr>().unwrap(), port))
        })
        .collect();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    for _ in 0..PER_LISTENER {
        for to in &listeners {
            socket.send_to(b"x", to).expect("send a datagram");
        }
    }
    let sent = PER_LISTENER * listeners.len() as u64;
    let mut buf = [0u8; 2048];
    let (mut replies, mut bytes) = (0u64, 0u64);
    // Loopback keeps every reply; quiet for 500 ms after the last: done.
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        replies += 1;
        bytes += n as u64;
    }
    let allowance = udp_allowance(started.elapsed());
    println!("sent {sent} bytes to 3 listeners; got {replies} replies, {bytes} bytes; allowance {allowance}");
    assert!(replies > 0, "nothing was answered");
    assert!(
        bytes <= 3 * sent + allowance,
        "{bytes} reply bytes for {sent} bytes sent: a budget per listener"
    );
}

#[test]
fn stopping_a_server_leaves_another_servers_socket_file_alone() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.sock");
    let path_text = path.to_str().unwrap();
    let mut first = Server::start(&["--unix", path_text]);
    // An operator removes the file and starts a second server on the path.
    std::fs::remove_file(&path).unwrap();
    let _second = Server::start(&["--unix", path_text]);
    assert!(first.terminate().success());
    assert!(
        path.exists(),
        "the first server removed the second one's socket file"
    );
    let mut peer = Peer::unix(&path);
    peer.send(b"second\n");
    assert_texts(&[parse_reply(&peer.read_line()).1], &["second"]);
}
