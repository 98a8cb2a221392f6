//! Who may use the page: the server's sign-in (`--auth`) as the page sees it,
//! and how the sign-in API's answers become actions.

use timecho_shared::api::{status, SessionInfo};

use super::Action;

/// Where the page stands with the server's sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Asking the server (`GET /api/session`); the socket waits for the answer.
    Checking,
    /// The server asks nobody to sign in (or could not say; the socket will tell).
    Open,
    SignedIn {
        user: String,
    },
    /// The sign-in form is shown. `error` is what went wrong last, for people;
    /// `busy` while a sign-in is on its way; `just_signed_out` when the user
    /// has just signed out here, which the form confirms (until the next try).
    SignedOut {
        error: Option<String>,
        busy: bool,
        just_signed_out: bool,
    },
}

impl Access {
    /// Whether the socket may be open: never before the server has said who
    /// may, nor while the sign-in form is shown.
    pub fn may_connect(&self) -> bool {
        matches!(self, Access::Open | Access::SignedIn { .. })
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Access::SignedIn { user } => Some(user),
            _ => None,
        }
    }

    pub fn shows_sign_in(&self) -> bool {
        matches!(self, Access::SignedOut { .. })
    }
}

/// What `GET /api/session` (or a sign-in) found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAnswer {
    Open,
    SignedIn(String),
    /// Sign-in is needed; `reason` is worth showing only when it is news
    /// (being rate-limited), not the plain "sign in first".
    SignInNeeded {
        reason: Option<String>,
    },
}

/// One answer from the sign-in API: the HTTP status, and its body as the
/// session format when it is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiReply {
    pub status: u16,
    /// `None` when the body is not the session format's JSON.
    pub session: Option<SessionInfo>,
    /// The body as text, for answers that are not JSON (a proxy's error page,
    /// the gateway's plain-text refusals).
    pub body: String,
}

impl ApiReply {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The server's reason, else its plain-text body, else the status.
    fn reason_or_status(&self) -> String {
        self.session
            .as_ref()
            .and_then(|s| s.reason.clone())
            .or_else(|| {
                let body = self.body.trim();
                (!body.is_empty() && body.len() <= 200 && !body.starts_with('<'))
                    .then(|| body.to_owned())
            })
            .unwrap_or_else(|| format!("the server answered HTTP {}", self.status))
    }
}

/// The action for the answer to `GET /api/session`.
///
/// Anything but a clear "sign in" lets the socket try: a gateway without the
/// API (404), one that failed, or no answer at all. If it does want a sign-in,
/// it closes the socket with 1008 and the form comes up then.
pub fn session_checked(reply: Result<ApiReply, String>) -> Action {
    let answer = match reply {
        Ok(r) if r.is_success() && r.session.as_ref().is_some_and(|s| s.auth) => {
            match r.session.and_then(|s| s.user) {
                Some(user) => SessionAnswer::SignedIn(user),
                None => SessionAnswer::SignInNeeded { reason: None },
            }
        }
        Ok(r) if r.status == status::UNAUTHORIZED => SessionAnswer::SignInNeeded { reason: None },
        Ok(r) if r.status == status::TOO_MANY_REQUESTS => SessionAnswer::SignInNeeded {
            reason: Some(r.reason_or_status()),
        },
        Ok(_) | Err(_) => SessionAnswer::Open,
    };
    Action::Session(answer)
}

/// The action for the answer to `POST /api/login` with `typed_user`.
pub fn signed_in(typed_user: &str, reply: Result<ApiReply, String>) -> Action {
    match reply {
        Ok(r) if r.is_success() => Action::Session(SessionAnswer::SignedIn(
            r.session
                .and_then(|s| s.user)
                .unwrap_or_else(|| typed_user.to_owned()),
        )),
        // This server has no sign-in after all (it was restarted without --auth).
        Ok(r) if r.status == status::NOT_FOUND => Action::Session(SessionAnswer::Open),
        Ok(r) => Action::SignInRefused(r.reason_or_status()),
        Err(e) => Action::SignInRefused(format!("could not reach the server: {e}")),
    }
}

/// The action for the answer to `POST /api/logout`.
pub fn signed_out(reply: Result<ApiReply, String>) -> Action {
    match reply {
        Ok(r) if r.is_success() => Action::SignedOut,
        Ok(r) => Action::SignOutFailed(r.reason_or_status()),
        Err(e) => Action::SignOutFailed(format!("could not reach the server: {e}")),
    }
}

/// What the sign-in form says after the gateway closed the socket with 1008.
pub fn policy_close_message(was_signed_in: bool, reason: &str) -> String {
    if was_signed_in {
        format!("Your session has ended: {reason}")
    } else {
        format!("The server asks you to sign in: {reason}")
    }
}

#[cfg(test)]
mod tests;
