//! The WebSocket gateway (`/ws`) with a real client: the relay contract, who may
//! connect, every close code, the session limit, the ping keepalive, and what is
//! left behind when either side goes away.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::support::{
    assert_texts, client_header, frame, free_addr, masked_frame, metric, reply_texts,
    serve_expecting_exit, server_frames, wait_for_metric, ws_close_frame, ws_connect,
    ws_connect_with, ws_exchange, ws_next, ws_reply, RawWs, Server, Ws,
};
use futures_util::{SinkExt, StreamExt};
use timecho_shared::{reply, StampCache, StampFormat};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{self, Message};

/// How long a gauge may take to settle after a session ends.
const SETTLE: Duration = Duration::from_secs(5);
/// Long enough for a frame that is not due to have arrived on loopback.
const SILENCE: Duration = Duration::from_millis(300);

const SESSIONS_OPEN: &str = "timecho_websocket_sessions_open";
const CONNECTIONS_OPEN: &str = "timecho_connections_open";

/// Waits for a metric without blocking the runtime the WebSocket clients use.
async fn settle(http: SocketAddr, name: &'static str, expected: f64) {
    tokio::task::spawn_blocking(move || wait_for_metric(http, name, &[], expected, SETTLE))
        .await
        .expect("metric wait");
}

/// Fails unless nothing but pings arrives for `SILENCE`.
async fn assert_quiet(ws: &mut Ws) {
    let quiet = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    };
    if let Ok(extra) = tokio::time::timeout(SILENCE, quiet).await {
        panic!("expected nothing more, got {extra:?}");
    }
}

/// A handshake the gateway refuses: its HTTP status and body.
async fn refused(http: SocketAddr, headers: &[(&'static str, &str)]) -> (u16, String) {
    match ws_connect_with(http, headers).await {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("handshake failed without an HTTP status: {e}"),
        Ok(_) => panic!("handshake with {headers:?} was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn text_frame_gets_one_stamped_reply_frame_without_a_newline() {
    let server = Server::start(&[]);
    let mut ws = ws_connect(server.http_addr()).await;
    // ws_reply fails on a frame holding a newline or anything but one stamped line.
    assert_eq!(ws_exchange(&mut ws, "hello gateway").await, "hello gateway");
    assert_eq!(
        ws_exchange(&mut ws, "héllo, ünïcode ✓").await,
        "héllo, ünïcode ✓"
    );
    assert_quiet(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frame_with_several_lines_gets_one_reply_frame_per_line_in_order() {
    let server = Server::start(&[]);
    let mut ws = ws_connect(server.http_addr()).await;
    ws.send(Message::text("a\nb")).await.unwrap();
    assert_eq!(ws_reply(&mut ws).await, "a");
    assert_eq!(ws_reply(&mut ws).await, "b");
    // `\r\n` is one newline, and a trailing newline adds no empty line: the
    // next frame after `d` is the reply to the next message.
    ws.send(Message::text("c\r\nd\n")).await.unwrap();
    ws.send(Message::text("e")).await.unwrap();
    for expected in ["c", "d", "e"] {
        assert_eq!(ws_reply(&mut ws).await, expected);
    }
    assert_quiet(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_origin_is_refused_with_403_naming_allow_origin() {
    let server = Server::start(&[]);
    let (status, body) = refused(server.http_addr(), &[("origin", "http://evil.test")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("--allow-origin http://evil.test"),
        "the reason does not say how to allow it: {body:?}"
    );
    // The same host on another port is another origin.
    let other_port = format!("http://127.0.0.1:{}", server.http_addr().port() + 1);
    assert_eq!(
        refused(server.http_addr(), &[("origin", &other_port)])
            .await
            .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_origin_and_clients_without_origin_are_allowed() {
    let server = Server::start(&[]);
    let http = server.http_addr();
    let page = format!("http://{http}");
    let mut same = ws_connect_with(http, &[("origin", &page)])
        .await
        .expect("a page from this gateway may connect");
    assert_eq!(
        ws_exchange(&mut same, "from the page").await,
        "from the page"
    );
    let mut cli = ws_connect(http).await;
    assert_eq!(
        ws_exchange(&mut cli, "from a script").await,
        "from a script"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_origin_admits_that_origin_and_no_other() {
    let server = Server::start(&["--allow-origin", "http://example.test"]);
    let http = server.http_addr();
    let mut ws = ws_connect_with(http, &[("origin", "http://example.test")])
        .await
        .expect("the allowed origin may connect");
    assert_eq!(ws_exchange(&mut ws, "allowed").await, "allowed");
    let (status, body) = refused(http, &[("origin", "http://other.test")]).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_developers_page_is_allowed_as_written_from_a_dev_server_a_file_or_anywhere() {
    // As copied from the address bar, with its trailing slash; and a file:// page.
    let server = Server::start(&[
        "--allow-origin",
        "http://localhost:3000/",
        "--allow-origin",
        "null",
    ]);
    let http = server.http_addr();
    for origin in ["http://localhost:3000", "null"] {
        let mut ws = ws_connect_with(http, &[("origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin} may connect: {e}"));
        assert_eq!(ws_exchange(&mut ws, origin).await, origin);
    }
    let (status, body) = refused(http, &[("origin", "http://localhost:3001")]).await;
    assert_eq!(status, 403, "{body}");

    let mut any = Server::start(&["--allow-origin", "*"]);
    let mut ws = ws_connect_with(any.http_addr(), &[("origin", "https://anywhere.example")])
        .await
        .expect("any origin may connect");
    assert_eq!(ws_exchange(&mut ws, "anywhere").await, "anywhere");
    any.wait_for_log("--allow-origin *: any web page may open /ws", 1);

    let refused = serve_expecting_exit(&["--allow-origin", "*", "--auth", "token:/dev/null"]);
    assert!(!refused.status.success(), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("--allow-origin * cannot go with --auth"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_closes_with_1011_telling_the_visitor_no_internal_address() {
    let upstream = free_addr().to_string();
    let mut server = Server::start(&["--upstream", &upstream]);
    let mut ws = ws_connect(server.http_addr()).await;
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1011, "{reason}");
    assert_eq!(reason, "the timestamp server is unreachable");
    assert_eq!(
        metric(
            server.http_addr(),
            "timecho_upstream_connect_failures_total",
            &[]
        ),
        1.0
    );
    // The operator learns where and why.
    let log = server.wait_for_log(&upstream, 1);
    assert!(log.contains("refused"), "{log}");

    // Every page of an outage meets it: counted each time, logged once per
    // interval, so a reconnect storm does not flood the log.
    for _ in 0..20 {
        let mut ws = ws_connect(server.http_addr()).await;
        assert_eq!(ws_close_frame(&mut ws).await.0, 1011);
    }
    let failures = "timecho_upstream_connect_failures_total";
    assert_eq!(metric(server.http_addr(), failures, &[]), 21.0);
    let log = server.stderr();
    assert_eq!(log.matches(&upstream).count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_idle_close_ends_the_websocket_as_routine_with_4002() {
    let server = Server::start(&["--idle-timeout", "1s"]);
    let mut ws = ws_connect(server.http_addr()).await;
    assert_eq!(
        ws_exchange(&mut ws, "before the quiet").await,
        "before the quiet"
    );
    // No error line is relayed: the close carries the notice.
    match ws_next(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4002, "{frame:?}");
            assert_eq!(frame.reason.as_str(), "idle for 1s; closing");
        }
        other => panic!("expected the idle close, got {other:?}"),
    }
    let http = server.http_addr();
    tokio::task::spawn_blocking(move || {
        wait_for_metric(
            http,
            "timecho_websocket_closed_total",
            &["ending=\"Idle\""],
            1.0,
            SETTLE,
        )
    })
    .await
    .expect("metric wait");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_stops_reading_closes_with_1011_after_the_stall_timeout() {
    // A "timestamp server" that accepts and never reads.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let server = Server::start(&["--upstream", &upstream, "--stall-timeout", "1s"]);
    let ws = ws_connect(server.http_addr()).await;
    let _held = holder.join().unwrap().expect("the gateway connects");
    let (mut tx, mut rx) = ws.split();
    // Frames until every buffer on the way is full and the gateway's write waits.
    let frame = "x".repeat(60 * 1024);
    let flood =
        tokio::spawn(async move { while tx.send(Message::text(frame.as_str())).await.is_ok() {} });
    let close = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within a minute");
    flood.abort();
    assert_eq!(close.0, 1011, "{close:?}");
    assert!(close.1.contains("read nothing for 1s"), "{close:?}");
    let lost = metric(
        server.http_addr(),
        "timecho_websocket_closed_total",
        &["ending=\"UpstreamLost\""],
    );
    assert_eq!(lost, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_shutting_down_closes_the_websocket_with_1000() {
    let mut upstream = Server::start(&["--no-http"]);
    let gateway = Server::start(&["--upstream", &upstream.tcp_addr().to_string()]);
    let mut ws = ws_connect(gateway.http_addr()).await;
    assert_eq!(ws_exchange(&mut ws, "before").await, "before");

    // A graceful stop: the upstream answers what it has and closes with a FIN.
    let stopping = tokio::task::spawn_blocking(move || upstream.terminate());
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.contains("closed the connection"), "{reason:?}");
    assert!(stopping.await.unwrap().success());
    settle(gateway.http_addr(), SESSIONS_OPEN, 0.0).await;
}

/// What a client that sends `n` text frames and then its Close, in one write,
/// gets back before the connection ends: the server's frames.
fn frames_then_close(http: SocketAddr, n: usize) -> Vec<(u8, Vec<u8>)> {
    let mut raw = RawWs::handshake(http);
    let mut burst = Vec::new();
    for i in 0..n {
        burst.extend(masked_frame(0x1, format!("owed {i}").as_bytes()));
    }
    burst.extend(masked_frame(0x8, &1000u16.to_be_bytes()));
    raw.stream.write_all(&burst).unwrap();
    let mut received = Vec::new();
    raw.stream
        .read_to_end(&mut received)
        .expect("the gateway closes the connection after the close handshake");
    server_frames(&received)
}

#[test]
fn a_client_closing_gets_the_replies_it_is_owed_first() {
    let server = Server::start(&[]);
    for n in [1, 5, 1000] {
        let frames = frames_then_close(server.http_addr(), n);
        let (close, texts) = frames.split_last().expect("some frames");
        let echoes: Vec<Vec<u8>> = texts
            .iter()
            .map(|(opcode, payload)| {
                assert_eq!(*opcode, 0x1, "a text frame");
                crate::support::parse_reply(payload).1
            })
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("owed {i}")).collect();
        assert_texts(&echoes, &expected);
        assert_eq!(close.0, 0x8, "then the server's Close");
        assert_eq!(
            close.1[..2],
            1000u16.to_be_bytes(),
            "with 1000 ({n} frames)"
        );
    }
    // The gauge drops just after the socket closes, so the client may look first.
    wait_for_metric(server.http_addr(), SESSIONS_OPEN, &[], 0.0, SETTLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_leaving_closes_its_upstream_connection_and_leaks_nothing() {
    let upstream = Server::start(&[]);
    let gateway = Server::start(&["--upstream", &upstream.tcp_addr().to_string()]);
    let (up_http, gw_http) = (upstream.http_addr(), gateway.http_addr());
    let mut polite = ws_connect(gw_http).await;
    let mut vanishing = ws_connect(gw_http).await;
    assert_eq!(ws_exchange(&mut polite, "one").await, "one");
    assert_eq!(ws_exchange(&mut vanishing, "two").await, "two");
    settle(up_http, CONNECTIONS_OPEN, 2.0).await;
    settle(gw_http, SESSIONS_OPEN, 2.0).await;

    // A close handshake, as a browser closing the tab does.
    polite.close(None).await.unwrap();
    while let Some(Ok(_)) = polite.next().await {}
    settle(up_http, CONNECTIONS_OPEN, 1.0).await;
    settle(gw_http, SESSIONS_OPEN, 1.0).await;

    // Gone without a close frame, as when the network drops.
    drop(vanishing);
    settle(up_http, CONNECTIONS_OPEN, 0.0).await;
    settle(gw_http, SESSIONS_OPEN, 0.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_frame_closes_with_1003() {
    let server = Server::start(&[]);
    let mut ws = ws_connect(server.http_addr()).await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1003, "{reason}");
    assert!(reason.contains("binary"), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_frame_with_invalid_utf8_closes_with_1007() {
    let server = Server::start(&[]);
    let mut ws = ws_connect(server.http_addr()).await;
    // Message::Text must be valid UTF-8, so the frame is built by hand.
    let bad = Frame::message(&b"caf\xc3 \xff"[..], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("UTF-8"), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn frame_over_max_line_closes_with_1009_and_other_sessions_go_on() {
    let server = Server::start(&["--max-line", "1024"]);
    let http = server.http_addr();
    let mut other = ws_connect(http).await;
    assert_eq!(ws_exchange(&mut other, "before").await, "before");

    // A frame at the limit is relayed; one byte more is refused.
    let mut ws = ws_connect(http).await;
    let at_limit = "x".repeat(1024);
    assert_eq!(ws_exchange(&mut ws, &at_limit).await, at_limit);
    ws.send(Message::text("y".repeat(1025))).await.unwrap();
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("1024"), "{reason:?}");

    // Far beyond the limit the protocol layer stops reading mid-frame; the
    // close code is the same.
    let mut huge = ws_connect(http).await;
    huge.send(Message::text("z".repeat(1 << 20))).await.unwrap();
    let (code, reason) = ws_close_frame(&mut huge).await;
    assert_eq!(code, 1009, "{reason}");

    assert_eq!(ws_exchange(&mut other, "after").await, "after");
    let mut fresh = ws_connect(http).await;
    assert_eq!(ws_exchange(&mut fresh, "fresh").await, "fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peer_is_dropped_by_the_ping_keepalive() {
    let server = Server::start(&["--ws-ping", "200ms"]);
    let http = server.http_addr();
    // Upgrades, then neither reads nor writes: no pong, no frame, as a peer
    // whose machine went away without closing the connection.
    let mut raw = tokio::task::spawn_blocking(move || RawWs::handshake(http))
        .await
        .unwrap();
    let upgraded = Instant::now();
    settle(http, SESSIONS_OPEN, 1.0).await;
    settle(http, SESSIONS_OPEN, 0.0).await;
    let dropped_after = upgraded.elapsed();
    eprintln!("silent peer dropped {dropped_after:?} after the upgrade (ping every 200 ms)");
    assert!(
        dropped_after >= Duration::from_millis(350),
        "dropped after {dropped_after:?}, before two ping intervals of silence"
    );
    assert!(
        dropped_after < Duration::from_secs(2),
        "still open {dropped_after:?} after going silent"
    );
    // Its upstream connection went with it.
    settle(http, CONNECTIONS_OPEN, 0.0).await;

    // What the peer would have read: pings, then the end of the connection.
    let received = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        raw.stream
            .read_to_end(&mut bytes)
            .expect("the gateway closes the connection");
        bytes
    })
    .await
    .unwrap();
    let opcodes: Vec<u8> = server_frames(&received).iter().map(|f| f.0).collect();
    assert!(
        opcodes.first() == Some(&0x9) && opcodes.iter().all(|&op| op == 0x9 || op == 0x8),
        "expected pings (and perhaps a close), got opcodes {opcodes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_that_answers_pings_is_kept_while_it_sends_nothing() {
    let server = Server::start(&["--ws-ping", "200ms"]);
    let http = server.http_addr();
    let mut ws = ws_connect(http).await;
    // Reading lets the client answer each ping with a pong; it sends no data
    // for more than seven ping intervals.
    let mut pings = 0;
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(next) = tokio::time::timeout_at(quiet_until, ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings while quiet, got {other:?}"),
        }
    }
    assert!(
        pings >= 4,
        "only {pings} pings in 1.5 s at a 200 ms interval"
    );
    assert_eq!(ws_exchange(&mut ws, "still here").await, "still here");
    assert_eq!(metric(http, SESSIONS_OPEN, &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_limit_refuses_the_third_handshake_with_503() {
    let server = Server::start(&["--max-websockets", "2"]);
    let http = server.http_addr();
    let mut first = ws_connect(http).await;
    let mut second = ws_connect(http).await;
    assert_eq!(ws_exchange(&mut first, "1").await, "1");
    assert_eq!(ws_exchange(&mut second, "2").await, "2");

    let (status, body) = refused(http, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many WebSocket sessions"), "{body:?}");
    assert_eq!(ws_exchange(&mut first, "still 1").await, "still 1");

    // Once a session has ended, its place is free again.
    first.close(None).await.unwrap();
    while let Some(Ok(_)) = first.next().await {}
    settle(http, SESSIONS_OPEN, 1.0).await;
    let mut third = ws_connect(http).await;
    assert_eq!(ws_exchange(&mut third, "3").await, "3");
    assert_eq!(ws_exchange(&mut second, "still 2").await, "still 2");
}

/// Binary frames received until `lines` newlines have come, concatenated.
async fn binary_stream(ws: &mut Ws, lines: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.iter().filter(|&&b| b == b'\n').count() < lines {
        match ws_next(ws).await {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("expected binary frames, got {other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_subprotocol_relays_the_byte_stream_both_ways_unchanged() {
    // No partial-line answer: "hel" must wait for the rest of its line however
    // long the second frame takes on a busy machine.
    let server = Server::start(&["--partial-timeout", "0"]);
    let mut ws = ws_connect_with(server.http_addr(), &[("sec-websocket-protocol", "binary")])
        .await
        .expect("the gateway chooses binary");
    // A line split across frames, and bytes that are not UTF-8.
    ws.send(Message::binary(&b"hel"[..])).await.unwrap();
    ws.send(Message::binary(&b"lo\n\xff\xfe raw\n"[..]))
        .await
        .unwrap();
    let stream = binary_stream(&mut ws, 2).await;
    let texts = reply_texts(&stream);
    assert_texts(&texts, &[&b"hello"[..], &b"\xff\xfe raw"[..]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lines_subprotocol_is_todays_text_contract_by_name() {
    let server = Server::start(&[]);
    let mut ws = ws_connect_with(
        server.http_addr(),
        &[("sec-websocket-protocol", "timecho-lines, binary")],
    )
    .await
    .expect("the gateway chooses timecho-lines");
    assert_eq!(ws_exchange(&mut ws, "by name").await, "by name");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let (code, _) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1003);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_unknown_subprotocols_are_refused_naming_the_spoken_ones() {
    let server = Server::start(&[]);
    let (status, body) = refused(
        server.http_addr(),
        &[("sec-websocket-protocol", "mqtt, soap")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("timecho-lines") && body.contains("binary"),
        "{body:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_upstream_is_relayed_like_a_tcp_one() {
    let dir = crate::support::TempDir::new();
    let path = dir.path().join("timecho.sock");
    let _upstream = Server::start(&["--no-http", "--unix", path.to_str().unwrap()]);
    let target = format!("unix:{}", path.display());
    let gateway = Server::start(&["--upstream", &target]);
    let mut ws = ws_connect(gateway.http_addr()).await;
    assert_eq!(ws_exchange(&mut ws, "over unix").await, "over unix");
    let mut raw = ws_connect_with(gateway.http_addr(), &[("sec-websocket-protocol", "binary")])
        .await
        .unwrap();
    raw.send(Message::binary(&b"bytes over unix\n"[..]))
        .await
        .unwrap();
    assert_texts(
        &reply_texts(&binary_stream(&mut raw, 1).await),
        &[&b"bytes over unix"[..]],
    );

    // A socket nobody listens on is named in the log, not to the visitor.
    let missing = format!("unix:{}", dir.path().join("nobody.sock").display());
    let mut lonely = Server::start(&["--upstream", &missing]);
    let mut ws = ws_connect(lonely.http_addr()).await;
    let (code, reason) = ws_close_frame(&mut ws).await;
    assert_eq!(code, 1011, "{reason}");
    assert_eq!(reason, "the timestamp server is unreachable");
    lonely.wait_for_log("nobody.sock", 1);
}

/// An upstream that answers like the tutorial's server in raw framing: the
/// reply to the line it reads, in several writes, then one without a newline.
fn raw_upstream() -> (String, std::thread::JoinHandle<std::net::TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serve = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the gateway connects");
        let mut line = Vec::new();
        std::io::BufReader::new(&stream)
            .read_until(b'\n', &mut line)
            .unwrap();
        let mut stamps = StampCache::new(StampFormat::default());
        let (mut echo, mut unfinished) = (Vec::new(), Vec::new());
        reply::write_raw(&mut echo, stamps.now(), &line);
        reply::write_raw(&mut unfinished, stamps.now(), b"no newline");
        let (head, tail) = echo.split_at(echo.len() / 2);
        for part in [head, tail, &unfinished] {
            stream.write_all(part).unwrap();
        }
        stream
    });
    (addr, serve)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_reply_without_a_newline_is_relayed_once_the_upstream_is_quiet() {
    let (upstream, serve) = raw_upstream();
    let server = Server::start(&["--upstream", &upstream]);
    let mut ws = ws_connect(server.http_addr()).await;
    assert_eq!(ws_exchange(&mut ws, "first").await, "first");
    let _held = tokio::task::spawn_blocking(move || serve.join().unwrap())
        .await
        .unwrap();
    // The upstream keeps the connection open: only its silence ends the line.
    assert_eq!(ws_reply(&mut ws).await, "no newline");
    assert_quiet(&mut ws).await;
}

/// The close code the gateway sends after `bytes`, read to the end of the stream.
fn close_code_after(http: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut raw = RawWs::handshake(http);
    raw.stream.write_all(bytes).expect("send the frames");
    let mut got = Vec::new();
    let _ = raw.stream.read_to_end(&mut got);
    server_frames(&got)
        .into_iter()
        .find(|(opcode, _)| *opcode == 0x8)
        .and_then(|(_, payload)| payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])))
}

#[test]
fn protocol_violations_are_closed_with_1002_and_counted_as_refused() {
    let server = Server::start(&[]);
    let http = server.http_addr();
    let violations = [
        (
            "a reserved bit",
            frame(
                FrameHeader {
                    rsv1: true,
                    ..client_header(0x1)
                },
                b"hi",
            ),
        ),
        ("a reserved opcode", masked_frame(0x3, b"x")),
        (
            "an unmasked frame",
            frame(
                FrameHeader {
                    mask: None,
                    ..client_header(0x1)
                },
                b"hi",
            ),
        ),
        (
            "a control frame over 125 bytes",
            masked_frame(0x9, &[0u8; 126]),
        ),
        (
            "a fragmented control frame",
            frame(
                FrameHeader {
                    is_final: false,
                    ..client_header(0x9)
                },
                b"p",
            ),
        ),
        ("a continuation without a start", masked_frame(0x0, b"x")),
    ];
    for (what, bytes) in &violations {
        assert_eq!(close_code_after(http, bytes), Some(1002), "{what}");
    }
    let refused = metric(
        http,
        "timecho_websocket_closed_total",
        &["ending=\"Refused\""],
    );
    assert_eq!(refused, violations.len() as f64);
}

#[test]
fn a_malformed_key_or_two_host_headers_get_400_and_a_head_over_32_kib_431() {
    let server = Server::start(&[]);
    let http = server.http_addr();
    // No status when the server closes without one.
    let status = |request: String| {
        crate::support::http::try_send_raw(http, request)
            .ok()
            .map(|response| response.status)
    };
    let upgrade = |key: &str, extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    };
    assert_eq!(status(upgrade("not-a-nonce", "")), Some(400));
    assert_eq!(
        status(upgrade("dGhlIHNhbXBsZSBub25jZSEh", "")),
        Some(400),
        "18 bytes"
    );
    assert_eq!(
        status(upgrade(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "Host: evil.example\r\n"
        )),
        Some(400)
    );
    let big = format!("X-Filler: {}\r\n", "a".repeat(8000));
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {http}\r\n{}Connection: close\r\n\r\n",
        big.repeat(5)
    );
    assert!(head.len() > 40_000);
    let got = status(head);
    assert!(matches!(got, Some(431) | None), "a 40 KB head got {got:?}");
}

#[test]
fn a_close_with_a_forbidden_code_or_reason_is_answered_1002_or_1007() {
    let server = Server::start(&[]);
    let http = server.http_addr();
    for (payload, expected) in [
        (999u16.to_be_bytes().to_vec(), 1002),
        (1005u16.to_be_bytes().to_vec(), 1002),
        (5000u16.to_be_bytes().to_vec(), 1002),
        (vec![0x03, 0xe8, 0xff, 0xfe], 1007),
        (1000u16.to_be_bytes().to_vec(), 1000),
    ] {
        let close = masked_frame(0x8, &payload);
        assert_eq!(
            close_code_after(http, &close),
            Some(expected),
            "{payload:?}"
        );
    }
}

/// A session that has gone quiet (its protocol layer renewed at rest), told
/// to come back later, and then hearing a frame before the client's Close,
/// sends one Close and no other: a second one makes Chromium fail the socket
/// ("Close received after close") and the page shows a lost gateway instead
/// of a restart.
#[test]
fn a_resting_session_sends_one_close_whatever_the_client_sends_after_it() {
    // The renewal at rest is traced: the test waits for it.
    let mut server = Server::start(&["--log", "info,timecho::gateway::ws::session_socket=trace"]);
    let mut raw = RawWs::handshake(server.http_addr());
    raw.send(0x1, b"hello").unwrap();
    let (opcode, reply) = raw.read_frame();
    assert_eq!(opcode, 0x1, "{}", reply.escape_ascii());
    server.wait_for_log("resting=true", 1);

    server.sigterm();
    let (opcode, close) = loop {
        match raw.read_frame() {
            (0x9, _) => continue,
            frame => break frame,
        }
    };
    assert_eq!(opcode, 0x8, "the restart's Close: {}", close.escape_ascii());
    assert_eq!(close[..2], 1012u16.to_be_bytes());
    // An unsolicited Pong (RFC 6455 5.5.3) wakes the session's layer...
    raw.send(0xA, b"").unwrap();
    std::thread::sleep(SILENCE);
    // ... and the client's Close must not be answered a second time.
    raw.send(0x8, &1000u16.to_be_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = raw.stream.read_to_end(&mut rest);
    let closes: Vec<_> = server_frames(&rest)
        .into_iter()
        .filter(|(opcode, _)| *opcode == 0x8)
        .collect();
    assert!(closes.is_empty(), "a second Close: {closes:?}");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
}
