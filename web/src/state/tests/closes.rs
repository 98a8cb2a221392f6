//! The connection's ends as the transcript and status tell them: which close
//! is news, which is routine, and what reconnecting shows.

use timecho_shared::relay::close_code;

use super::*;

#[test]
fn starts_connecting_with_an_empty_transcript() {
    let chat = Chat::default();
    assert_eq!(chat.connection.state_name(), "connecting");
    assert!(chat.entries.is_empty());
}

#[test]
fn gateway_reason_is_shown_as_sent() {
    let chat = after([closed(
        close_code::UPSTREAM_ERROR,
        "upstream 127.0.0.1:7 refused",
    )]);
    assert_eq!(
        chat.connection,
        Connection::Disconnected {
            reason: "upstream 127.0.0.1:7 refused".into(),
            code: close_code::UPSTREAM_ERROR,
            retry_in_ms: Some(500),
        }
    );
}

#[test]
fn failed_retries_stay_out_of_the_transcript() {
    let chat = after([
        closed(ABNORMAL_CLOSURE, ""),
        Action::Connecting { attempt: 1 },
        closed(ABNORMAL_CLOSURE, ""),
    ]);
    assert!(chat.entries.is_empty());
    assert_eq!(chat.connection.state_name(), "disconnected");
}

#[test]
fn an_outage_is_noted_once_and_its_end_at_the_first_reply() {
    let down = || closed(close_code::UPSTREAM_ERROR, "upstream down");
    let chat = after([
        Action::Opened,
        down(),
        // The gateway accepts, then closes at once, while upstream is down.
        Action::Opened,
        down(),
        submit("typed during the outage"),
        Action::Opened,
        down(),
        Action::Opened,
        echo("typed during the outage"),
    ]);
    let kinds = kinds(&chat);
    assert_eq!(
        kinds[0],
        EntryKind::Error("Disconnected: upstream down".into())
    );
    assert!(matches!(kinds[1], EntryKind::Sent(_)));
    assert_eq!(kinds[2], EntryKind::Notice("Reconnected.".into()));
    assert!(matches!(kinds[3], EntryKind::Reply { .. }));
    assert_eq!(kinds.len(), 4);
}

#[test]
fn orderly_closes_are_notices_not_errors() {
    let chat = after([Action::Opened, closed(close_code::NORMAL, "")]);
    assert_eq!(
        kinds(&chat),
        [EntryKind::Notice(
            "Disconnected: the timestamp server closed the connection".into()
        )]
    );
}

#[test]
fn a_token_renewal_close_leaves_the_transcript_alone() {
    let chat = after([
        Action::Opened,
        closed(close_code::TOKEN_EXPIRED, "sign-in token expired"),
    ]);
    assert_eq!(kinds(&chat), []);
}

#[test]
fn an_idle_close_is_quiet_and_the_next_message_waits_for_the_socket() {
    let chat = after([
        Action::Opened,
        submit("a"),
        Action::Delivered { through: 1, at: 0 },
        echo("a"),
        Action::Closed {
            code: close_code::IDLE,
            reason: "idle for 5m; closing".into(),
            retry_in_ms: None,
        },
    ]);
    assert_eq!(chat.connection, Connection::Idle);
    assert_eq!(chat.connection.state_name(), "idle");
    let mut chat = chat;
    for a in [
        submit("b"),
        Action::Connecting { attempt: 0 },
        Action::Opened,
        Action::Delivered { through: 3, at: 0 },
        echo("b"),
    ] {
        chat.apply(a);
    }
    // No "Disconnected", no "Reconnected.": the sent messages and their replies only.
    let kinds = kinds(&chat);
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds
        .iter()
        .all(|k| matches!(k, EntryKind::Sent(_) | EntryKind::Reply { .. })));
    assert_eq!(
        deliveries(&chat),
        [
            ("a".into(), Delivery::Echoed),
            ("b".into(), Delivery::Echoed)
        ]
    );
}

#[test]
fn reconnecting_after_an_idle_close_shows_no_old_error() {
    let chat = after([
        Action::Opened,
        closed(close_code::IDLE, "idle for 300s; closing"),
        Action::Connecting { attempt: 0 },
    ]);
    assert_eq!(
        chat.connection,
        Connection::Connecting {
            attempt: 0,
            last_error: None
        }
    );
}

#[test]
fn reconnecting_keeps_the_last_error_visible() {
    let chat = after([
        closed(ABNORMAL_CLOSURE, ""),
        Action::Connecting { attempt: 1 },
    ]);
    assert_eq!(
        chat.connection,
        Connection::Connecting {
            attempt: 1,
            last_error: Some("could not reach the gateway".into()),
        }
    );
    let chat = after([Action::Opened, Action::Connecting { attempt: 0 }]);
    assert_eq!(
        chat.connection,
        Connection::Connecting {
            attempt: 0,
            last_error: None
        }
    );
}
