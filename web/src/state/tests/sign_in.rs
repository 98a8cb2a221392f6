//! Signing in and out: when the socket may connect, the form's states, and
//! what a policy close does to the page.

use timecho_shared::relay::close_code;

use super::*;

fn sign_in_form(error: Option<&str>, busy: bool) -> Access {
    Access::SignedOut {
        error: error.map(str::to_owned),
        busy,
        just_signed_out: false,
    }
}

#[test]
fn the_socket_waits_until_the_server_says_who_may_connect() {
    let chat = Chat::default();
    assert_eq!(chat.access, Access::Checking);
    assert!(!chat.access.may_connect());
    let open = after([Action::Session(SessionAnswer::Open)]);
    assert!(open.access.may_connect());
}

#[test]
fn signing_in_shows_busy_then_the_servers_reason_then_the_user() {
    let mut chat = after([Action::Session(SessionAnswer::SignInNeeded {
        reason: None,
    })]);
    assert_eq!(chat.access, sign_in_form(None, false));
    chat.apply(Action::SigningIn);
    assert_eq!(chat.access, sign_in_form(None, true));
    chat.apply(Action::SignInRefused("wrong user name or password".into()));
    assert_eq!(
        chat.access,
        sign_in_form(Some("wrong user name or password"), false)
    );
    chat.apply(Action::SigningIn);
    assert_eq!(chat.access, sign_in_form(None, true));
    chat.apply(Action::Session(SessionAnswer::SignedIn("ada".into())));
    assert_eq!(chat.access.user(), Some("ada"));
    assert!(chat.access.may_connect());
}

#[test]
fn a_policy_close_brings_the_form_back_and_keeps_messages_queued() {
    let chat = after([
        Action::Session(SessionAnswer::SignedIn("ada".into())),
        Action::Opened,
        submit("hello"),
        Action::Delivered { through: 1, at: 0 },
        Action::Closed {
            code: close_code::POLICY,
            reason: "sign in first".into(),
            retry_in_ms: None,
        },
    ]);
    assert_eq!(
        chat.access,
        sign_in_form(Some("Your session has ended: sign in first"), false)
    );
    assert_eq!(
        chat.connection,
        Connection::Disconnected {
            reason: "sign in first".into(),
            code: close_code::POLICY,
            retry_in_ms: None,
        }
    );
    assert_eq!(chat.outbox().collect::<Vec<_>>(), [(1, "hello")]);
}

#[test]
fn a_policy_close_on_an_open_page_asks_for_a_sign_in() {
    let chat = after([
        Action::Session(SessionAnswer::Open),
        Action::Closed {
            code: close_code::POLICY,
            reason: "sign in first".into(),
            retry_in_ms: None,
        },
    ]);
    assert_eq!(
        chat.access,
        sign_in_form(Some("The server asks you to sign in: sign in first"), false)
    );
}

#[test]
fn signing_out_clears_the_transcript_and_shows_the_form() {
    let chat = after([
        Action::Session(SessionAnswer::SignedIn("ada".into())),
        Action::Opened,
        submit("secret"),
        Action::Delivered { through: 1, at: 0 },
        echo("secret"),
        Action::SignedOut,
    ]);
    assert!(chat.entries.is_empty());
    // The form confirms it: the user sees they are out, not just a form.
    assert_eq!(
        chat.access,
        Access::SignedOut {
            error: None,
            busy: false,
            just_signed_out: true
        }
    );
    assert_eq!(chat.connection.state_name(), "connecting");
    // Ids go on, so list keys never repeat.
    let chat = {
        let mut c = chat;
        c.apply(submit("next"));
        c
    };
    assert_eq!(chat.entries[0].id, 3);
}

#[test]
fn the_gateways_close_after_signing_out_keeps_the_confirmation() {
    let chat = after([
        Action::Session(SessionAnswer::SignedIn("ada".into())),
        Action::Opened,
        Action::SignedOut,
        closed(close_code::POLICY, "signed out"),
    ]);
    assert_eq!(
        chat.access,
        Access::SignedOut {
            error: None,
            busy: false,
            just_signed_out: true
        }
    );
}

#[test]
fn the_signed_out_note_goes_once_the_user_signs_in_again() {
    let signed_out = [
        Action::Session(SessionAnswer::SignedIn("ada".into())),
        Action::SignedOut,
    ];
    let mut chat = after(signed_out.clone());
    chat.apply(Action::SigningIn);
    assert_eq!(chat.access, sign_in_form(None, true));
    let mut chat = after(signed_out);
    chat.apply(Action::SignInRefused("wrong user name or password".into()));
    assert_eq!(
        chat.access,
        sign_in_form(Some("wrong user name or password"), false)
    );
}

#[test]
fn a_failed_sign_out_stays_signed_in_and_says_why() {
    let chat = after([
        Action::Session(SessionAnswer::SignedIn("ada".into())),
        Action::SignOutFailed("could not reach the server: Failed to fetch".into()),
    ]);
    assert_eq!(chat.access.user(), Some("ada"));
    assert_eq!(
        kinds(&chat),
        [EntryKind::Error(
            "Could not sign out: could not reach the server: Failed to fetch".into()
        )]
    );
}
