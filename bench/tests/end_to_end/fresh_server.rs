//! `timecho-bench --idle --fresh-server` as its own process: the bench starts
//! the `timecho` it is given (or the one beside it), measures it, and stops it.

use std::time::Duration;

use crate::support::{bin, run_to_exit};
use crate::timecho_bench;

/// Two runs of a few hundred connections, on a slow shared machine.
const LIMIT: Duration = Duration::from_secs(60);

/// `--idle --fresh-server` as the README gives it: the server it starts
/// takes every connection the run opens, all from one address, and the
/// figure it prints is for all of them. (Its default per-client share
/// refused three in four once, and the run reported memory for the rest.)
/// The TCP run finds the `timecho` beside the bench (or TIMECHO_BIN); the
/// WebSocket run is given it with --server-bin.
#[test]
fn an_idle_run_on_a_fresh_server_holds_every_connection_it_opens() {
    for mode in ["tcp", "ws"] {
        let mut cmd = timecho_bench();
        cmd.args([mode, "-c", "400", "--idle", "--fresh-server"])
            .args(["--hold", "200ms", "--json", "-q"]);
        if mode == "tcp" {
            // A WebSocket sends its one message anyway.
            cmd.arg("--idle-echo");
        } else {
            cmd.arg("--server-bin").arg(bin());
        }
        let out = run_to_exit(cmd, b"", LIMIT);
        println!("{mode}: {}", out.stdout);
        assert!(out.status.success(), "{mode}: {out:?}");
        let report: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{mode}: {e}: {out:?}"));
        assert_eq!(report["errors_total"], 0, "{mode}: {report}");
        assert_eq!(report["alive"], 400, "{mode}: {report}");
        assert!(
            report["rss_per_connection_kib"].as_f64().is_some(),
            "{mode}: {report}"
        );
    }
}

/// A server program that is not there is named in the error, with the way to
/// give another, and nothing is measured.
#[test]
fn a_fresh_server_that_cannot_be_started_is_named_in_the_error() {
    let mut cmd = timecho_bench();
    cmd.args(["tcp", "-c", "1", "--idle", "--fresh-server", "-q"])
        .args(["--server-bin", "/nonexistent/timecho"]);
    let out = run_to_exit(cmd, b"", LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot start /nonexistent/timecho serve")
            && out.stderr.contains("--server-bin or TIMECHO_BIN"),
        "{out:?}"
    );
}
