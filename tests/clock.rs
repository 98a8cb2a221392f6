//! `timecho clock` against a real server whose clock is 3.5 s ahead
//! (libfaketime, as in `clock_steps.rs`): the offset it reports must hold the
//! true 3.5 s within the error bound it states, and that bound must be tight,
//! for one-second ctime stamps (found by placed probes) and for microsecond
//! rfc3339 stamps (direct), over every transport; the exit status is the
//! monitoring check's.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::support::{free_addr, run_to_exit, timecho, Exited, Server, TempDir};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The server's clock is this far ahead of the test's.
const AHEAD_MS: f64 = 3_500.0;
/// Each run of `timecho clock` ends well within this (8 probes, at most a
/// second apart).
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn ahead_server(args: &[&str]) -> Server {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: `cargo xtask test` installs it (apt-get install faketime)"
    );
    Server::start_with_env(
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "+3.5s"),
            // Timers and deadlines stay on the real monotonic clock.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        args,
    )
}

fn clock(args: &[&str]) -> Exited {
    let mut cmd = timecho();
    cmd.arg("clock").args(args);
    run_to_exit(cmd, b"", RUN_LIMIT)
}

/// `--json`'s fields that the checks read.
struct Report {
    offset_ms: f64,
    error_ms: f64,
    answered: u64,
    within_max_offset: bool,
}

fn report(run: &Exited) -> Report {
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {:?}, stderr {:?}",
            run.stdout, run.stderr
        )
    });
    let number = |k: &str| {
        json[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in {json}"))
    };
    Report {
        offset_ms: number("offset_ms"),
        error_ms: number("error_ms"),
        answered: json["answered"].as_u64().expect("answered"),
        within_max_offset: json["within_max_offset"].as_bool().expect("within"),
    }
}

#[track_caller]
fn assert_finds_the_offset(run: &Exited, tight_ms: f64) {
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let r = report(run);
    assert_eq!(r.answered, 8, "{run:?}");
    assert!(r.within_max_offset);
    assert!(
        (r.offset_ms - AHEAD_MS).abs() <= r.error_ms,
        "offset {} ms ± {} ms does not hold {AHEAD_MS} ms: {run:?}",
        r.offset_ms,
        r.error_ms
    );
    assert!(
        r.error_ms < tight_ms,
        "error bound ±{} ms is not under {tight_ms} ms",
        r.error_ms
    );
}

#[test]
fn one_second_ctime_stamps_give_the_offset_within_tens_of_milliseconds() {
    // Both sides read ctime in UTC: the stamp names no zone.
    let server = ahead_server(&["--utc"]);
    let run = clock(&["--utc", "--json", &server.tcp_addr().to_string()]);
    // Seven placed probes halve one second seven times: 8 ms, plus round trips.
    assert_finds_the_offset(&run, 100.0);
}

#[test]
fn microsecond_rfc3339_stamps_give_the_offset_within_the_round_trip() {
    let server = ahead_server(&["--time-format", "rfc3339", "--precision", "us"]);
    let run = clock(&["--json", &server.tcp_addr().to_string()]);
    assert_finds_the_offset(&run, 25.0);
}

#[test]
fn ctime_in_the_servers_local_zone_is_read_in_this_machines() {
    // Without --utc on either side, a ctime stamp is local time, and the
    // client, on the same machine, reads it in the same zone.
    let server = ahead_server(&[]);
    let run = clock(&["--json", &server.tcp_addr().to_string()]);
    assert_finds_the_offset(&run, 100.0);
}

/// A CA and a certificate for localhost, signed by it: (ca, cert, key) files.
fn make_pki(dir: &Path) -> [String; 3] {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
    std::fs::write(&files[0], ca_cert.pem()).unwrap();
    std::fs::write(&files[1], leaf.pem()).unwrap();
    std::fs::write(&files[2], leaf_key.serialize_pem()).unwrap();
    files.map(|f| f.to_str().expect("a UTF-8 temp path").to_owned())
}

#[test]
fn every_transport_measures_and_max_offset_sets_the_exit_status() {
    let dir = TempDir::new();
    let [ca, cert, key] = make_pki(dir.path());
    let socket = dir.path().join("timecho.sock");
    let server = ahead_server(&[
        "--time-format",
        "rfc3339",
        "--precision",
        "us",
        "--udp",
        "127.0.0.1:0",
        "--unix",
        socket.to_str().unwrap(),
        "--tcp-tls",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let tcp = server.tcp_addr().to_string();
    let udp = server.udp_addr().to_string();
    let tls_name = format!("localhost:{}", server.listener("tls").port());
    let unix = socket.to_str().unwrap();
    let transports: [&[&str]; 4] = [
        &[&tcp],
        &["--udp", &udp],
        &["--unix", unix],
        &["--tls", "--ca", &ca, &tls_name],
    ];
    for transport in transports {
        // 3.5 s is beyond a 1 s limit: status 1, and it says so.
        let beyond = clock(&[transport, &["--max-offset", "1s"]].concat());
        assert_eq!(beyond.status.code(), Some(1), "{transport:?}: {beyond:?}");
        assert!(
            beyond
                .stdout
                .contains("your clock is 3.50 s behind the server")
                && beyond.stdout.contains("beyond --max-offset"),
            "{transport:?}: {beyond:?}"
        );
        let within = clock(&[transport, &["--max-offset", "5s", "--json"]].concat());
        assert_finds_the_offset(&within, 25.0);
        assert!(
            within.stderr.is_empty(),
            "{transport:?}: {:?}",
            within.stderr
        );
    }
}

#[test]
fn no_server_is_status_2_with_the_reason() {
    let closed = free_addr().to_string();
    let run = clock(&[&closed]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("refused"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn a_server_that_is_not_timecho_is_status_2() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Answers every connection with a line that is not an echo.
    let answering = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (&conn).write_all(b"HTTP/1.1 400 Bad Request\r\n").unwrap();
        line
    });
    let run = clock(&[&addr]);
    assert_eq!(answering.join().unwrap(), "timecho-clock-probe 0\n");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("unexpected reply"), "{run:?}");
}

#[test]
fn a_stamp_format_it_cannot_read_is_status_2() {
    let server = Server::start(&["--time-format", "%H:%M"]);
    let run = clock(&[&server.tcp_addr().to_string()]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("ctime, rfc3339 or unix"), "{run:?}");
}

#[test]
fn as_a_monitoring_plugin_it_says_ok_warning_or_critical_with_perfdata() {
    let server = ahead_server(&["--no-http", "--time-format", "rfc3339", "--precision", "us"]);
    let addr = server.tcp_addr().to_string();
    for (warn, crit, word, code) in [
        ("5s", "10s", "OK", 0),
        ("1s", "10s", "WARNING", 1),
        ("1s", "2s", "CRITICAL", 2),
    ] {
        let run = clock(&["--nagios", "--warn", warn, "--crit", crit, &addr]);
        assert_eq!(run.status.code(), Some(code), "{word}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
        let line = run.stdout.trim_end();
        assert!(
            line.starts_with(&format!("CLOCK {word}: {addr}: offset +3.")),
            "{line}"
        );
        let (_, perfdata) = line.split_once('|').expect("perfdata after |");
        let offset = perfdata
            .strip_prefix("offset=")
            .and_then(|p| p.split_once('s'))
            .map(|(seconds, _)| seconds.parse::<f64>().unwrap())
            .expect("offset=SECONDSs first");
        assert!((offset - AHEAD_MS / 1e3).abs() < 0.1, "{line}");
        let thresholds = format!(";{:.6};{:.6};", humantime_secs(warn), humantime_secs(crit));
        assert!(perfdata.contains(&thresholds), "{line}");
        assert!(
            perfdata.contains(" error=") && perfdata.contains(" rtt="),
            "{line}"
        );
    }
}

fn humantime_secs(text: &str) -> f64 {
    text.trim_end_matches('s').parse().unwrap()
}

#[test]
fn as_a_monitoring_plugin_no_measurement_is_unknown_and_json_still_says_why() {
    let closed = free_addr().to_string();
    let run = clock(&["--nagios", &closed]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    assert!(run.stdout.starts_with("CLOCK UNKNOWN: "), "{run:?}");
    assert!(run.stdout.contains("refused"), "{run:?}");

    let run = clock(&["--json", &closed]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {run:?}"));
    assert!(
        json["error"].as_str().unwrap().contains("refused"),
        "{json}"
    );
    assert_eq!(json["server"], closed.as_str(), "{json}");
}

#[test]
fn a_bound_under_a_millisecond_is_said_in_microseconds() {
    let server = Server::start(&["--no-http", "--time-format", "rfc3339", "--precision", "us"]);
    let addr = server.tcp_addr().to_string();
    let json = report(&clock(&["--json", &addr]));
    let run = clock(&[&addr]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(!run.stdout.contains("±0.0 ms"), "{run:?}");
    // The bound is a few round trips of loopback: under a millisecond unless
    // the machine is very busy, and then it is said in ms as it should be.
    if json.error_ms < 0.9 {
        assert!(run.stdout.contains(" µs"), "{run:?}");
    }
}
