//! The wall clock steps (an NTP step, a manual `date`) under the real binary:
//! libfaketime (`apt-get install faketime`, installed by `cargo xtask test`)
//! gives the server a clock the test moves by rewriting a file, re-read on
//! every call, while the monotonic clock (timers, deadlines) stays real. The
//! stamps must follow each step at once: the once-a-second stamp cache must
//! neither keep the old second nor stall.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{split_reply, Peer, Server, TempDir};
use chrono::{DateTime, TimeDelta, Utc};
use timecho_shared::Stamp;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The stamp of one echoed line.
fn stamp_of(peer: &mut Peer, line: &str) -> DateTime<Utc> {
    peer.send(format!("{line}\n").as_bytes());
    let reply = peer.read_line();
    let (stamp, text) = split_reply(&reply);
    assert_eq!(text, line.as_bytes());
    match Stamp::parse_any(&stamp) {
        Some(Stamp::Instant(t)) => t,
        Some(Stamp::Zoned(t)) => t.to_utc(),
        // ctime with --utc: the wall clock is UTC.
        Some(Stamp::Local(t)) => t.and_utc(),
        other => panic!("stamp {stamp:?} parsed as {other:?}"),
    }
}

/// Moves the server's wall clock to `offset` from the real one.
fn step(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).expect("write the faketime file");
}

#[track_caller]
fn assert_near(stamp: DateTime<Utc>, expected: DateTime<Utc>, what: &str) {
    let off = (stamp - expected).abs();
    assert!(
        off <= TimeDelta::seconds(2),
        "{what}: stamp {stamp} is {off} from the expected {expected}"
    );
}

#[test]
fn stamps_follow_the_wall_clock_when_it_steps_back_and_forward() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: `cargo xtask test` installs it (apt-get install faketime)"
    );
    let dir = TempDir::new();
    let clock = dir.path().join("faketime");
    step(&clock, "+0");
    let clock_path = clock.to_str().expect("a UTF-8 temp path");
    for format in [
        &["--utc"][..],
        &["--utc", "--time-format", "rfc3339", "--precision", "us"],
    ] {
        let server = Server::start_with_env(
            &[
                ("LD_PRELOAD", LIBFAKETIME),
                ("FAKETIME_TIMESTAMP_FILE", clock_path),
                ("FAKETIME_NO_CACHE", "1"),
                // Timers and deadlines run on the monotonic clock, which an
                // NTP step leaves alone.
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
            format,
        );
        let mut peer = Peer::tcp(server.tcp_addr());
        assert_near(stamp_of(&mut peer, "real"), Utc::now(), "before any step");

        // Back an hour, forward a day, and back to the real time: the very
        // next line carries the new time each time.
        for (offset, shift) in [
            ("-1h", TimeDelta::hours(-1)),
            ("+1d", TimeDelta::days(1)),
            ("+0", TimeDelta::zero()),
        ] {
            step(&clock, offset);
            let stamp = stamp_of(&mut peer, offset);
            assert_near(
                stamp,
                Utc::now() + shift,
                &format!("{format:?} after {offset}"),
            );
        }

        // Within one second the stamp moves on with the clock: not stalled on
        // a second the cache saw before the steps.
        let first = stamp_of(&mut peer, "tick");
        let deadline = Instant::now() + Duration::from_secs(3);
        while stamp_of(&mut peer, "tock") <= first {
            assert!(
                Instant::now() < deadline,
                "{format:?}: the stamp stalled at {first}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
