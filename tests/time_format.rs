//! Stamp layouts chosen with --time-format, --precision and --utc, read back
//! with the shared parser; and a bad pattern refused at start-up.

use chrono::{TimeDelta, Utc};
use timecho_shared::{Precision, Stamp, StampFormat, TimeFormat};

use crate::support::{assert_recent, serve_expecting_exit, split_reply, Peer, Server};

/// The server runs 14 hours ahead of UTC (a POSIX TZ string, no DST), so local
/// time and UTC can be told apart whatever zone the test machine is in.
const SERVER_ZONE: (&str, &str) = ("TZ", "UTC-14");
const SERVER_OFFSET_HOURS: i64 = 14;

/// The stamp text of the reply to one line sent to a server started with `args`.
fn stamp_from(args: &[&str]) -> String {
    let server = Server::start_with_env(&[SERVER_ZONE], args);
    let mut peer = Peer::tcp(server.tcp_addr());
    peer.send(b"what time is it?\n");
    let (stamp, text) = split_reply(&peer.read_line());
    assert_eq!(text, b"what time is it?");
    stamp
}

fn parse(format: TimeFormat, precision: Precision, utc: bool, stamp: &str) -> Stamp {
    let layout = StampFormat {
        format,
        precision,
        utc,
    };
    layout
        .parse(stamp)
        .unwrap_or_else(|e| panic!("{stamp:?} is not in {layout:?}: {e}"))
}

/// Fails unless a wall-clock stamp shows the server zone's time now, give or
/// take a couple of seconds (stamps are truncated, so they may lag a second more).
#[track_caller]
fn assert_server_zone_now(stamp: &Stamp) {
    let expected = (Utc::now() + TimeDelta::hours(SERVER_OFFSET_HOURS)).naive_utc();
    let lag = expected - stamp.wall_clock();
    assert!(
        lag >= TimeDelta::milliseconds(-500) && lag <= TimeDelta::seconds(3),
        "stamp {stamp:?} is {lag} away from the time in the server's zone (UTC+14)"
    );
}

#[test]
fn default_stamp_is_ctime_in_the_server_time_zone() {
    let stamp = stamp_from(&[]);
    // Wed Nov 25 22:47:03 2026
    assert_eq!(stamp.len(), 24, "{stamp:?}");
    let parsed = parse(TimeFormat::Ctime, Precision::Seconds, false, &stamp);
    assert!(matches!(parsed, Stamp::Local(_)), "{parsed:?}");
    assert_server_zone_now(&parsed);
}

#[test]
fn rfc3339_stamps_name_the_server_zone_offset() {
    let stamp = stamp_from(&["--time-format", "rfc3339"]);
    // 2026-11-25T22:47:03+14:00: seconds precision by default
    assert!(stamp.ends_with("+14:00") && stamp.len() == 25, "{stamp:?}");
    let parsed = parse(TimeFormat::Rfc3339, Precision::Seconds, false, &stamp);
    assert_server_zone_now(&parsed);
    assert_recent(&parsed);
}

#[test]
fn rfc3339_utc_stamps_carry_milliseconds_and_z() {
    let stamp = stamp_from(&["--time-format", "rfc3339", "--precision", "ms", "--utc"]);
    // 2026-11-25T08:47:03.123Z
    assert_eq!(stamp.len(), 24, "{stamp:?}");
    assert!(stamp.ends_with('Z'), "{stamp:?}");
    assert!(
        stamp[20..23].bytes().all(|b| b.is_ascii_digit()) && &stamp[19..20] == ".",
        "{stamp:?}"
    );
    let parsed = parse(TimeFormat::Rfc3339, Precision::Millis, true, &stamp);
    let Stamp::Zoned(t) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(t.offset().local_minus_utc(), 0, "{stamp:?}");
    assert_recent(&parsed);
}

#[test]
fn utc_set_in_the_environment_as_people_write_it_is_taken() {
    for yes in ["1", "yes", "on", "true"] {
        let server = Server::start_with_env(
            &[SERVER_ZONE, ("TIMECHO_UTC", yes)],
            &["--time-format", "rfc3339"],
        );
        let mut peer = Peer::tcp(server.tcp_addr());
        peer.send(b"utc?\n");
        let (stamp, _) = split_reply(&peer.read_line());
        assert!(stamp.ends_with('Z'), "TIMECHO_UTC={yes}: {stamp:?}");
    }
}

#[test]
fn unix_stamps_are_epoch_seconds_with_milliseconds() {
    let stamp = stamp_from(&["--time-format", "unix"]);
    let (secs, frac) = stamp
        .split_once('.')
        .unwrap_or_else(|| panic!("no fraction in {stamp:?}"));
    assert!(secs.bytes().all(|b| b.is_ascii_digit()), "{stamp:?}");
    assert!(
        frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()),
        "{stamp:?}"
    );
    let parsed = parse(TimeFormat::Unix, Precision::Millis, true, &stamp);
    assert!(matches!(parsed, Stamp::Instant(_)), "{parsed:?}");
    assert_recent(&parsed);
}

#[test]
fn strftime_pattern_shapes_the_stamp() {
    let pattern = "%d/%m/%Y %H.%M.%S";
    let stamp = stamp_from(&["--time-format", pattern]);
    // 25/11/2026 08.47.03
    assert_eq!(stamp.len(), 19, "{stamp:?}");
    assert_eq!(
        Stamp::parse_any(&stamp),
        None,
        "{stamp:?} is a built-in format"
    );
    let parsed = parse(
        TimeFormat::Strftime(pattern.into()),
        Precision::Seconds,
        false,
        &stamp,
    );
    assert_server_zone_now(&parsed);
}

#[test]
fn invalid_strftime_pattern_stops_start_with_a_message_naming_it() {
    let exited = serve_expecting_exit(&["--time-format", "%Q"]);
    assert!(!exited.status.success(), "started with %Q: {exited:?}");
    assert_ne!(exited.status.code(), Some(101), "exit code of a panic");
    assert!(
        exited.stderr.contains("%Q"),
        "pattern not named: {}",
        exited.stderr
    );
    for sign_of_a_crash in ["panicked", "backtrace"] {
        assert!(
            !exited.stderr.contains(sign_of_a_crash),
            "stderr looks like a crash: {}",
            exited.stderr
        );
    }
    assert!(
        !exited.stdout.contains("listening"),
        "it started listening: {}",
        exited.stdout
    );
}
