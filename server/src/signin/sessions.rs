//! Who is signed in: the table of sessions the page's cookie refers to.
//!
//! Sessions are looked up by the SHA-256 of their id, so the table never holds
//! a usable cookie. The table is bounded (the oldest sign-in goes first). Each
//! session has a cancellation token, cancelled when the session is ended
//! (signed out or evicted), which open WebSockets wait on together with the
//! expiry time instead of asking the table at every ping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use password_hash::rand_core::{OsRng, RngCore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{digest, lock};

struct Session {
    user: String,
    expires: Instant,
    ended: CancellationToken,
}

/// When a session ends: when `signed_out` is cancelled, or at `expires`.
pub struct SessionEnd {
    pub signed_out: CancellationToken,
    pub expires: Instant,
}

impl SessionEnd {
    /// Resolves when the session has ended, whichever way.
    pub async fn ended(self) {
        tokio::select! {
            () = self.signed_out.cancelled() => {}
            () = tokio::time::sleep_until(self.expires) => {}
        }
    }
}

pub struct Sessions {
    /// SHA-256 of the session id -> session.
    table: Mutex<HashMap<[u8; 32], Session>>,
    max_sessions: usize,
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

    /// Signs `user` in; returns the new session's id, for the cookie.
    pub fn start(&self, user: &str) -> String {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        let now = Instant::now();
        let mut table = lock(&self.table);
        table.retain(|_, s| {
            let live = s.expires > now;
            if !live {
                s.ended.cancel();
            }
            live
        });
        if table.len() >= self.max_sessions {
            // Oldest sign-ins go first; they are the nearest to expiring anyway.
            let oldest = table.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(session) = oldest.and_then(|k| table.remove(&k)) {
                session.ended.cancel();
            }
        }
        table.insert(
            digest(id.as_bytes()),
            Session {
                user: user.to_owned(),
                expires: now + self.lifetime,
                ended: CancellationToken::new(),
            },
        );
        id
    }

    /// The user of the live session `id`, if there is one.
    pub fn user(&self, id: &str) -> Option<String> {
        let table = lock(&self.table);
        let s = table.get(&digest(id.as_bytes()))?;
        (s.expires > Instant::now()).then(|| s.user.clone())
    }

    /// When the live session `id` will end, for whoever must stop then.
    pub fn end_of(&self, id: &str) -> Option<SessionEnd> {
        let table = lock(&self.table);
        let s = table.get(&digest(id.as_bytes()))?;
        (s.expires > Instant::now()).then(|| SessionEnd {
            // A child: a holder that cancels its own copy ends nothing else.
            signed_out: s.ended.child_token(),
            expires: s.expires,
        })
    }

    /// Signs session `id` out, ending everything that waits on it.
    pub fn end(&self, id: &str) {
        if let Some(session) = lock(&self.table).remove(&digest(id.as_bytes())) {
            session.ended.cancel();
        }
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

    #[tokio::test]
    async fn signing_out_ends_the_session_and_cancels_its_token() {
        let sessions = Sessions::new(10, HOUR);
        let id = sessions.start("ada");
        assert_eq!(sessions.user(&id).as_deref(), Some("ada"));
        let end = sessions.end_of(&id).expect("a live session");
        assert!(!end.signed_out.is_cancelled());
        sessions.end(&id);
        assert!(end.signed_out.is_cancelled());
        assert!(end.ended().now_or_never().is_some());
        assert_eq!(sessions.user(&id), None);
        assert!(sessions.end_of(&id).is_none());
    }

    #[test]
    fn a_holder_cancelling_its_token_leaves_the_session_alone() {
        let sessions = Sessions::new(10, HOUR);
        let id = sessions.start("ada");
        sessions.end_of(&id).unwrap().signed_out.cancel();
        assert!(!sessions.end_of(&id).unwrap().signed_out.is_cancelled());
        assert_eq!(sessions.user(&id).as_deref(), Some("ada"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_its_expiry() {
        let sessions = Sessions::new(10, HOUR);
        let id = sessions.start("ada");
        let end = sessions.end_of(&id).unwrap();
        let ended = tokio::spawn(end.ended());
        tokio::time::sleep(HOUR - Duration::from_secs(1)).await;
        assert!(!ended.is_finished());
        assert_eq!(sessions.user(&id).as_deref(), Some("ada"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        ended.await.unwrap();
        assert_eq!(sessions.user(&id), None);
        assert!(sessions.end_of(&id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_the_oldest_sign_in_and_ends_it() {
        let sessions = Sessions::new(2, HOUR);
        let first = sessions.start("ada");
        let first_end = sessions.end_of(&first).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = sessions.start("grace");
        tokio::time::advance(Duration::from_secs(1)).await;
        let third = sessions.start("alan");
        assert_eq!(sessions.len(), 2);
        assert!(first_end.signed_out.is_cancelled());
        assert_eq!(sessions.user(&first), None);
        assert_eq!(sessions.user(&second).as_deref(), Some("grace"));
        assert_eq!(sessions.user(&third).as_deref(), Some("alan"));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_are_dropped_and_cancelled_at_the_next_sign_in() {
        let sessions = Sessions::new(10, HOUR);
        let old = sessions.start("ada");
        let old_end = sessions.end_of(&old).unwrap();
        tokio::time::advance(HOUR).await;
        sessions.start("grace");
        assert_eq!(sessions.len(), 1);
        assert!(old_end.signed_out.is_cancelled());
    }
}
