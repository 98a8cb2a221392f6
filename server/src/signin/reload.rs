//! Re-reading sign-in's files (SIGHUP): the session key, the users and the
//! tokens, all or nothing, so that a file caught half-written or mistyped
//! leaves the running state as it was.

use std::fmt;

use super::{Auth, AuthError};

/// What a reload changed, for the caller's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub key: KeyReload,
    /// Users and tokens accepted from now on.
    pub users: usize,
    pub tokens: usize,
    /// Users no longer in the users file: their sessions are refused.
    pub removed_users: usize,
    /// Of their sessions, those with a socket open here, now closed.
    pub sessions_ended: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReload {
    /// No `--session-key` file: the process's random key stays.
    NoFile,
    Unchanged,
    /// A new key signs from now on; the previous one is accepted for one
    /// token lifetime.
    Replaced,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            KeyReload::NoFile => "no session key file",
            KeyReload::Unchanged => "session key unchanged",
            KeyReload::Replaced => {
                "session key replaced (the previous one is accepted for one token lifetime)"
            }
        };
        write!(
            f,
            "{key}, users reloaded ({}), tokens reloaded ({})",
            self.users, self.tokens
        )?;
        if self.removed_users > 0 {
            write!(
                f,
                ", {} user(s) removed: their sessions are refused ({} open here ended)",
                self.removed_users, self.sessions_ended
            )?;
        }
        Ok(())
    }
}

impl Auth {
    /// Re-reads the session key file, the users files and the tokens files.
    /// Everything is read before anything changes: on an error nothing does,
    /// and the error names the file. Sessions of users no longer in the users
    /// file are refused from now on and their sockets here close.
    pub fn reload(&self) -> Result<ReloadReport, AuthError> {
        let key = self.keys.read()?;
        let files = self.credentials.read()?;
        let (users, tokens) = (files.users(), files.tokens());
        let key = match key {
            None => KeyReload::NoFile,
            Some(key) => match self.keys.install(key) {
                true => KeyReload::Replaced,
                false => KeyReload::Unchanged,
            },
        };
        let removed = self.credentials.install(files);
        let sessions_ended = self.sessions.end_users(&removed);
        Ok(ReloadReport {
            key,
            users,
            tokens,
            removed_users: removed.len(),
            sessions_ended,
        })
    }
}
