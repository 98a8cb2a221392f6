//! Tests of the transcript's entries: a reply line split into its stamp and
//! text, and told apart from the server's errors.

use super::*;

#[test]
fn stamped_reply_shows_the_time_apart_from_the_text() {
    assert_eq!(
        reply_entry(
            "[Tue Nov 24 21:35:36 2026] hello [x]",
            None,
            Some(1_500_000)
        ),
        EntryKind::Reply {
            stamp: "Tue Nov 24 21:35:36 2026".into(),
            time: Some(ClockTime {
                short: "21:35:36".into(),
                iso: "2026-11-24T21:35:36".into()
            }),
            text: "hello [x]".into(),
            rtt: Some(1_500_000),
        }
    );
}

#[test]
fn fractional_stamps_keep_milliseconds() {
    let t = ClockTime::read("2026-11-24T21:35:36.250+01:00", None).expect("rfc3339 stamp");
    assert_eq!(t.short, "21:35:36.250");
    assert_eq!(t.iso, "2026-11-24T21:35:36.250");
}

#[test]
fn unknown_stamp_is_kept_without_a_time() {
    assert!(matches!(
        reply_entry("[tick 42] hi", None, None),
        EntryKind::Reply { stamp, time: None, text, rtt: None } if stamp == "tick 42" && text == "hi"
    ));
}

#[test]
fn server_errors_and_foreign_lines_are_told_apart() {
    assert_eq!(
        reply_entry("error: line longer than 65536 bytes; discarded", None, None),
        EntryKind::Error("line longer than 65536 bytes; discarded".into())
    );
    assert_eq!(
        reply_entry("hello", None, None),
        EntryKind::Other("hello".into())
    );
}

#[test]
fn a_known_format_is_read_as_the_server_wrote_it_and_nothing_else() {
    let unix = StampFormat {
        format: timecho_shared::TimeFormat::Unix,
        precision: timecho_shared::Precision::Millis,
        utc: true,
    };
    // A number read as unix seconds, since the server says that is the format...
    let t = ClockTime::read("1795622560.125", Some(&unix)).expect("a unix stamp");
    assert_eq!(t.iso, "2026-11-25T16:02:40.125");
    // ...and a ctime stamp is not this server's: no guessing.
    assert_eq!(
        ClockTime::read("Tue Nov 24 21:35:36 2026", Some(&unix)),
        None
    );
}
