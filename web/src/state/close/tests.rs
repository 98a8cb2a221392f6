//! Tests of what each close code means to the page: its words, and whether
//! it is news, waits for use, or needs a sign-in.

use super::*;

#[test]
fn gateway_reason_wins_over_the_code() {
    assert_eq!(
        describe_close(close_code::UPSTREAM_ERROR, "upstream 127.0.0.1:7 refused"),
        "upstream 127.0.0.1:7 refused"
    );
}

#[test]
fn close_without_a_reason_is_explained_by_its_code() {
    assert_eq!(
        describe_close(ABNORMAL_CLOSURE, ""),
        "could not reach the gateway"
    );
    assert_eq!(
        describe_close(close_code::GOING_AWAY, " "),
        "the gateway is shutting down"
    );
    assert_eq!(
        describe_close(close_code::RESTART, "restarting; reconnect within 5000 ms"),
        "the gateway is restarting"
    );
    assert_eq!(
        describe_close(4000, ""),
        "the connection closed (code 4000)"
    );
}

#[test]
fn an_unreachable_upstream_blames_no_message() {
    assert_eq!(blame(close_code::UPSTREAM_ERROR), Blame::Nobody);
    assert_eq!(blame(close_code::TOO_BIG), Blame::Largest);
    assert_eq!(blame(close_code::NORMAL), Blame::Suspects);
    assert_eq!(blame(ABNORMAL_CLOSURE), Blame::Suspects);
    assert_eq!(blame(close_code::RESTART), Blame::Nobody);
    assert!(is_orderly(close_code::NORMAL) && !is_orderly(close_code::POLICY));
    assert!(is_orderly(close_code::RESTART));
    // The server answered everything before an idle close.
    assert_eq!(blame(close_code::IDLE), Blame::Nobody);
}

#[test]
fn an_idle_close_is_routine_and_waits_for_use() {
    assert!(is_routine(close_code::IDLE) && is_orderly(close_code::IDLE));
    assert!(waits_for_use(close_code::IDLE));
    assert!(!waits_for_use(close_code::UPSTREAM_ERROR));
    assert!(!waits_for_use(close_code::TOKEN_EXPIRED));
}

#[test]
fn only_a_policy_close_asks_for_a_sign_in() {
    assert!(needs_sign_in(close_code::POLICY));
    assert!(!needs_sign_in(close_code::UPSTREAM_ERROR));
    assert!(!needs_sign_in(ABNORMAL_CLOSURE));
}
