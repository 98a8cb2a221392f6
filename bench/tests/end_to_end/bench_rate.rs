//! `timecho-bench --rate` as its own process against a real `timecho serve`:
//! the open loop offers the rate it was given, over TCP and WebSocket, every
//! reply verified. The figures are printed, not judged; only the count is,
//! which the schedule fixes whatever the machine's speed.

use std::time::Duration;

use crate::support::{run_to_exit, Server};
use crate::timecho_bench;

/// Well under what a slow shared machine serves, so that every request is answered.
const RATE: f64 = 2_000.0;
const LIMIT: Duration = Duration::from_secs(60);

fn open_loop(mode: &str, target: &str, pacing: &[&str]) -> serde_json::Value {
    let mut cmd = timecho_bench();
    cmd.args([mode, target, "-c", "20", "--rate", &RATE.to_string()])
        .args(["--warmup", "500ms", "--duration", "2s", "--json", "-q"])
        .args(pacing);
    let out = run_to_exit(cmd, b"", LIMIT);
    println!("{mode} {pacing:?}: {}", out.stdout);
    assert!(out.status.success(), "{mode} {pacing:?}: {out:?}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{mode}: {e}: {out:?}"))
}

#[test]
fn the_open_loop_offers_the_rate_it_is_given_over_tcp_and_websocket_on_either_clock() {
    let server = Server::start(&["--http", "127.0.0.1:0"]);
    let tcp = server.tcp_addr().to_string();
    let ws = format!("ws://{}/ws", server.http_addr());
    let runs: [(&str, &str, &[&str]); 3] = [
        ("tcp", &tcp, &[]),
        ("ws", &ws, &[]),
        ("ws", &ws, &["--precise-pacing"]),
    ];
    for (mode, target, pacing) in runs {
        let report = open_loop(mode, target, pacing);
        let mode = format!("{mode} {pacing:?}");
        assert_eq!(report["errors_total"], 0, "{mode}: {report}");
        assert_eq!(report["connected"], 20, "{mode}: {report}");
        // Replies are counted by when they arrive, so a stall at either end
        // of the window moves a few across it; a pacer that released nothing,
        // or everything at once, or its rate per connection, is far outside.
        let throughput = report["throughput"].as_f64().expect("throughput");
        assert!(
            (throughput - RATE).abs() <= RATE * 0.1,
            "{mode}: {throughput} msg/s offered at {RATE}: {report}"
        );
    }
}
