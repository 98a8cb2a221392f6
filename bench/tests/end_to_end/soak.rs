//! The soak of issue 12 in CI: a minute of mixed traffic (steady TCP and
//! WebSocket load, churn, idle clients, oversize and garbage inputs, sign-in
//! and sign-out) against a real `timecho serve --auth`, run by
//! `timecho-bench soak` as its own process. The bench fails (exit 1) when the
//! server's memory, descriptors or tasks keep growing after warm-up, or when
//! any answer is wrong; the test prints its table either way.

use std::time::Duration;

use crate::support::{basic_users_file, run_to_exit, Server, TempDir};
use crate::timecho_bench;

/// A minute in all; the first 15 s are warm-up, the other 45 samples are judged.
const DURATION: &str = "60s";
const WARM_UP: &str = "15s";
/// The run, its wind-down, and a slow shared machine.
const LIMIT: Duration = Duration::from_secs(150);

#[test]
fn a_minute_of_mixed_traffic_leaves_no_growing_memory_descriptors_or_tasks() {
    let dir = TempDir::new();
    let auth = basic_users_file(&dir, "ada", "lovelace");
    let password = dir.path().join("password.txt");
    std::fs::write(&password, "lovelace\n").expect("write the password file");
    // Metrics from their own listener: under --auth the main one wants sign-in.
    // Each password check allocates about 19 MiB; glibc's moving mmap threshold
    // would keep such freed blocks in whichever thread's arena ran the check, so
    // RSS would step by 19 MiB per arena, a bounded cache that a minute cannot
    // tell from a leak. A fixed threshold returns them.
    let server = Server::start_with_env(
        &[("MALLOC_MMAP_THRESHOLD_", "131072")],
        &[
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--auth",
            &auth,
        ],
    );
    let pid = server.pid().to_string();
    let tcp = server.tcp_addr().to_string();
    let ws = format!("ws://{}/ws", server.http_addr());
    let metrics = server.listener("metrics").to_string();
    let csv = dir.path().join("soak.csv");

    let mut cmd = timecho_bench();
    cmd.args(["soak", "--tcp", &tcp, "--ws", &ws])
        .args(["--metrics", &metrics, "--server-pid", &pid])
        .args(["--user", "ada", "--sign-in-every", "10s", "--password-file"])
        .arg(&password)
        .args(["--duration", DURATION, "--warm-up", WARM_UP, "-q", "--csv"])
        .arg(&csv);
    let out = run_to_exit(cmd, b"", LIMIT);
    println!("{}", out.stdout);
    assert!(
        out.status.success(),
        "the soak failed ({:?}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    for line in ["rss", "fds", "tasks"] {
        assert!(
            out.stdout.lines().any(
                |l| l.trim_start().starts_with(line) && l.ends_with("steady")
                    || l.trim_start().starts_with(line) && l.contains("steady (")
            ),
            "no steady verdict for {line}:\n{}",
            out.stdout
        );
    }
    // The traffic did happen, of every kind.
    let traffic = out
        .stdout
        .lines()
        .find(|l| l.starts_with("traffic: "))
        .expect("a traffic line");
    for kind in [
        " steady replies",
        " churned",
        " oversize",
        " garbage",
        " sign-outs",
    ] {
        let count: u64 = traffic
            .split(", ")
            .find(|part| part.contains(kind))
            .and_then(|part| part.trim_start_matches("traffic: ").split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(count > 0, "no{kind} in: {traffic}");
    }
    let samples = std::fs::read_to_string(&csv).expect("the CSV was written");
    assert!(
        samples.lines().count() >= 55,
        "a sample a second: {samples}"
    );
}
