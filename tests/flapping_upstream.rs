//! A timestamp server that keeps dying under 500 WebSocket sessions: killed
//! (SIGKILL) and started again on the same port every 2 s. Every session that
//! loses it must be closed with a code and a reason that say so, every client
//! (following the page's reconnect schedule) must keep getting echoes between
//! the failures, the metrics must count every ending, and once the clients
//! leave, the gateway must hold no more descriptors or tasks than before.
//! `TIMECHO_FLAP_SECS` sets how long it flaps (default 20 s; the full
//! run is 60).

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{metric, parse_reply, wait_for_metric, Server};
use futures_util::{SinkExt, StreamExt};
use timecho_shared::reconnect::Backoff;
use timecho_shared::relay::close_code;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 500;
const FLAP_EVERY: Duration = Duration::from_secs(2);
/// How long the gateway may take to close everything once the clients leave.
const SETTLE: Duration = Duration::from_secs(10);

fn unit() -> f64 {
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}

/// What all clients saw.
#[derive(Default)]
struct Seen {
    echoes: AtomicU64,
    /// Close codes and reasons the gateway sent, counted.
    closes: Mutex<BTreeMap<(u16, String), u64>>,
    /// Set once the upstream has stopped flapping for good.
    flapping_over: AtomicBool,
    /// Clients that got at least one echo after that.
    recovered: AtomicU64,
}

/// One client: connect (page backoff on failure), send a line every 50 ms
/// and read its echo, and on a close note its code and reason and go again.
async fn client(http: SocketAddr, id: usize, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut backoff = Backoff::default();
    let mut recovered = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await
        else {
            let delay = backoff.fail(unit());
            tokio::time::sleep(Duration::from_millis(delay.into())).await;
            continue;
        };
        let mut n = 0u64;
        let close = loop {
            if stop.load(Ordering::Relaxed) {
                let _ = ws.close(None).await;
                return;
            }
            let line = format!("client {id} line {n}");
            n += 1;
            if ws.send(Message::text(line.as_str())).await.is_err() {
                break None;
            }
            let reply = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => break Ok(t),
                    Some(Ok(Message::Close(frame))) => break Err(frame),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break Err(None),
                }
            };
            match reply {
                Ok(text) => {
                    assert_eq!(parse_reply(text.as_bytes()).1, line.as_bytes());
                    seen.echoes.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    if !recovered && seen.flapping_over.load(Ordering::Relaxed) {
                        recovered = true;
                        seen.recovered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(frame) => break frame,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let key = match close {
            Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
            None => (1006, String::new()),
        };
        *seen.closes.lock().await.entry(key).or_default() += 1;
        let delay = backoff.fail(unit());
        tokio::time::sleep(Duration::from_millis(delay.into())).await;
    }
}

/// Descriptors the process holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_an_upstream_that_keeps_dying() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the descriptor limit");
    let flap_for = Duration::from_secs(
        std::env::var("TIMECHO_FLAP_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let mut upstream = Server::start(&["--no-http"]);
    let upstream_addr = upstream.tcp_addr().to_string();
    // Every client comes from one loopback address: it may take every slot.
    let gateway = Server::start(&[
        "--upstream",
        &upstream_addr,
        "--max-websockets",
        "2000",
        "--max-connections-per-client",
        "100000",
    ]);
    let http = gateway.http_addr();
    // Settle the gateway's own descriptors (a first scrape opens nothing
    // lasting) before counting them.
    let _ = metric(http, "timecho_websocket_sessions_open", &[]);
    let fds_before = open_fds(gateway.pid());
    let tasks_before = metric(http, "timecho_tasks_alive", &[]);

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(http, id, seen.clone(), stop.clone())))
        .collect();
    let http_for_wait = http;
    tokio::task::spawn_blocking(move || {
        wait_for_metric(
            http_for_wait,
            "timecho_websocket_sessions_open",
            &[],
            CLIENTS as f64,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();

    let started = Instant::now();
    let mut flaps = 0;
    while started.elapsed() < flap_for {
        tokio::time::sleep(FLAP_EVERY).await;
        let addr = upstream_addr.clone();
        upstream = tokio::task::spawn_blocking(move || {
            upstream.signal(libc::SIGKILL);
            upstream.wait_exit(Duration::from_secs(10));
            drop(upstream);
            Server::start(&["--no-http", "--tcp", &addr])
        })
        .await
        .unwrap();
        flaps += 1;
    }
    let upstream_addr = upstream.tcp_addr();
    // The upstream stays up now: every client must get an echo again.
    seen.flapping_over.store(true, Ordering::Relaxed);
    let recovered = async {
        while seen.recovered.load(Ordering::Relaxed) < CLIENTS as u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let all_back = tokio::time::timeout(Duration::from_secs(30), recovered).await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("a client panicked");
    }
    let closes = seen.closes.lock().await.clone();
    println!(
        "{flaps} upstream kills in {:?}; {} echoes; closes by code and reason:",
        started.elapsed(),
        seen.echoes.load(Ordering::Relaxed)
    );
    for ((code, reason), n) in &closes {
        println!("  {n:>6}  {code} {reason}");
    }
    let counted = |ending: &str| metric(http, "timecho_websocket_closed_total", &[ending]);
    let (lost, closed, unreachable) = (
        counted("ending=\"UpstreamLost\""),
        counted("ending=\"UpstreamClosed\""),
        counted("ending=\"UpstreamUnreachable\""),
    );
    println!(
        "gateway counted: UpstreamLost {lost}, UpstreamClosed {closed}, UpstreamUnreachable {unreachable}"
    );
    assert!(
        all_back.is_ok(),
        "only {} of {CLIENTS} clients got an echo after the upstream came back",
        seen.recovered.load(Ordering::Relaxed)
    );

    // Every session the upstream took down said so, with a reason naming it.
    let mut told = 0;
    for ((code, reason), n) in &closes {
        match *code {
            close_code::UPSTREAM_ERROR => assert!(
                reason.contains("timestamp server") || reason.contains(&upstream_addr.to_string()),
                "1011 without a reason naming the timestamp server: {reason:?}"
            ),
            close_code::NORMAL => assert!(
                reason.contains("timestamp server closed the connection"),
                "1000 with {reason:?}"
            ),
            other => panic!("{n} sessions closed with {other} {reason:?}"),
        }
        told += n;
    }
    assert!(
        told >= flaps,
        "fewer closes ({told}) than upstream kills ({flaps})"
    );
    // And the gateway counted each one.
    assert_eq!(
        lost + closed + unreachable,
        told as f64,
        "the metrics count every session the upstream ended"
    );

    // Nothing left behind: sessions, descriptors, tasks.
    let gateway_pid = gateway.pid();
    tokio::task::spawn_blocking(move || {
        wait_for_metric(http, "timecho_websocket_sessions_open", &[], 0.0, SETTLE)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let (fds, tasks) = (
            open_fds(gateway_pid),
            metric(http, "timecho_tasks_alive", &[]),
        );
        if fds <= fds_before && tasks <= tasks_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway holds {fds} descriptors (before: {fds_before}) and {tasks} tasks \
             (before: {tasks_before}) after every client left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(upstream);
}
