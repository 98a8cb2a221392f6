//! What the user typed, from the outbox to its echo: the order of replies,
//! what a lost session does to messages in flight, and which is given up.

use timecho_shared::relay::close_code;
use timecho_shared::DEFAULT_MAX_LINE;

use super::*;

#[test]
fn a_message_is_queued_then_in_flight_then_echoed() {
    let chat = after([Action::Opened, submit("hello")]);
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "hello")]);

    let chat = after([
        Action::Opened,
        submit("hello"),
        Action::Delivered { through: 1, at: 0 },
    ]);
    assert_eq!(chat.queued_count(), 0);
    assert_eq!(deliveries(&chat), [("hello".into(), Delivery::InFlight)]);

    let chat = after([
        Action::Opened,
        submit("hello"),
        Action::Delivered { through: 1, at: 0 },
        echo("hello"),
    ]);
    assert_eq!(deliveries(&chat), [("hello".into(), Delivery::Echoed)]);
    assert!(matches!(&chat.entries[1].kind, EntryKind::Reply { text, .. } if text == "hello"));
}

#[test]
fn empty_submit_is_ignored_but_whitespace_is_sent_as_is() {
    let chat = after([submit(""), submit("  ")]);
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "  ")]);
}

#[test]
fn messages_typed_while_disconnected_queue_in_order_and_deliver_partially() {
    let chat = after([
        closed(ABNORMAL_CLOSURE, ""),
        submit("a"),
        submit("b"),
        submit("c"),
        Action::Opened,
        Action::Delivered { through: 2, at: 0 },
    ]);
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(3, "c")]);
}

#[test]
fn each_reply_answers_the_oldest_message_in_flight() {
    let chat = after([
        Action::Opened,
        submit("a"),
        submit("b"),
        Action::Delivered { through: 2, at: 0 },
        Action::Received {
            line: "error: line longer than 65536 bytes; discarded".into(),
            at: 0,
        },
    ]);
    assert_eq!(
        deliveries(&chat),
        [
            ("a".into(), Delivery::Echoed),
            ("b".into(), Delivery::InFlight)
        ]
    );
}

#[test]
fn messages_in_flight_when_the_session_dies_are_queued_again() {
    let chat = after([
        Action::Opened,
        submit("a"),
        submit("b"),
        Action::Delivered { through: 2, at: 0 },
        echo("a"),
        closed(close_code::UPSTREAM_ERROR, "upstream down"),
    ]);
    assert_eq!(
        deliveries(&chat),
        [
            ("a".into(), Delivery::Echoed),
            ("b".into(), Delivery::Queued)
        ]
    );
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(2, "b")]);
}

#[test]
fn the_largest_message_in_flight_takes_the_blame_for_a_too_big_close() {
    let chat = after([
        Action::Opened,
        submit("a"),
        submit("huge"),
        submit("b"),
        Action::Delivered { through: 3, at: 0 },
        closed(close_code::TOO_BIG, ""),
    ]);
    assert_eq!(
        deliveries(&chat),
        [
            ("a".into(), Delivery::Queued),
            ("huge".into(), Delivery::Undelivered),
            ("b".into(), Delivery::Queued),
        ]
    );
    assert!(matches!(
        chat.entries.last().map(|e| &e.kind),
        Some(EntryKind::Error(e)) if e == "Disconnected: a message was too big for the gateway"
    ));
}

#[test]
fn a_message_that_keeps_ending_sessions_strikes_out() {
    let mut chat = after([submit("poison")]);
    let session = [
        Action::Opened,
        Action::Delivered { through: 1, at: 0 },
        closed(close_code::NORMAL, ""),
    ];
    for round in 1..=MAX_STRIKES {
        session.iter().cloned().for_each(|a| chat.apply(a));
        let expected = if round < MAX_STRIKES {
            Delivery::Queued
        } else {
            Delivery::Undelivered
        };
        assert_eq!(
            deliveries(&chat),
            [("poison".into(), expected)],
            "round {round}"
        );
    }
}

#[test]
fn an_unreachable_upstream_never_costs_a_queued_message() {
    let mut chat = after([submit("patience")]);
    for _ in 0..20 {
        chat.apply(Action::Opened);
        chat.apply(Action::Delivered { through: 1, at: 0 });
        chat.apply(closed(close_code::UPSTREAM_ERROR, "upstream down"));
    }
    assert_eq!(deliveries(&chat), [("patience".into(), Delivery::Queued)]);
}

#[test]
fn a_message_too_long_for_one_line_is_kept_but_not_sent() {
    let long = "x".repeat(DEFAULT_MAX_LINE + 1);
    let chat = after([Action::Opened, Action::Submit(long.clone())]);
    assert_eq!(chat.queued_count(), 0);
    assert_eq!(deliveries(&chat), [(long, Delivery::Undelivered)]);
    assert!(matches!(
        chat.entries.last().map(|e| &e.kind),
        Some(EntryKind::Error(e)) if e.starts_with("Not sent: the message is 65537 bytes")
    ));
    let fits = after([Action::Submit("y".repeat(DEFAULT_MAX_LINE))]);
    assert_eq!(fits.queued_count(), 1);
}

#[test]
fn long_transcripts_drop_the_oldest_but_never_an_undelivered_message() {
    let mut chat = after([submit("keep me")]);
    for i in 0..MAX_ENTRIES + 10 {
        chat.apply(Action::Received {
            line: format!("[1793782701] {i}"),
            at: 0,
        });
    }
    assert_eq!(chat.entries.len(), MAX_ENTRIES);
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "keep me")]);
    assert!(matches!(
        &chat.entries[1].kind,
        EntryKind::Reply { text, .. } if text == "11"
    ));
}

#[test]
fn ids_stay_unique_after_trimming() {
    let mut chat = after([Action::Opened]);
    for i in 0..MAX_ENTRIES * 2 {
        chat.apply(Action::Submit(i.to_string()));
        chat.apply(Action::Delivered {
            through: u64::MAX,
            at: 0,
        });
        chat.apply(echo(&i.to_string()));
    }
    let mut ids: Vec<_> = chat.entries.iter().map(|e| e.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), MAX_ENTRIES);
}
