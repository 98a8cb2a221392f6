//! `timecho ping`, run as a network engineer runs it, against the real server
//! over each transport, and against a scripted server that answers out of
//! order and late.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::support::{free_addr, run_to_exit, timecho, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(20);

fn ping(args: &[&str]) -> crate::support::Exited {
    let mut cmd = timecho();
    cmd.arg("ping").args(args);
    run_to_exit(cmd, b"", LIMIT)
}

#[test]
fn ping_prints_a_line_per_reply_and_ping8s_summary_and_exits_0() {
    let server = Server::start(&["--no-http"]);
    let addr = server.tcp_addr().to_string();
    let out = ping(&["-c", "3", "-i", "0.05", "-s", "40", "--percentiles", &addr]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("PING {addr}")), "{out:?}");
    assert!(lines[0].contains("over tcp: 40 bytes per probe"), "{out:?}");
    for seq in 1..=3 {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(" seq={seq} ")))
            .unwrap_or_else(|| panic!("no line for seq={seq}: {out:?}"));
        assert!(line.contains(" bytes from "), "{line}");
        assert!(
            line.contains(" time=") && line.contains(" ms stamp="),
            "{line}"
        );
    }
    assert!(
        out.stdout.contains("3 probes sent, 3 received, 0% loss"),
        "{out:?}"
    );
    assert!(out.stdout.contains("rtt min/avg/max/mdev = "), "{out:?}");
    assert!(out.stdout.contains("rtt p50/p90/p99 = "), "{out:?}");
}

#[test]
fn ping_speaks_every_transport_the_client_does() {
    let dir = TempDir::new();
    let sock = dir.path().join("t.sock");
    let sock = sock.to_str().unwrap();
    let server = Server::start(&[
        "--udp",
        "127.0.0.1:0",
        "--unix",
        sock,
        "--instance",
        "web-7",
    ]);
    let tcp = server.tcp_addr().to_string();
    let udp = server.udp_addr().to_string();
    let ws = format!("ws://{}/ws", server.http_addr());
    for (args, transport) in [
        (vec!["--udp", &udp], "udp"),
        (vec!["--unix", sock], "unix"),
        (vec![&ws], "ws"),
        (vec![&tcp], "tcp"),
    ] {
        let mut all = vec!["-c", "2", "-i", "0.05", "--json"];
        all.extend(args.iter().copied());
        let out = ping(&all);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(report["transport"], transport, "{out:?}");
        assert_eq!(report["received"], 2, "{out:?}");
        assert_eq!(report["replies"].as_array().unwrap().len(), 2, "{out:?}");
        assert!(report["rtt_ms"]["avg"].as_f64().unwrap() >= 0.0, "{out:?}");
        // Only the gateway's handshake says which instance answered.
        let instance = if transport == "ws" {
            "web-7".into()
        } else {
            serde_json::Value::Null
        };
        assert_eq!(report["instance"], instance, "{out:?}");
    }
    // And its first line says so, as a balancer's engineer reads it.
    let out = ping(&["-c", "1", &ws]);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.contains(", instance web-7) over ws"), "{out:?}");
}

#[test]
fn ping_over_tls_trusts_the_pinned_certificate() {
    let server = Server::start(&["--tls-self-signed", "--tcp-tls", "127.0.0.1:0", "--no-http"]);
    let fingerprint = server
        .banner()
        .iter()
        .find_map(|l| l.split("fingerprint: ").nth(1))
        .expect("the banner prints the fingerprint")
        .trim()
        .to_owned();
    let pin = format!("sha256:{fingerprint}");
    let addr = server.listener("tls").to_string();
    let out = ping(&["-c", "2", "-i", "0.05", "--tls", "--pin", &pin, &addr]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("over tls"), "{out:?}");
    assert!(out.stdout.contains("2 probes sent, 2 received"), "{out:?}");
}

#[test]
fn ping_exits_1_without_replies_and_2_when_it_cannot_start() {
    // Nothing answers UDP there: every probe is lost.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = ping(&["-c", "2", "-i", "0.05", "-W", "0.2", "--udp", &addr]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("2 probes sent, 0 received, 100% loss"),
        "{out:?}"
    );

    let closed = free_addr().to_string();
    let out = ping(&["-c", "1", &closed]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("cannot connect"), "{out:?}");

    // ping(8): fewer than -c replies by the -w deadline is a failure.
    let server = Server::start(&["--no-http"]);
    let out = ping(&[
        "-c",
        "50",
        "-i",
        "0.05",
        "-w",
        "0.3",
        &server.tcp_addr().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// When the scripted server answers a probe line: once the reply to an
/// earlier or later line (0-based) has been written, if `after` names one,
/// and then after `delay`.
#[derive(Clone, Copy)]
struct Answer {
    after: Option<usize>,
    delay: Duration,
}

/// Answers each of the first four probe lines as a timestamp server would,
/// when its [`Answer`] says: the order of replies is fixed by events, and
/// only where a reply must miss a deadline by a delay, with a margin of
/// seconds either way.
fn scripted_server(answers: [Answer; 4]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
        let (mut written, mut waits): (Vec<_>, Vec<_>) = (0..4)
            .map(|_| mpsc::channel::<()>())
            .map(|(tx, rx)| (Some(tx), Some(rx)))
            .unzip();
        let mut lines = BufReader::new(stream).lines();
        for (n, line) in lines.by_ref().enumerate().take(4) {
            let line = line.unwrap();
            let writer = writer.clone();
            let Answer { after, delay } = answers[n];
            let wait = after.and_then(|k| waits[k].take());
            let done = written[n].take();
            std::thread::spawn(move || {
                if let Some(wait) = wait {
                    let _ = wait.recv();
                }
                std::thread::sleep(delay);
                let reply = format!("[Wed Nov 25 08:47:05 2026] {line}\n");
                let _ = writer.lock().unwrap().write_all(reply.as_bytes());
                if let Some(done) = done {
                    let _ = done.send(());
                }
            });
        }
        // The connection stays open until the client closes it.
        for _ in lines {}
    });
    addr
}

#[test]
fn a_reply_is_matched_to_its_probe_so_late_and_out_of_order_replies_are_counted_as_such() {
    // Probes at 0, 2, 4 and 6 s, each waited for 3 s. The 1st is answered
    // right after the 2nd (about 2 s, in time): out of order. The 3rd is
    // answered 4 s after it came, at about 8 s: a second after its wait
    // ended, so late, and a second before the 4th's ends, which is answered
    // right after it, in time, and must not take the 3rd's reply for its own.
    let at_once = Duration::ZERO;
    let addr = scripted_server([
        Answer {
            after: Some(1),
            delay: at_once,
        },
        Answer {
            after: None,
            delay: at_once,
        },
        Answer {
            after: None,
            delay: Duration::from_secs(4),
        },
        Answer {
            after: Some(2),
            delay: at_once,
        },
    ]);
    let out = ping(&["-c", "4", "-i", "2", "-W", "3", &addr]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("seq=1 ") && out.stdout.contains("(out of order)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("seq=3: no reply within 3s"), "{out:?}");
    assert!(out.stdout.contains("seq=3: late reply"), "{out:?}");
    assert!(out.stdout.contains(" seq=4 time="), "{out:?}");
    assert!(
        out.stdout
            .contains("4 probes sent, 3 received, 25% loss, 1 late, 1 out of order"),
        "{out:?}"
    );
}
