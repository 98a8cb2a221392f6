//! The clock probes as the reducer sees them: when one is due, and how an
//! echo, a probe's or a message's, is measured rather than shown.

use timecho_shared::api::StampInfo;
use timecho_shared::relay::close_code;
use timecho_shared::{StampFormat, TimeFormat, DEFAULT_MAX_LINE};

use super::*;

#[test]
fn a_reply_shows_the_round_trip_of_its_message() {
    let chat = after([
        Action::Opened,
        submit("hello"),
        Action::Delivered {
            through: 1,
            at: 5_000_000,
        },
        Action::Received {
            line: "[Tue Nov 24 21:35:36 2026] hello".into(),
            at: 7_250_000,
        },
    ]);
    assert!(matches!(
        &chat.entries[1].kind,
        EntryKind::Reply {
            rtt: Some(2_250_000),
            ..
        }
    ));
    assert_eq!(chat.clock.recent_rtts(7_250_000).count(), 1);
}

#[test]
fn a_clock_probes_echo_is_measured_and_not_shown() {
    let mut chat = after([ctime_config(), Action::Opened, submit("hello")]);
    let probe = chat.clock.next_probe_line();
    // Sent between the message and its echo: replies come in order.
    chat.apply(Action::Delivered { through: 2, at: 0 });
    chat.apply(Action::ProbeSent { at: 1_000_000 });
    chat.apply(echo("hello"));
    chat.apply(Action::Received {
        line: format!("[Tue Nov 24 21:35:36 2026] {probe}"),
        at: 3_000_000,
    });
    assert_eq!(chat.entries.len(), 2, "{:?}", kinds(&chat));
    assert!(matches!(&chat.entries[1].kind, EntryKind::Reply { text, .. } if text == "hello"));
    assert!(chat.clock.bounds().is_some());
    assert_eq!(
        chat.clock.recent_rtts(3_000_000).collect::<Vec<_>>(),
        // The message's (sent and echoed at 0 here), then the probe's.
        vec![(0, 0), (3_000_000, 2_000_000)]
    );
}

#[test]
fn a_lost_connection_forgets_the_probe_on_it() {
    let mut chat = after([ctime_config(), Action::Opened]);
    assert_eq!(chat.probe_due(0), Some(0));
    chat.apply(Action::ProbeSent { at: 0 });
    assert_eq!(chat.probe_due(0), None);
    chat.apply(closed(close_code::UPSTREAM_ERROR, "gone"));
    assert_eq!(chat.probe_due(0), None, "not while disconnected");
    assert!(chat.clock.next_probe_at(0).is_some());
    chat.apply(Action::Opened);
    assert_eq!(chat.probe_due(0), Some(crate::state::clock::MIN_GAP));
}

#[test]
fn probes_wait_for_the_stamp_format_and_fit_the_line_limit() {
    assert_eq!(after([Action::Opened]).probe_due(0), None, "format unknown");
    let strftime = StampFormat {
        format: TimeFormat::Strftime("%H:%M:%S".into()),
        ..StampFormat::default()
    };
    let unreadable = Action::Configured(ServerConfig::new(
        DEFAULT_MAX_LINE,
        DEFAULT_MAX_LINE,
        StampInfo::new(&strftime, 0),
        false,
    ));
    assert_eq!(after([unreadable, Action::Opened]).probe_due(0), None);
    // `timecho-clock-probe 1` is 21 bytes: a 20-byte limit would end the
    // session for it (1009).
    let tight = |max_line| {
        Action::Configured(ServerConfig::new(
            max_line,
            DEFAULT_MAX_LINE,
            StampInfo::new(&StampFormat::default(), 0),
            false,
        ))
    };
    assert_eq!(after([tight(20), Action::Opened]).probe_due(0), None);
    assert_eq!(after([tight(21), Action::Opened]).probe_due(0), Some(0));
}
