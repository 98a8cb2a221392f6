//! The abuse suite: each case attacks a real `timecho serve` the way a broken or
//! hostile client would, then checks that a client opened before the case and a
//! fresh one are both still answered correctly within a second, and where memory
//! is at stake, how far the server's resident size rose (printed for the notes).
//!
//! Every case starts its own server, so the cases can run in parallel.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::abuse_support::{
    flood_frames, read_until_closed, reset_on_close, slowloris, stream_until_gone,
    unacknowledged_bytes, would_block, Health, LineClient, Memory, Noise, Streamed, WsHealth,
    PROMPT,
};
use crate::support::{
    assert_texts, http, metric, parse_reply, reply_texts, wait_for_metric, ws_close_frame,
    ws_connect, ws_exchange, RawWs, Server,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MIB: usize = 1024 * 1024;
/// How long a gauge or counter may take to settle after the case.
const SETTLE: Duration = Duration::from_secs(5);

const CONNECTIONS_OPEN: &str = "timecho_connections_open";
const SESSIONS_OPEN: &str = "timecho_websocket_sessions_open";

#[test]
fn ten_mib_line_without_a_newline_gets_one_error_and_memory_stays_bounded() {
    let server = Server::start(&[]);
    let mut health = Health::open(&server);
    let memory = Memory::start(&server);

    let mut client = LineClient::connect(server.tcp_addr());
    let mut writer = client.stream().try_clone().unwrap();
    let started = Instant::now();
    let flood = thread::spawn(move || {
        writer.write_all(&vec![b'x'; 10 * MIB]).unwrap();
        started.elapsed()
    });
    let error = client.line().expect("an error line");
    assert_eq!(
        String::from_utf8_lossy(&error),
        "error: line longer than 65536 bytes; discarded"
    );
    let took = flood.join().unwrap();
    eprintln!("10 MiB line written in {took:?}");
    health.check("while the long line is pending");

    // The newline ends the discarded line without a reply; the next line is
    // answered, and it is the very next thing the client reads: one error only.
    client.send(b"\nafter the long line\n");
    let next = client.line().expect("a reply after the newline");
    assert_eq!(parse_reply(&next).1, b"after the long line");
    health.check("after the long line");

    assert_eq!(
        metric(
            server.http_addr(),
            "timecho_errors_total",
            &[r#"kind="TooLong""#]
        ),
        1.0
    );
    // The read buffer never exceeds the 64 KiB limit; buffering the line would
    // take 10 MiB.
    memory.assert_peak_growth_below(4 * 1024, "10 MiB line");
}

#[test]
fn client_that_never_reads_is_throttled_then_dropped_as_stalled() {
    const LINES: usize = 100_000;
    let mut server = Server::start(&["--stall-timeout", "2s"]);
    let http = server.http_addr();
    let mut health = Health::open(&server);
    let memory = Memory::start(&server);

    // 100-byte lines, 10 MB in all: more than the socket buffers on both sides hold.
    let input: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("never read {i:06} {}\n", "z".repeat(81)).into_bytes())
        .collect();
    let mut hog = TcpStream::connect(server.tcp_addr()).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let (mut sent, mut blocked_at, mut dropped) = (0, None, None);
    let mut checked = false;
    while started.elapsed() < Duration::from_secs(5) && sent < input.len() {
        match hog.write(&input[sent..(sent + 64 * 1024).min(input.len())]) {
            Ok(n) => sent += n,
            Err(e) if would_block(&e) => {
                blocked_at.get_or_insert(started.elapsed());
                if !checked {
                    checked = true;
                    // The server has stopped reading: its input counter stands still.
                    let bytes_in = || metric(http, "timecho_bytes_in_total", &[]);
                    let before = bytes_in();
                    thread::sleep(Duration::from_millis(500));
                    assert_eq!(before, bytes_in(), "the server kept reading from the hog");
                    health.check("while the hog is throttled");
                }
            }
            Err(e) => {
                dropped = Some((started.elapsed(), e));
                break;
            }
        }
    }
    let blocked_at = blocked_at.expect("the hog was never throttled");
    eprintln!(
        "never-reading client: throttled after {blocked_at:?} with {} of {} bytes written; {}",
        sent,
        input.len(),
        match &dropped {
            Some((at, e)) => format!("its writes failed after {at:?} ({e})"),
            None => "still writable after 5 s".to_owned(),
        }
    );
    assert!(
        sent < input.len(),
        "the hog wrote everything: no backpressure"
    );
    wait_for_metric(
        http,
        "timecho_errors_total",
        &[r#"kind="Stalled""#],
        1.0,
        SETTLE,
    );
    wait_for_metric(http, CONNECTIONS_OPEN, &[], 1.0, SETTLE);
    // Logged as the connection ends; its log line may reach us just after
    // the metrics say so.
    server.wait_for_log("dropped: client stopped reading its replies", 1);
    health.check("after the hog was dropped");
    // One reply buffer, not the 13 MB of replies the hog was owed.
    memory.assert_peak_growth_below(2 * 1024, "client that never reads");
}

#[test]
fn binary_garbage_with_nul_and_invalid_utf8_is_echoed_byte_exact() {
    let server = Server::start(&[]);
    let mut health = Health::open(&server);
    let mut noise = Noise(0x5eed_7157_c0de);
    let mut lines: Vec<Vec<u8>> = vec![
        b"\0".to_vec(),
        b"\0\0\0 nul \0".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"\xc3\x28 \xe2\x82 \xf0\x9f\x98".to_vec(),
        b"carriage \r return inside".to_vec(),
        b"] looks like [a stamp] ".to_vec(),
    ];
    // Any byte but the newline; a line cannot end in \r, which is part of `\r\n`.
    for _ in 0..300 {
        let len = 1 + (noise.next() % 2000) as usize;
        let mut line: Vec<u8> = (0..len)
            .map(|_| noise.next() as u8)
            .filter(|&b| b != b'\n')
            .collect();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    let input: Vec<u8> = lines
        .iter()
        .flat_map(|l| [&l[..], b"\n"].concat())
        .collect();

    let mut stream = TcpStream::connect(server.tcp_addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&input).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let (replies, clean) = read_until_closed(&mut stream, Duration::from_secs(10));
    sender.join().unwrap();
    assert!(clean, "the connection was reset");
    assert_texts(&reply_texts(&replies), &lines);
    health.check("after the garbage");
}

#[test]
fn two_thousand_connections_dropped_abruptly_leave_the_server_serving() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let mut server = Server::start(&[]);
    let (addr, http) = (server.tcp_addr(), server.http_addr());
    let mut health = Health::open(&server);
    let memory = Memory::start(&server);
    let started = Instant::now();
    let droppers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let mut s = TcpStream::connect(addr).unwrap();
                    // Every way of leaving without a goodbye: a reset at once, a reset
                    // mid-line, a close without reading the reply, a close at once.
                    match (t * PER_THREAD + i) % 4 {
                        0 => reset_on_close(&s),
                        1 => {
                            let _ = s.write_all(b"half a li");
                            reset_on_close(&s);
                        }
                        2 => {
                            let _ = s.write_all(b"a whole line, never read\n");
                        }
                        _ => {}
                    }
                    drop(s);
                }
            })
        })
        .collect();
    for dropper in droppers {
        dropper.join().unwrap();
    }
    eprintln!(
        "2000 connections opened and dropped in {:?}",
        started.elapsed()
    );
    health.check("after 2000 abrupt drops");
    wait_for_metric(http, CONNECTIONS_OPEN, &[], 1.0, SETTLE);
    let accepted = metric(http, "timecho_connections_accepted_total", &[]);
    assert!(accepted >= 2002.0, "only {accepted} connections accepted");
    let log = server.stderr();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    // Two thousand leaked connections would hold some 16 MiB.
    memory.assert_peak_growth_below(8 * 1024, "2000 abrupt drops");
}

#[test]
fn thousand_idle_connections_are_all_served_afterwards() {
    const IDLE: usize = 1000;
    let server = Server::start(&[]);
    let (addr, http) = (server.tcp_addr(), server.http_addr());
    let mut health = Health::open(&server);
    let memory = Memory::start(&server);
    let mut idle: Vec<LineClient> = (0..IDLE).map(|_| LineClient::connect(addr)).collect();
    wait_for_metric(http, CONNECTIONS_OPEN, &[], (IDLE + 1) as f64, SETTLE);
    // Let every task reach its first read before measuring.
    thread::sleep(Duration::from_millis(200));
    let grown = memory.rss_kib().saturating_sub(memory.baseline_kib());
    eprintln!(
        "memory: {IDLE} idle connections: +{grown} KiB resident, {:.1} KiB per connection",
        grown as f64 / IDLE as f64
    );
    health.check("with 1000 idle connections");

    let started = Instant::now();
    for (i, client) in idle.iter_mut().enumerate() {
        client.send(format!("idle client {i}\n").as_bytes());
    }
    for (i, client) in idle.iter_mut().enumerate() {
        let line = client
            .line()
            .unwrap_or_else(|e| panic!("idle client {i}: {e}"));
        assert_eq!(parse_reply(&line).1, format!("idle client {i}").as_bytes());
    }
    eprintln!("{IDLE} idle clients answered in {:?}", started.elapsed());
    // A connection's read buffer is 4 KiB until a long line needs more.
    assert!(
        grown < 32 * IDLE as u64,
        "{grown} KiB for {IDLE} idle connections: more than 32 KiB each"
    );
    health.check("after the idle clients spoke");
}

#[test]
fn connection_limit_refuses_the_51st_and_admits_again_after_some_leave() {
    let server = Server::start(&["--max-connections", "50"]);
    let (addr, http) = (server.tcp_addr(), server.http_addr());
    let busy = "error: server busy (50 connections); try again later";
    // The health check's long-lived client is the first of the 50.
    let mut health = Health::open(&server);
    wait_for_metric(http, CONNECTIONS_OPEN, &[], 1.0, SETTLE);
    let mut clients: Vec<LineClient> = (1..50)
        .map(|i| {
            let mut c = LineClient::connect(addr);
            c.assert_prompt_echo(&format!("client {i}"), "filling up");
            c
        })
        .collect();

    let assert_refused = |round: &str| {
        let mut extra = TcpStream::connect(addr).unwrap();
        let (said, clean) = read_until_closed(&mut extra, Duration::from_secs(5));
        assert!(clean, "{round}: the refused client was reset");
        assert_eq!(
            String::from_utf8_lossy(&said),
            format!("{busy}\n"),
            "{round}"
        );
    };
    assert_refused("the 51st");
    for (i, c) in clients.iter_mut().enumerate() {
        c.assert_prompt_echo(&format!("client {} still here", i + 1), "at the limit");
    }

    // Ten leave; their places are free once the server has seen them go.
    clients.truncate(39);
    wait_for_metric(http, CONNECTIONS_OPEN, &[], 40.0, SETTLE);
    health.check("after ten left");
    for i in 0..10 {
        let mut c = LineClient::connect(addr);
        c.assert_prompt_echo(&format!("newcomer {i}"), "after ten left");
        clients.push(c);
    }
    assert_refused("the 51st after the churn");
    assert_eq!(
        metric(http, "timecho_errors_total", &[r#"kind="Busy""#]),
        2.0
    );
}

#[test]
fn half_close_after_ten_thousand_lines_gets_every_reply_then_end_of_stream() {
    const CLIENTS: usize = 4;
    const LINES: usize = 10_000;
    let server = Server::start(&[]);
    let addr = server.tcp_addr();
    let mut health = Health::open(&server);
    let ready = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let ready = ready.clone();
            thread::spawn(move || {
                let lines: Vec<String> =
                    (0..LINES).map(|i| format!("client {c} line {i}")).collect();
                let mut stream = TcpStream::connect(addr).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let input = lines.join("\n") + "\n";
                ready.wait();
                let sender = thread::spawn(move || {
                    // In many writes, as a client streaming its lines does.
                    for chunk in input.as_bytes().chunks(1500) {
                        writer.write_all(chunk).unwrap();
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let (replies, clean) = read_until_closed(&mut stream, Duration::from_secs(20));
                sender.join().unwrap();
                assert!(clean, "client {c}: reset instead of end of stream");
                assert_texts(&reply_texts(&replies), &lines);
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    health.check("while 40,000 lines stream in");
    for (c, client) in clients.into_iter().enumerate() {
        if client.join().is_err() {
            panic!("half-closed client {c} did not get every reply (see above)");
        }
    }
    health.check("after the half-closed clients");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_flood_from_a_page_that_never_reads_keeps_the_gateway_bounded() {
    const FRAMES: usize = 50_000;
    const SIZE: usize = 1024;
    let server = Server::start(&[]);
    let http = server.http_addr();
    let mut health = Health::open(&server);
    let mut ws_health = WsHealth::open(http).await;
    let memory = Memory::start(&server);
    // What the gateway relays reaches its own TCP listener, which counts it.
    let relayed = move || metric(http, "timecho_bytes_in_total", &[]);
    let relayed_before = relayed();

    let started = Instant::now();
    let (raw, sent) = tokio::task::spawn_blocking(move || {
        let mut raw = RawWs::handshake(http);
        let sent = flood_frames(&mut raw, FRAMES, SIZE);
        (raw, sent)
    })
    .await
    .unwrap();
    let flood_time = started.elapsed();
    // Relaying stops once the replies back up: the count settles while most
    // of the flood still waits in the socket buffers, outside the process.
    let relayed_total = tokio::task::spawn_blocking(move || {
        let mut last = relayed();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = relayed();
            if now == last {
                return now - relayed_before;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway is still relaying after 10 s"
            );
            last = now;
        }
    })
    .await
    .unwrap();
    eprintln!(
        "flooding page: {sent} of {FRAMES} frames of {SIZE} bytes written in {flood_time:?} ({}); \
         the gateway relayed {relayed_total} bytes of them, then stopped",
        if sent < FRAMES {
            "then throttled"
        } else {
            "never throttled"
        },
    );
    assert!(
        sent < FRAMES,
        "the gateway took all {FRAMES} frames: no backpressure"
    );
    assert!(
        relayed_total < (sent * SIZE) as f64,
        "the gateway relayed {relayed_total} bytes, all it was sent: it never stopped reading"
    );
    health.check("while the page floods");
    ws_health.check("while the page floods").await;
    // The gateway holds a buffer's worth per direction, not the megabytes of
    // replies owed to the page.
    memory.assert_peak_growth_below(4 * 1024, "WebSocket flood");

    raw.stream.shutdown(Shutdown::Both).unwrap();
    drop(raw);
    tokio::task::spawn_blocking(move || {
        wait_for_metric(http, SESSIONS_OPEN, &[], 1.0, SETTLE);
        // The health checks' long-lived client and long-lived page.
        wait_for_metric(http, CONNECTIONS_OPEN, &[], 2.0, SETTLE);
    })
    .await
    .unwrap();
    health.check("after the flood");
    ws_health.check("after the flood").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_websocket_frames_close_with_1009_and_others_are_unaffected() {
    let server = Server::start(&[]);
    let http = server.http_addr();
    let mut health = Health::open(&server);
    let mut ws_health = WsHealth::open(http).await;
    let memory = Memory::start(&server);
    // Just over the 64 KiB limit (read whole, then refused) and far over it
    // (cut off mid-frame by the protocol layer), from several pages at once.
    let pages: Vec<_> = [65_537, 4 * MIB, 65_537, 4 * MIB, 100_000, MIB]
        .into_iter()
        .map(|size| {
            tokio::spawn(async move {
                let mut ws = ws_connect(http).await;
                // The gateway stops reading a frame it refuses, so sending the rest of
                // a large one may fail; its close frame has arrived all the same.
                let _ = ws.send(Message::text("a".repeat(size))).await;
                (size, ws_close_frame(&mut ws).await)
            })
        })
        .collect();
    for page in pages {
        let (size, (code, reason)) = page.await.unwrap();
        assert_eq!(code, 1009, "a {size}-byte frame: {reason}");
        assert!(reason.contains("65536"), "{reason:?}");
    }
    health.check("after the oversize frames");
    ws_health.check("after the oversize frames").await;
    // Refused frames are never held whole: the two 4 MiB ones alone would be 8 MiB.
    memory.assert_peak_growth_below(6 * 1024, "oversize frames");
}

/// Waits until `count` reaches `least` (a counter another task moves).
async fn wait_for_count(count: &AtomicU64, least: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::Relaxed) < least {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {least}",
            count.load(Ordering::Relaxed)
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The upstream dies while a page's frames flow through a separate gateway: the
/// page gets 1011 with a reason, and the gateway serves its own clients on,
/// refuses new pages with 1011 until the upstream is back, then relays again.
///
/// The upstream hangs (SIGSTOP) before the SIGKILL, so frames pile up unread in
/// its socket and the kernel resets the connection. Killed between two frames,
/// with nothing unread, its kernel sends a plain FIN instead, which the gateway
/// cannot tell from an orderly close and reports as 1000.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_whose_upstream_dies_mid_stream_closes_with_1011_and_the_gateway_goes_on() {
    let mut upstream = Server::start(&["--no-http"]);
    // Where it comes back after its death: the address the gateway was given.
    let up_addr = upstream.tcp_addr().to_string();
    let upstream_args = ["--no-http", "--tcp", up_addr.as_str()];
    let gateway = Server::start(&["--upstream", &up_addr]);
    let http = gateway.http_addr();
    let mut health = Health::open(&gateway);

    let mut ws = ws_connect(http).await;
    assert_eq!(ws_exchange(&mut ws, "before").await, "before");
    let (mut tx, mut rx) = ws.split();
    let (sent_so_far, answered_so_far) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let counting = sent_so_far.clone();
    let sender = tokio::spawn(async move {
        let mut i = 0u64;
        while tx.send(Message::text(format!("flowing {i}"))).await.is_ok() {
            i += 1;
            counting.store(i, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        i
    });
    let counting = answered_so_far.clone();
    let receiver = tokio::spawn(async move {
        let mut replies = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => {
                    replies += 1;
                    counting.store(replies, Ordering::Relaxed);
                }
                Ok(Some(Ok(Message::Close(frame)))) => return (replies, frame),
                Ok(Some(Ok(_))) => {}
                other => panic!("no close frame after {replies} replies: {other:?}"),
            }
        }
    });
    // Frames flow both ways...
    wait_for_count(&answered_so_far, 20, "replies before the upstream hangs").await;
    upstream.signal(libc::SIGSTOP);
    // ... then pile up unread in the hung upstream's socket.
    let hung_at = sent_so_far.load(Ordering::Relaxed);
    wait_for_count(
        &sent_so_far,
        hung_at + 100,
        "frames sent to the hung upstream",
    )
    .await;
    upstream.signal(libc::SIGKILL);
    let (replies, frame) = receiver.await.unwrap();
    let sent = sender.await.unwrap();
    let frame = frame.expect("a close code");
    let (code, reason) = (u16::from(frame.code), frame.reason.as_str().to_owned());
    eprintln!("upstream died: {replies} of {sent} frames answered; close {code} {reason:?}");
    assert!(replies > 10, "frames were not flowing: {replies} replies");
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.contains("lost the timestamp server"), "{reason:?}");
    upstream.wait_exit(Duration::from_secs(5)).expect("killed");

    health.check("after the upstream died");
    let mut orphan = ws_connect(http).await;
    let (code, reason) = ws_close_frame(&mut orphan).await;
    assert_eq!(code, 1011, "{reason}");
    // A visitor is not told the internal address.
    assert_eq!(reason, "the timestamp server is unreachable");
    assert!(!reason.contains(&up_addr), "{reason:?}");

    let _upstream = Server::start(&upstream_args);
    let mut page = ws_connect(http).await;
    assert_eq!(
        ws_exchange(&mut page, "upstream is back").await,
        "upstream is back"
    );
    health.check("after the upstream returned");
    tokio::task::spawn_blocking(move || wait_for_metric(http, SESSIONS_OPEN, &[], 1.0, SETTLE))
        .await
        .unwrap();
}

#[test]
fn slowloris_http_client_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let server = Server::start(&["--header-timeout", "3s"]);
    let http = server.http_addr();
    let mut health = Health::open(&server);
    let trickler = thread::spawn(move || slowloris(http));
    while !trickler.is_finished() {
        let started = Instant::now();
        assert_eq!(http::get("/healthz").send(http).status, 200);
        assert!(
            started.elapsed() < PROMPT,
            "a normal request took {:?}",
            started.elapsed()
        );
        health.check("while the slowloris trickles");
        thread::sleep(Duration::from_millis(500));
    }
    let closed_after = trickler.join().unwrap();
    eprintln!("slowloris client closed after {closed_after:?}");
    // It trickles a byte a second, and sees the close at its next byte.
    assert!(
        closed_after >= Duration::from_millis(2900) && closed_after <= Duration::from_secs(6),
        "closed after {closed_after:?}; the header timeout is 3 s"
    );
}

#[test]
fn silent_http_client_is_cut_off_after_the_header_timeout() {
    let server = Server::start(&["--header-timeout", "3s"]);
    let mut silent = TcpStream::connect(server.http_addr()).unwrap();
    let started = Instant::now();
    let (said, _) = read_until_closed(&mut silent, Duration::from_secs(15));
    let closed_after = started.elapsed();
    assert!(said.is_empty(), "{}", said.escape_ascii());
    assert!(
        closed_after >= Duration::from_millis(2900) && closed_after <= Duration::from_secs(5),
        "closed after {closed_after:?}; the header timeout is 3 s"
    );
}

#[test]
fn shutdown_under_load_answers_every_line_it_read_and_exits_zero_in_time() {
    const CLIENTS: usize = 20;
    const BACKLOGGED: usize = 2;
    const BACKLOG_LINES: usize = 100_000;
    let mut server = Server::start(&["--drain-timeout", "5s"]);
    let addr = server.tcp_addr();
    let signalled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let signalled = signalled.clone();
            thread::spawn(move || stream_until_gone(addr, id, &signalled))
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    // These clients stop reading, so the server's writes to them block and
    // their lines pile up in its socket; the signal comes once every line has
    // reached it (all acknowledged). Every one must be answered.
    let backlogs: Vec<(Vec<String>, TcpStream)> = (0..BACKLOGGED)
        .map(|b| {
            let lines: Vec<String> = (0..BACKLOG_LINES).map(|i| format!("b{b} {i:06}")).collect();
            let mut s = TcpStream::connect(addr).unwrap();
            let mut writer = s.try_clone().unwrap();
            // Once answered, the connection is being served (not waiting to be accepted).
            writer.write_all(b"accepted?\n").unwrap();
            let mut reply = [0u8; 1];
            while reply != *b"\n" {
                s.read_exact(&mut reply).unwrap();
            }
            writer
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            writer
                .write_all((lines.join("\n") + "\n").as_bytes())
                .expect("the backlog fits the socket buffers");
            writer.shutdown(Shutdown::Write).unwrap();
            (lines, s)
        })
        .collect();
    for (_, s) in &backlogs {
        let deadline = Instant::now() + Duration::from_secs(5);
        while unacknowledged_bytes(s) > 0 {
            assert!(
                Instant::now() < deadline,
                "the backlog never reached the server: {} bytes left",
                unacknowledged_bytes(s)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    let started = Instant::now();
    signalled.store(true, Ordering::SeqCst);
    server.sigterm();
    // Read side by side and checked after the exit, so that the time to exit
    // is the server's: a reader busy checking one backlog would hold up the
    // other's drain.
    let readers: Vec<_> = backlogs
        .into_iter()
        .map(|(lines, mut s)| {
            thread::spawn(move || (lines, read_until_closed(&mut s, Duration::from_secs(8))))
        })
        .collect();
    let status = server
        .wait_exit(Duration::from_secs(8))
        .expect("the server exits after SIGTERM");
    let took = started.elapsed();
    for (b, reader) in readers.into_iter().enumerate() {
        let (lines, (replies, clean)) = reader.join().unwrap();
        assert!(clean, "backlogged client {b} was reset");
        let replies = reply_texts(&replies);
        eprintln!("backlogged client {b}: {} replies", replies.len());
        assert_texts(&replies, &lines);
    }
    let results: Vec<Streamed> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let log = server.stderr();
    eprintln!(
        "shutdown under load: exit {status} after {took:?}; replies per client {:?}; \
         unanswered at end of stream {:?}; reconnects reset while draining {:?}",
        results.iter().map(|r| r.answered).collect::<Vec<_>>(),
        results.iter().map(|r| r.unanswered).collect::<Vec<_>>(),
        results
            .iter()
            .map(|r| r.reset_while_draining)
            .collect::<Vec<_>>(),
    );
    for (id, r) in results.iter().enumerate() {
        assert!(r.faults.is_empty(), "client {id}: {:?}", r.faults);
        assert!(r.answered >= 10, "client {id} was barely served: {r:?}");
    }
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to exit; the drain deadline is 5 s"
    );
    assert!(
        log.contains("all connections closed") && !log.contains("drain deadline passed"),
        "connections were left open at exit:\n{log}"
    );
}

#[test]
fn new_clients_are_refused_at_once_while_connections_drain() {
    let mut server = Server::start(&[]);
    let addr = server.tcp_addr();
    // A client that does not close at end of stream keeps its connection in the
    // drain for the server's 2 s linger.
    let mut lingering = LineClient::connect(addr);
    lingering.assert_prompt_echo("here", "before the signal");
    server.sigterm();
    let eof = lingering.line();
    assert!(eof.is_err(), "a reply after the drain: {eof:?}");

    let started = Instant::now();
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut late) => {
            let _ = late.write_all(b"too late\n");
            let (said, clean) = read_until_closed(&mut late, Duration::from_secs(5));
            panic!(
                "a client connecting during the drain was accepted, and after {:?} got {} \
                 (\"{}\") instead of being refused at once",
                started.elapsed(),
                if clean { "end of stream" } else { "a reset" },
                said.escape_ascii()
            );
        }
    }
    drop(lingering);
    assert!(server
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
}
