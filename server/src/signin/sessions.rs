//! What this instance knows of sessions beyond their tokens: which were
//! signed out (here, or elsewhere as the session store said), and a
//! cancellation token per session that open WebSockets wait on, so a sign-out
//! seen here ends this instance's sockets at once.
//!
//! The table is keyed by the session's id (from its signed token), bounded,
//! and forgets each entry when its session could not be used anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lock;
use super::tokens::{unix_now, Claims};

struct Local {
    user: String,
    ended: CancellationToken,
    revoked: bool,
    /// When no token of this session can be valid any more (seconds since
    /// the epoch): the entry is dropped then.
    forget_after: u64,
}

/// How a session ended, for a WebSocket opened with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Signed out (here), or pushed out of a full table.
    SignedOut,
    /// The token the socket was opened with expired; the page has renewed
    /// its cookie since and reconnects with it.
    TokenExpired,
}

/// When a session ends for a socket: when `signed_out` is cancelled, or at
/// `expires`, the expiry of the token it was opened with.
pub struct SessionEnd {
    pub signed_out: CancellationToken,
    pub expires: Instant,
}

impl SessionEnd {
    /// Resolves when the session has ended, and says how.
    pub async fn ended(self) -> Ended {
        tokio::select! {
            () = self.signed_out.cancelled() => Ended::SignedOut,
            () = tokio::time::sleep_until(self.expires) => Ended::TokenExpired,
        }
    }
}

pub struct Sessions {
    table: Mutex<HashMap<[u8; 16], Local>>,
    max_sessions: usize,
    /// How long after signing in a session ends, however often renewed.
    lifetime: Duration,
}

impl Sessions {
    pub fn new(max_sessions: usize, lifetime: Duration) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            max_sessions: max_sessions.max(1),
            lifetime,
        }
    }

    /// When the session ends: `signed_in` plus the session lifetime.
    pub fn end_time(&self, claims: &Claims) -> u64 {
        claims.signed_in.saturating_add(self.lifetime.as_secs())
    }

    /// Whether `claims` may be used: signed out neither here nor by age.
    pub fn is_live(&self, claims: &Claims, now: u64) -> bool {
        now < self.end_time(claims)
            && !lock(&self.table)
                .get(&claims.session)
                .is_some_and(|l| l.revoked)
    }

    /// When the session `claims` belong to ends for a socket opened with them.
    pub fn end_of(&self, claims: &Claims) -> SessionEnd {
        let mut table = lock(&self.table);
        let local = self.entry(&mut table, claims);
        let left = claims.expires.saturating_sub(unix_now());
        SessionEnd {
            // A child: a holder that cancels its own copy ends nothing else.
            signed_out: local.ended.child_token(),
            expires: Instant::now() + Duration::from_secs(left),
        }
    }

    /// Signs the session out here: its tokens are refused from now on, and
    /// this instance's sockets opened with it close.
    pub fn end(&self, claims: &Claims) {
        let mut table = lock(&self.table);
        let local = self.entry(&mut table, claims);
        local.revoked = true;
        local.ended.cancel();
    }

    /// Signs out the session `id` here, as another instance did: only if it
    /// has an entry here (sockets, or a sign-out seen), as one it has not is
    /// refused by the store when its cookie comes.
    pub fn end_id(&self, id: &[u8; 16]) {
        if let Some(local) = lock(&self.table).get_mut(id) {
            local.revoked = true;
            local.ended.cancel();
        }
    }

    /// Closes this instance's sockets of every session of `users` (removed
    /// from the users file, whose sessions are refused from now on anyway).
    /// Returns how many sessions that ended.
    pub fn end_users(&self, users: &[String]) -> usize {
        if users.is_empty() {
            return 0;
        }
        let mut table = lock(&self.table);
        let before = table.len();
        table.retain(|_, local| {
            let gone = users.contains(&local.user);
            if gone {
                local.ended.cancel();
            }
            !gone
        });
        before - table.len()
    }

    fn entry<'t>(&self, table: &'t mut HashMap<[u8; 16], Local>, claims: &Claims) -> &'t mut Local {
        if !table.contains_key(&claims.session) {
            let now = unix_now();
            table.retain(|_, l| l.forget_after > now);
            if table.len() >= self.max_sessions {
                // Nearest to its end goes first. A revoked session pushed out
                // early is accepted again only until its tokens expire.
                let oldest = table
                    .iter()
                    .min_by_key(|(_, l)| l.forget_after)
                    .map(|(k, _)| *k);
                if let Some(local) = oldest.and_then(|k| table.remove(&k)) {
                    local.ended.cancel();
                }
            }
        }
        table.entry(claims.session).or_insert_with(|| Local {
            user: claims.user.clone(),
            ended: CancellationToken::new(),
            revoked: false,
            forget_after: self.end_time(claims),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.table).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    const HOUR: Duration = Duration::from_secs(3600);
    const TOKEN: Duration = Duration::from_secs(600);

    fn claims(user: &str) -> Claims {
        Claims::new(user, unix_now(), TOKEN)
    }

    #[tokio::test]
    async fn signing_out_refuses_the_session_and_ends_its_sockets() {
        let sessions = Sessions::new(10, HOUR);
        let ada = claims("ada");
        assert!(sessions.is_live(&ada, unix_now()));
        let end = sessions.end_of(&ada);
        assert!(!end.signed_out.is_cancelled());
        sessions.end(&ada);
        assert!(end.signed_out.is_cancelled());
        assert_eq!(end.ended().now_or_never(), Some(Ended::SignedOut));
        assert!(!sessions.is_live(&ada, unix_now()));
        let renewed = ada.renewed(unix_now(), TOKEN, sessions.end_time(&ada));
        assert!(
            !sessions.is_live(&renewed, unix_now()),
            "a renewed token too"
        );
        assert!(
            sessions.is_live(&claims("ada"), unix_now()),
            "a new sign-in is another session"
        );
    }

    #[test]
    fn a_holder_cancelling_its_token_leaves_the_session_alone() {
        let sessions = Sessions::new(10, HOUR);
        let ada = claims("ada");
        sessions.end_of(&ada).signed_out.cancel();
        assert!(!sessions.end_of(&ada).signed_out.is_cancelled());
        assert!(sessions.is_live(&ada, unix_now()));
    }

    #[test]
    fn a_session_ends_a_lifetime_after_sign_in() {
        let sessions = Sessions::new(10, HOUR);
        let ada = claims("ada");
        let end = ada.signed_in + HOUR.as_secs();
        assert_eq!(sessions.end_time(&ada), end);
        assert!(sessions.is_live(&ada, end - 1));
        assert!(!sessions.is_live(&ada, end));
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_ends_when_its_token_expires() {
        let sessions = Sessions::new(10, HOUR);
        let end = sessions.end_of(&claims("ada"));
        let ended = tokio::spawn(end.ended());
        tokio::time::sleep(TOKEN - Duration::from_secs(2)).await;
        assert!(!ended.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(ended.await.unwrap(), Ended::TokenExpired);
    }

    #[test]
    fn a_full_table_pushes_out_the_session_nearest_its_end() {
        let sessions = Sessions::new(2, HOUR);
        let mut first = claims("ada");
        first.signed_in -= 10;
        let first_end = sessions.end_of(&first);
        let second = claims("grace");
        sessions.end(&second);
        sessions.end_of(&claims("alan"));
        assert_eq!(sessions.len(), 2);
        assert!(first_end.signed_out.is_cancelled());
        assert!(!sessions.is_live(&second, unix_now()), "still signed out");
    }

    #[test]
    fn a_sign_out_heard_from_elsewhere_ends_the_sockets_here() {
        let sessions = Sessions::new(10, HOUR);
        let ada = claims("ada");
        let end = sessions.end_of(&ada);
        sessions.end_id(&claims("grace").session);
        assert_eq!(sessions.len(), 1, "no entry for a session unknown here");
        sessions.end_id(&ada.session);
        assert!(end.signed_out.is_cancelled());
        assert!(!sessions.is_live(&ada, unix_now()));
    }

    #[test]
    fn removing_a_user_ends_their_sockets_and_nobody_elses() {
        let sessions = Sessions::new(10, HOUR);
        let ada = sessions.end_of(&claims("ada"));
        let ada_again = sessions.end_of(&claims("ada"));
        let alan = sessions.end_of(&claims("alan"));
        assert_eq!(sessions.end_users(&["ada".to_owned()]), 2);
        assert!(ada.signed_out.is_cancelled() && ada_again.signed_out.is_cancelled());
        assert!(!alan.signed_out.is_cancelled());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions.end_users(&[]), 0);
    }

    #[test]
    fn sessions_past_their_end_are_forgotten() {
        let sessions = Sessions::new(10, HOUR);
        let mut old = claims("ada");
        old.signed_in -= HOUR.as_secs();
        sessions.end(&old);
        sessions.end_of(&claims("grace"));
        assert_eq!(sessions.len(), 1);
    }
}
