//! `timecho serve --unix` (socket file life cycle) and `--udp` (one datagram in,
//! one stamped datagram out).

mod support;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use support::{
    assert_texts, parse_reply, reply_texts, serve_expecting_exit, Datagrams, Peer, Server, TempDir,
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
