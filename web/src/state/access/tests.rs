//! Tests of the sign-in state: how each `/api` reply becomes an action, and
//! which pages may connect.

use super::*;

fn reply(status: u16, auth: bool, user: Option<&str>, reason: Option<&str>) -> ApiReply {
    ApiReply {
        status,
        session: Some(SessionInfo {
            auth,
            user: user.map(str::to_owned),
            reason: reason.map(str::to_owned),
        }),
        body: String::new(),
    }
}

fn plain(status: u16, body: &str) -> ApiReply {
    ApiReply {
        status,
        body: body.into(),
        ..ApiReply::default()
    }
}

#[test]
fn session_answers_say_open_signed_in_or_sign_in() {
    let answer = |r| match session_checked(r) {
        Action::Session(a) => a,
        other => panic!("not a session answer: {other:?}"),
    };
    assert_eq!(
        answer(Ok(reply(200, false, None, None))),
        SessionAnswer::Open
    );
    assert_eq!(
        answer(Ok(reply(200, true, Some("ada"), None))),
        SessionAnswer::SignedIn("ada".into())
    );
    assert_eq!(
        answer(Ok(reply(401, true, None, Some("sign in first")))),
        SessionAnswer::SignInNeeded { reason: None }
    );
    assert_eq!(
        answer(Ok(reply(429, true, None, Some("wait a minute")))),
        SessionAnswer::SignInNeeded {
            reason: Some("wait a minute".into())
        }
    );
}

#[test]
fn a_gateway_without_the_api_or_no_answer_lets_the_socket_decide() {
    for r in [
        Ok(plain(404, "no such file: /api/session")),
        Ok(plain(502, "<html>bad gateway</html>")),
        Err("NetworkError".to_owned()),
    ] {
        assert_eq!(session_checked(r), Action::Session(SessionAnswer::Open));
    }
}

#[test]
fn sign_in_answers_carry_the_servers_reason() {
    assert_eq!(
        signed_in("ada", Ok(reply(200, true, Some("ada"), None))),
        Action::Session(SessionAnswer::SignedIn("ada".into()))
    );
    assert_eq!(
        signed_in("ada", Ok(plain(200, ""))),
        Action::Session(SessionAnswer::SignedIn("ada".into()))
    );
    assert_eq!(
        signed_in(
            "ada",
            Ok(reply(401, true, None, Some("wrong user name or password")))
        ),
        Action::SignInRefused("wrong user name or password".into())
    );
    assert_eq!(
        signed_in("ada", Ok(plain(403, "origin not allowed\n"))),
        Action::SignInRefused("origin not allowed".into())
    );
    assert_eq!(
        signed_in("ada", Ok(plain(500, "<html>oops</html>"))),
        Action::SignInRefused("the server answered HTTP 500".into())
    );
    assert_eq!(
        signed_in("ada", Err("Failed to fetch".into())),
        Action::SignInRefused("could not reach the server: Failed to fetch".into())
    );
    assert_eq!(
        signed_in("ada", Ok(plain(404, "sign-in is not enabled"))),
        Action::Session(SessionAnswer::Open)
    );
}

#[test]
fn sign_out_succeeds_only_when_the_server_agrees() {
    assert_eq!(signed_out(Ok(plain(204, ""))), Action::SignedOut);
    assert_eq!(
        signed_out(Err("Failed to fetch".into())),
        Action::SignOutFailed("could not reach the server: Failed to fetch".into())
    );
}

#[test]
fn only_open_or_signed_in_pages_connect() {
    assert!(!Access::Checking.may_connect());
    assert!(Access::Open.may_connect());
    assert!(Access::SignedIn { user: "ada".into() }.may_connect());
    let form = Access::SignedOut {
        error: None,
        busy: false,
        just_signed_out: false,
    };
    assert!(!form.may_connect() && form.shows_sign_in());
}
