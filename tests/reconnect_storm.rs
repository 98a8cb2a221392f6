//! A gateway restart under 2,000 open WebSockets. Every client follows the
//! page's own schedule (`timecho_shared::reconnect`: full jitter, and a
//! restart's window); all must be back within 15 s, spread over the window
//! rather than in one burst, without the kernel dropping a connection attempt
//! (`ListenOverflows` in /proc/net/netstat). The browser test
//! `pages_come_back_after_a_gateway_restart` does the same with real pages.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{parse_reply, Server, Ws};
use futures_util::{SinkExt, StreamExt};
use timecho_shared::reconnect::{restart_delay_ms, restart_window_ms, Backoff};
use timecho_shared::relay::close_code;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 2_000;
/// What the gateway is started with, and so the spread the clients must show.
const WINDOW: Duration = Duration::from_secs(5);
/// Every client must be back within this of the restart.
const BACK_WITHIN: Duration = Duration::from_secs(15);
/// Opening all the sessions in the first place (a debug build on 2 cores).
const OPEN_WITHIN: Duration = Duration::from_secs(60);

/// A number in `[0, 1)`, as `Math.random()` gives the page.
fn unit() -> f64 {
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}

/// Connects, retrying on the page's backoff, and checks one echo; also when
/// the attempt that succeeded began.
async fn connect(http: SocketAddr, id: usize, backoff: &mut Backoff) -> (Ws, Instant) {
    loop {
        let dialed_at = Instant::now();
        let url = format!("ws://{http}/ws");
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await {
            let line = format!("client {id}");
            if ws.send(Message::text(line.as_str())).await.is_ok() {
                if let Some(Ok(Message::Text(reply))) = ws.next().await {
                    assert_eq!(parse_reply(reply.as_bytes()).1, line.as_bytes());
                    backoff.reset();
                    return (ws, dialed_at);
                }
            }
        }
        let delay = backoff.fail(unit());
        tokio::time::sleep(Duration::from_millis(delay.into())).await;
    }
}

/// What a client saw of the restart.
struct Restarted {
    code: u16,
    window_ms: Option<u32>,
    /// When it began the attempt that brought it back: when it offered the
    /// new gateway its load, which is what the window spreads.
    dialed_at: Instant,
}

async fn client(
    http: SocketAddr,
    id: usize,
    opened: mpsc::Sender<()>,
    done: mpsc::Sender<Restarted>,
) {
    let mut backoff = Backoff::default();
    let (mut ws, _) = connect(http, id, &mut backoff).await;
    let _ = opened.send(()).await;
    let (code, reason) = loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                break (u16::from(frame.code), frame.reason.as_str().to_owned())
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => break (1006, String::new()),
            Some(Ok(_)) => {}
        }
    };
    drop(ws);
    let window_ms = restart_window_ms(&reason);
    let delay = match window_ms {
        Some(window) if code == close_code::RESTART => restart_delay_ms(window, unit()),
        _ => backoff.fail(unit()),
    };
    tokio::time::sleep(Duration::from_millis(delay.into())).await;
    let (_ws, dialed_at) = connect(http, id, &mut backoff).await;
    let _ = done
        .send(Restarted {
            code,
            window_ms,
            dialed_at,
        })
        .await;
    // Stay connected until the test ends, as pages do.
    std::future::pending::<()>().await;
}

/// `ListenOverflows` from /proc/net/netstat: connection attempts the kernel
/// dropped because an accept queue was full.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .expect("ListenOverflows in TcpExt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_every_client_back_spread_over_the_window() {
    // Each client is one descriptor here; the gateway needs two per session.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the descriptor limit");
    // Every client, and every session the gateway relays, comes from one
    // loopback address: each side lets it take every slot.
    let upstream = Server::start(&["--no-http", "--max-connections-per-client", "100000"]);
    let upstream_addr = upstream.tcp_addr().to_string();
    let window = format!("{}ms", WINDOW.as_millis());
    let gateway_args = |http: &str| {
        [
            "--upstream",
            &upstream_addr,
            "--http",
            http,
            "--reconnect-window",
            &window,
            "--max-websockets",
            "5000",
            "--max-connections-per-client",
            "100000",
        ]
        .map(str::to_owned)
    };
    let args = gateway_args("127.0.0.1:0");
    let mut gateway = Server::start(&args.each_ref().map(String::as_str));
    let http = gateway.http_addr();

    let (opened_tx, mut opened) = mpsc::channel(CLIENTS);
    let (done_tx, mut done) = mpsc::channel(CLIENTS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(http, id, opened_tx.clone(), done_tx.clone())))
        .collect();
    let all_open = async {
        for _ in 0..CLIENTS {
            opened.recv().await.expect("a client opened");
        }
    };
    tokio::time::timeout(OPEN_WITHIN, all_open)
        .await
        .expect("all clients connected");

    let overflows = listen_overflows();
    let restart = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || {
        let status = gateway.terminate();
        (gateway, status)
    });
    let (old, status) = stopped.await.unwrap();
    assert!(status.success(), "the old gateway exits cleanly");
    drop(old);
    let args = gateway_args(&http.to_string());
    let _gateway = Server::start(&args.each_ref().map(String::as_str));
    let down_for = restart.elapsed();

    let mut back = Vec::with_capacity(CLIENTS);
    let all_back = async {
        while back.len() < CLIENTS {
            back.push(done.recv().await.expect("a client came back"));
        }
    };
    let in_time = tokio::time::timeout(BACK_WITHIN.saturating_sub(down_for), all_back).await;
    let returned = back.len();
    // When each came back to the new gateway. Not when its echo arrived: on a
    // machine running other tests beside this one, a debug gateway answers
    // 2,000 handshakes slowly enough to bunch the answers up however spread
    // the arrivals are.
    let mut offsets: Vec<Duration> = back.iter().map(|r| r.dialed_at - restart).collect();
    offsets.sort_unstable();
    print_spread(&offsets, down_for);
    assert!(
        in_time.is_ok(),
        "only {returned} of {CLIENTS} clients were back within {BACK_WITHIN:?}"
    );
    for r in &back {
        assert_eq!(r.code, close_code::RESTART, "a restart closes with 1012");
        assert_eq!(
            r.window_ms,
            Some(WINDOW.as_millis() as u32),
            "naming the window"
        );
    }
    // Spread over the window, not in one burst: the middle half alone spans
    // over a third of it.
    let (q1, q3) = (offsets[CLIENTS / 4], offsets[CLIENTS * 3 / 4]);
    assert!(
        q3 - q1 > WINDOW / 3,
        "reconnects bunched up: quartiles {q1:?} and {q3:?}"
    );
    assert_eq!(
        listen_overflows(),
        overflows,
        "the kernel dropped connection attempts (ListenOverflows grew)"
    );
    for c in clients {
        c.abort();
    }
}

/// The reconnect times after the restart, in half-second buckets.
fn print_spread(offsets: &[Duration], down_for: Duration) {
    println!(
        "gateway restart: down for {down_for:?}; {} clients back, first {:?}, last {:?}",
        offsets.len(),
        offsets.first().copied().unwrap_or_default(),
        offsets.last().copied().unwrap_or_default()
    );
    let bucket = Duration::from_millis(500);
    let mut counts = Vec::new();
    for o in offsets {
        let i = (o.as_millis() / bucket.as_millis()) as usize;
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] += 1;
    }
    for (i, n) in counts.iter().enumerate() {
        let from = bucket * i as u32;
        println!(
            "  {:>5.1}-{:<5.1}s {:>5} {}",
            from.as_secs_f64(),
            (from + bucket).as_secs_f64(),
            n,
            "#".repeat(n / 10)
        );
    }
}
