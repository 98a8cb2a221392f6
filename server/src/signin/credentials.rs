//! The accepted credentials (`--auth basic:FILE` users, `--auth token:FILE`
//! tokens) and the checks against them.
//!
//! A password check is argon2: about 19 MiB and a core for a while. So checks
//! run on blocking threads, at most one per core at a time; an attempt that
//! finds every slot taken is refused at once (`Busy`) rather than queued, so a
//! burst of attempts costs neither memory nor threads beyond the slots.
//!
//! The files are re-read on reload ([`Credentials::read`], then
//! [`Credentials::install`]): a bad file changes nothing. A user no longer in
//! the users file loses their sessions, and one added again later does not get
//! back the sessions signed in before the removal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use password_hash::rand_core::OsRng;
use prometheus_client::metrics::counter::Counter;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::digest;
use super::tokens::unix_now;

/// Removed users remembered (each for a session lifetime), so that a name
/// added again does not revive its old sessions; past it the oldest go.
const MAX_REMOVED_USERS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error(
        "--auth {0:?}: use basic:FILE (user:argon2-hash lines) or token:FILE (one token per line)"
    )]
    Spec(String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A users file without a user would refuse every password, which is
    /// not what anyone means (a file caught truncated, a wrong path).
    #[error(
        "{0}: no users in it; add user:argon2-hash lines (made with `timecho hash-password USER`)"
    )]
    NoUsers(PathBuf),
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Where credentials come from, as given to `--auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    Basic(PathBuf),
    Token(PathBuf),
}

impl std::str::FromStr for AuthSource {
    type Err = AuthFileError;
    fn from_str(s: &str) -> Result<Self, AuthFileError> {
        match s.split_once(':') {
            Some(("basic", path)) if !path.is_empty() => Ok(AuthSource::Basic(path.into())),
            Some(("token", path)) if !path.is_empty() => Ok(AuthSource::Token(path.into())),
            _ => Err(AuthFileError::Spec(s.to_owned())),
        }
    }
}

/// Every password-check slot was taken; the attempt was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What the files say: read whole, then installed at once.
pub struct CredentialFiles {
    /// user -> argon2 PHC hash string.
    users: HashMap<String, String>,
    /// SHA-256 of each accepted token.
    tokens: Vec<[u8; 32]>,
}

impl CredentialFiles {
    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub fn tokens(&self) -> usize {
        self.tokens.len()
    }
}

struct Accepted {
    files: Arc<CredentialFiles>,
    /// user -> when they were last removed (seconds since the epoch).
    removed: HashMap<String, u64>,
}

pub struct Credentials {
    sources: Vec<AuthSource>,
    accepted: RwLock<Accepted>,
    /// How long a session lasts: a removal is remembered that long.
    session_lifetime: u64,
    /// One permit per password check that may run at once.
    check_slots: Arc<Semaphore>,
    checks: Counter,
    busy: Counter,
}

impl Credentials {
    /// Reads every source; `check_slots` password checks may run at once.
    pub fn load(
        sources: &[AuthSource],
        check_slots: usize,
        session_lifetime: std::time::Duration,
        checks: Counter,
        busy: Counter,
    ) -> Result<Credentials, AuthFileError> {
        Ok(Credentials {
            accepted: RwLock::new(Accepted {
                files: Arc::new(read(sources)?),
                removed: HashMap::new(),
            }),
            sources: sources.to_vec(),
            session_lifetime: session_lifetime.as_secs(),
            check_slots: Arc::new(Semaphore::new(check_slots.max(1))),
            checks,
            busy,
        })
    }

    /// Re-reads every source, changing nothing yet.
    pub fn read(&self) -> Result<CredentialFiles, AuthFileError> {
        read(&self.sources)
    }

    /// Accepts what `files` say from now on; returns the users who are no
    /// longer in them.
    pub fn install(&self, files: CredentialFiles) -> Vec<String> {
        let now = unix_now();
        let mut accepted = self.accepted.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = accepted
            .files
            .users
            .keys()
            .filter(|user| !files.users.contains_key(*user))
            .cloned()
            .collect();
        let lifetime = self.session_lifetime;
        accepted.removed.retain(|_, at| *at + lifetime > now);
        for user in &gone {
            if accepted.removed.len() >= MAX_REMOVED_USERS {
                let oldest = accepted
                    .removed
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(u, _)| u.clone());
                oldest.map(|u| accepted.removed.remove(&u));
            }
            accepted.removed.insert(user.clone(), now);
        }
        accepted.files = Arc::new(files);
        gone
    }

    /// Whether a session of `user` signed in at `signed_in` may go on: the
    /// user is in the users file, and was not removed from it since.
    pub fn has_session_user(&self, user: &str, signed_in: u64) -> bool {
        let accepted = self.accepted.read().unwrap_or_else(|e| e.into_inner());
        accepted.files.users.contains_key(user)
            && accepted
                .removed
                .get(user)
                .is_none_or(|removed| signed_in > *removed)
    }

    fn files(&self) -> Arc<CredentialFiles> {
        let accepted = self.accepted.read().unwrap_or_else(|e| e.into_inner());
        accepted.files.clone()
    }
}

/// Reads every source whole. A user listed twice is an error, naming both
/// places: which of the two hashes was meant is for the person to say.
fn read(sources: &[AuthSource]) -> Result<CredentialFiles, AuthFileError> {
    let mut users = HashMap::new();
    // user -> where it was first listed.
    let mut listed: HashMap<String, (&Path, usize)> = HashMap::new();
    let mut tokens = Vec::new();
    for source in sources {
        match source {
            AuthSource::Basic(path) => {
                let lines = lines(path)?;
                if lines.is_empty() {
                    return Err(AuthFileError::NoUsers(path.clone()));
                }
                for (n, line) in lines {
                    let bad = |reason: &str| AuthFileError::Line {
                        path: path.clone(),
                        line: n,
                        reason: reason.to_owned(),
                    };
                    let (user, hash) = line.split_once(':').ok_or_else(|| {
                        bad("expected user:argon2-hash (make one with `timecho hash-password`)")
                    })?;
                    PasswordHash::new(hash).map_err(|_| {
                        bad("not an argon2 hash; make one with `timecho hash-password`")
                    })?;
                    if let Some((first_path, first_line)) = listed.get(user) {
                        let place = match *first_path == path.as_path() {
                            true => format!("line {first_line}"),
                            false => format!("{}:{first_line}", first_path.display()),
                        };
                        return Err(bad(&format!(
                            "user {} is listed twice (first on {place}); keep one line per user",
                            crate::log_text::untrusted(user)
                        )));
                    }
                    listed.insert(user.to_owned(), (path, n));
                    users.insert(user.to_owned(), hash.to_owned());
                }
            }
            AuthSource::Token(path) => {
                for (_, line) in lines(path)? {
                    tokens.push(digest(line.as_bytes()));
                }
            }
        }
    }
    Ok(CredentialFiles { users, tokens })
}

impl Credentials {
    pub fn token_ok(&self, token: &str) -> bool {
        let d = digest(token.as_bytes());
        // Every entry is compared, so timing says nothing about which one matched.
        self.files()
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&d))
            .into()
    }

    /// Whether `password` is `user`'s, or `Busy` when no check slot is free.
    pub async fn password_ok(&self, user: &str, password: &str) -> Result<bool, Busy> {
        // An owned permit, moved into the blocking thread: if the request is
        // dropped mid-check (its client hung up), the slot stays taken until
        // argon2 is really done.
        let Ok(slot) = self.check_slots.clone().try_acquire_owned() else {
            self.busy.inc();
            return Err(Busy);
        };
        self.checks.inc();
        // Unknown users are checked against a dummy hash, so timing does not tell
        // which user names exist.
        let files = self.files();
        let known = files.users.get(user);
        let hash = known.map_or(DUMMY_HASH, String::as_str).to_owned();
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            let verified = PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            });
            drop(slot);
            verified
        })
        .await
        .unwrap_or(false);
        Ok(verified && known.is_some())
    }

    /// Takes every check slot, as a burst of checks would.
    #[cfg(test)]
    pub fn take_all_check_slots(&self) -> tokio::sync::OwnedSemaphorePermit {
        let all = self.check_slots.available_permits() as u32;
        self.check_slots
            .clone()
            .try_acquire_many_owned(all)
            .expect("no check is running")
    }
}

/// An argon2 hash of a random password, for unknown user names; its cost
/// parameters are argon2's defaults, the same as `hash_password`'s.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vf6S6MT1ko9oDRwAnbXJbW5rsKx2y6vkHOpCNPp+J0Y";

/// Non-empty, non-comment lines with their line numbers.
fn lines(path: &Path) -> Result<Vec<(usize, String)>, AuthFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| AuthFileError::Read(path.to_owned(), e))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect())
}

/// `timecho hash-password`: the line to put in a basic auth file.
pub fn hash_password(user: &str, password: &str) -> Result<String, password_hash::Error> {
    use argon2::PasswordHasher;
    let salt = password_hash::SaltString::generate(&mut OsRng);
    let hash = Argon2::default().hash_password(password.as_bytes(), &salt)?;
    Ok(format!("{user}:{hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(check_slots: usize) -> (Credentials, Counter, Counter) {
        let dir = std::env::temp_dir().join(format!("timecho-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        std::fs::write(&users, hash_password("ada", "lovelace").unwrap() + "\n").unwrap();
        let (checks, busy) = (Counter::default(), Counter::default());
        let c = Credentials::load(
            &[AuthSource::Basic(users)],
            check_slots,
            HOUR,
            checks.clone(),
            busy.clone(),
        )
        .unwrap();
        (c, checks, busy)
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    #[test]
    fn a_removed_user_loses_their_sessions_and_gets_none_back_when_added_again() {
        let dir = std::env::temp_dir().join(format!("timecho-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        let ada = hash_password("ada", "lovelace").unwrap();
        let alan = hash_password("alan", "turing").unwrap();
        std::fs::write(&users, format!("{ada}\n{alan}\n")).unwrap();
        let c = Credentials::load(
            &[AuthSource::Basic(users.clone())],
            1,
            HOUR,
            Counter::default(),
            Counter::default(),
        )
        .unwrap();
        let signed_in = unix_now() - 10;
        assert!(c.has_session_user("ada", signed_in));

        std::fs::write(&users, format!("{alan}\n")).unwrap();
        let files = c.read().unwrap();
        assert_eq!((files.users(), files.tokens()), (1, 0));
        assert_eq!(c.install(files), vec!["ada".to_owned()]);
        assert!(!c.has_session_user("ada", signed_in));
        assert!(c.has_session_user("alan", signed_in), "others keep theirs");

        // Back in the file: the old session stays refused, a new sign-in works.
        std::fs::write(&users, format!("{ada}\n{alan}\n")).unwrap();
        assert!(c.install(c.read().unwrap()).is_empty());
        assert!(!c.has_session_user("ada", signed_in));
        assert!(c.has_session_user("ada", unix_now() + 1));

        // A file that does not parse is reported, and installs nothing.
        std::fs::write(&users, "ada:not-a-hash\n").unwrap();
        assert!(matches!(c.read(), Err(AuthFileError::Line { line: 1, .. })));
        assert!(c.has_session_user("alan", signed_in));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash_password("ada", "lovelace").unwrap();
        let real = PasswordHash::new(real.split_once(':').unwrap().1).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
    }

    #[tokio::test]
    async fn unknown_users_are_checked_and_refused() {
        let (c, checks, _) = credentials(1);
        assert_eq!(c.password_ok("ada", "lovelace").await, Ok(true));
        assert_eq!(c.password_ok("ada", "wrong").await, Ok(false));
        assert_eq!(c.password_ok("grace", "lovelace").await, Ok(false));
        assert_eq!(checks.get(), 3);
    }

    #[tokio::test]
    async fn a_check_with_every_slot_taken_is_refused_unchecked() {
        let (c, checks, busy) = credentials(2);
        let taken = c.take_all_check_slots();
        assert_eq!(c.password_ok("ada", "lovelace").await, Err(Busy));
        assert_eq!((checks.get(), busy.get()), (0, 1));
        drop(taken);
        assert_eq!(c.password_ok("ada", "lovelace").await, Ok(true));
    }

    /// A directory of its own for one test's files.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("timecho-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn load(sources: &[AuthSource]) -> Result<Credentials, AuthFileError> {
        Credentials::load(sources, 1, HOUR, Counter::default(), Counter::default())
    }

    #[test]
    fn a_users_file_without_users_is_refused_naming_it() {
        let dir = test_dir("no-users");
        let users = dir.join("users");
        for text in ["", "\n\n", "# nobody yet\n   \n"] {
            std::fs::write(&users, text).unwrap();
            let err = load(&[AuthSource::Basic(users.clone())]).err().unwrap();
            assert!(
                matches!(&err, AuthFileError::NoUsers(p) if *p == users),
                "{err}"
            );
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("{}: no users", users.display())),
                "{shown}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_user_listed_twice_is_refused_naming_both_lines() {
        let dir = test_dir("twice");
        let (users, more) = (dir.join("users"), dir.join("more-users"));
        let ada = hash_password("ada", "lovelace").unwrap();
        let alan = hash_password("alan", "turing").unwrap();
        std::fs::write(&users, format!("{ada}\n# and\n{alan}\n{ada}\n")).unwrap();
        let err = load(&[AuthSource::Basic(users.clone())]).err().unwrap();
        assert!(
            matches!(&err, AuthFileError::Line { path, line: 4, .. } if *path == users),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4: user ada is listed twice (first on line 1); keep one line per user",
                users.display()
            )
        );

        // Across two users files, the error names both files.
        std::fs::write(&users, format!("{ada}\n")).unwrap();
        std::fs::write(&more, format!("{alan}\n{ada}\n")).unwrap();
        let err = load(&[
            AuthSource::Basic(users.clone()),
            AuthSource::Basic(more.clone()),
        ])
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: user ada is listed twice (first on {}:1); keep one line per user",
                more.display(),
                users.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_finding_no_users_or_a_user_twice_keeps_the_users_it_had() {
        let dir = test_dir("reload-users");
        let users = dir.join("users");
        let ada = hash_password("ada", "lovelace").unwrap();
        std::fs::write(&users, format!("{ada}\n")).unwrap();
        let c = load(&[AuthSource::Basic(users.clone())]).unwrap();
        let signed_in = unix_now() - 10;

        std::fs::write(&users, "").unwrap();
        assert!(matches!(c.read(), Err(AuthFileError::NoUsers(_))));
        std::fs::write(&users, format!("{ada}\n{ada}\n")).unwrap();
        assert!(matches!(c.read(), Err(AuthFileError::Line { line: 2, .. })));
        // Nothing was installed: ada's sessions go on.
        assert!(c.has_session_user("ada", signed_in));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
