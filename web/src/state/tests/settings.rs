//! The server's settings (`/api/config`): its line limit, applied to what
//! is queued and what is typed next, and its stamp layout.

use timecho_shared::api::StampInfo;
use timecho_shared::{Precision, StampFormat, TimeFormat};

use super::*;

fn configured(max_line: usize) -> Action {
    let stamp = StampInfo::new(&StampFormat::default(), 0);
    Action::Configured(ServerConfig::new(max_line, max_line, stamp, false))
}

#[test]
fn the_servers_own_line_limit_applies_once_it_is_known() {
    let chat = after([configured(10), submit("0123456789"), submit("0123456789a")]);
    assert_eq!(chat.settings.max_message_bytes, 10);
    assert_eq!(
        deliveries(&chat),
        [
            ("0123456789".into(), Delivery::Queued),
            ("0123456789a".into(), Delivery::Undelivered)
        ]
    );
    assert_eq!(
        chat.entries.last().map(|e| &e.kind),
        Some(&EntryKind::Error(
            "Not sent: the message is 11 bytes, and the server takes at most 10 in one line."
                .into()
        ))
    );
    // A larger limit than the default is honoured too.
    let chat = after([
        configured(DEFAULT_MAX_LINE * 2),
        submit(&"z".repeat(DEFAULT_MAX_LINE + 1)),
    ]);
    assert_eq!(chat.queued_count(), 1);
}

#[test]
fn queued_messages_over_the_servers_limit_are_given_up_when_it_arrives() {
    let chat = after([
        Action::Opened,
        submit("in flight, long"),
        Action::Delivered { through: 1, at: 0 },
        submit("short"),
        submit("far too long"),
        submit("also too long"),
        configured(5),
    ]);
    assert_eq!(
        deliveries(&chat),
        [
            ("in flight, long".into(), Delivery::InFlight),
            ("short".into(), Delivery::Queued),
            ("far too long".into(), Delivery::Undelivered),
            ("also too long".into(), Delivery::Undelivered),
        ]
    );
    let errors: Vec<_> = kinds(&chat)
        .into_iter()
        .filter(|k| matches!(k, EntryKind::Error(_)))
        .collect();
    assert_eq!(
        errors,
        [12, 13].map(|bytes| EntryKind::Error(format!(
            "Not sent: the message is {bytes} bytes, and the server takes at most 5 in one line."
        )))
    );
}

#[test]
fn the_stamp_layout_is_kept_and_survives_signing_out() {
    let format = StampFormat {
        format: TimeFormat::Unix,
        precision: Precision::Micros,
        utc: true,
    };
    let config = ServerConfig::new(100, 100, StampInfo::new(&format, 0), true);
    let chat = after([Action::Configured(config), Action::SignedOut]);
    assert_eq!(
        chat.settings.stamp,
        Some(StampSettings {
            format,
            utc_offset_seconds: 0
        })
    );
    assert_eq!(chat.settings.max_message_bytes, 100);
}
