//! Signed session tokens: a sign-in made on one instance is honoured by every
//! instance that shares the key (`--session-key FILE`), with nothing shared
//! but that file.
//!
//! A token names its session (a random id), its user, when the person signed
//! in and when the token expires, and carries an HMAC-SHA256 of all that. It
//! lives only [`TOKEN_LIFETIME`]: the page renews it while it is open, and a
//! sign-out (which only the instance that sees it can record) is honoured
//! everywhere once the last token handed out has expired. SIGHUP re-reads the
//! key file; the previous key is still accepted for one session lifetime.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use password_hash::rand_core::{OsRng, RngCore};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted from a file: 256 bits, as HMAC-SHA256 wants.
const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the session key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(
        "the session key {0} holds {1} bytes; it needs at least {MIN_KEY_BYTES} \
         (make one with: head -c 32 /dev/urandom | base64 > {0})"
    )]
    Short(PathBuf, usize),
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    pub session: [u8; 16],
    /// When the person signed in (seconds since the epoch): the session ends
    /// a session lifetime after this, however often its token is renewed.
    pub signed_in: u64,
    /// When this token stops being accepted (seconds since the epoch).
    pub expires: u64,
}

impl Claims {
    /// A new session for `user`, signed in `now`.
    pub fn new(user: &str, now: u64, token_lifetime: Duration) -> Claims {
        let mut session = [0u8; 16];
        OsRng.fill_bytes(&mut session);
        Claims {
            user: user.to_owned(),
            session,
            signed_in: now,
            expires: now + token_lifetime.as_secs(),
        }
    }

    /// The same session with a fresh expiry, never past the session's end.
    pub fn renewed(&self, now: u64, token_lifetime: Duration, session_end: u64) -> Claims {
        Claims {
            expires: (now + token_lifetime.as_secs()).min(session_end),
            ..self.clone()
        }
    }
}

/// The signing keys: the current one, and the one before it while its tokens
/// may still be in use.
pub struct SessionKeys {
    source: Option<PathBuf>,
    /// How long a replaced key is still accepted.
    grace: Duration,
    keys: RwLock<Keys>,
}

struct Keys {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, SystemTime)>,
}

impl SessionKeys {
    /// The key in `path`, or a random one for this process alone (sessions
    /// then end when it stops, and other instances do not accept them).
    pub fn load(path: Option<&Path>, grace: Duration) -> Result<SessionKeys, KeyError> {
        let current = match path {
            Some(path) => read_key(path)?,
            None => {
                let mut key = vec![0u8; MIN_KEY_BYTES];
                OsRng.fill_bytes(&mut key);
                key
            }
        };
        Ok(SessionKeys {
            source: path.map(Path::to_owned),
            grace,
            keys: RwLock::new(Keys {
                current,
                previous: None,
            }),
        })
    }

    /// The key file, if the keys come from one (and so can be reloaded).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Re-reads the key file; a changed key becomes current and the old one
    /// is accepted for the grace period. Returns whether the key changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.source else {
            return Ok(false);
        };
        let key = read_key(path)?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if key == keys.current {
            return Ok(false);
        }
        let old = std::mem::replace(&mut keys.current, key);
        keys.previous = Some((old, SystemTime::now() + self.grace));
        Ok(true)
    }

    /// The token for `claims`, signed with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = format!(
            "{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(claims.session),
            claims.signed_in,
            claims.expires,
            URL_SAFE_NO_PAD.encode(&claims.user),
        );
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let tag = mac(&keys.current, &payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of `token` if a key we accept signed it and it has not
    /// expired at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Option<Claims> {
        let (payload, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let signed_by = |key: &[u8]| mac(key, payload).verify_slice(&tag).is_ok();
        let accepted = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            signed_by(&keys.current)
                || keys
                    .previous
                    .as_ref()
                    .is_some_and(|(key, until)| SystemTime::now() < *until && signed_by(key))
        };
        if !accepted {
            return None;
        }
        let mut fields = payload.split('.');
        let session = URL_SAFE_NO_PAD.decode(fields.next()?).ok()?;
        let signed_in = fields.next()?.parse().ok()?;
        let expires = fields.next()?.parse().ok()?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(fields.next()?).ok()?).ok()?;
        if fields.next().is_some() || expires <= now {
            return None;
        }
        Some(Claims {
            user,
            session: session.try_into().ok()?,
            signed_in,
            expires,
        })
    }
}

fn mac(key: &[u8], payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    mac
}

fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = std::fs::read(path).map_err(|e| KeyError::Read(path.to_owned(), e))?;
    let key = bytes.trim_ascii().to_vec();
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::Short(path.to_owned(), key.len()));
    }
    Ok(key)
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES: Duration = Duration::from_secs(600);
    const HOUR: Duration = Duration::from_secs(3600);

    fn key_file(name: &str, key: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("timecho-session-key-{}-{name}", std::process::id()));
        std::fs::write(&path, key).unwrap();
        path
    }

    #[test]
    fn a_token_says_who_until_when_and_nothing_else_passes() {
        let keys = SessionKeys::load(None, HOUR).unwrap();
        let claims = Claims::new("ada.l@example", 1_000, MINUTES);
        assert_eq!(claims.expires, 1_600);
        let token = keys.sign(&claims);
        assert_eq!(keys.verify(&token, 1_000), Some(claims.clone()));
        assert_eq!(
            keys.verify(&token, 1_599).map(|c| c.user),
            Some("ada.l@example".into())
        );
        assert_eq!(keys.verify(&token, 1_600), None, "expired");
        // Any change to what is signed, or to the signature, is refused.
        let (payload, tag) = token.rsplit_once('.').unwrap();
        let longer = payload.replace(".1600.", ".9600.");
        assert_eq!(keys.verify(&format!("{longer}.{tag}"), 1_000), None);
        assert_eq!(
            keys.verify(&format!("{payload}.{}", &tag[1..]), 1_000),
            None
        );
        assert_eq!(keys.verify(payload, 1_000), None);
        assert_eq!(keys.verify("", 1_000), None);
        // Another process's random key signed nothing of ours.
        let other = SessionKeys::load(None, HOUR).unwrap();
        assert_eq!(other.verify(&token, 1_000), None);
    }

    #[test]
    fn instances_sharing_a_key_file_accept_each_others_tokens() {
        let path = key_file("shared", "0123456789abcdef0123456789abcdef\n");
        let a = SessionKeys::load(Some(&path), HOUR).unwrap();
        let b = SessionKeys::load(Some(&path), HOUR).unwrap();
        let claims = Claims::new("ada", 1_000, MINUTES);
        assert_eq!(b.verify(&a.sign(&claims), 1_001), Some(claims));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_short_key_file_is_refused_naming_the_fix() {
        let path = key_file("short", "too short\n");
        let err = SessionKeys::load(Some(&path), HOUR)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("needs at least 32") && err.contains("/dev/urandom"),
            "{err}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn after_a_rotation_the_previous_key_is_accepted_for_the_grace_period() {
        let path = key_file("rotate", &"a".repeat(32));
        let keys = SessionKeys::load(Some(&path), HOUR).unwrap();
        let claims = Claims::new("ada", unix_now(), MINUTES);
        let old = keys.sign(&claims);
        assert!(!keys.reload().unwrap(), "same key: no rotation");
        std::fs::write(&path, "b".repeat(32)).unwrap();
        assert!(keys.reload().unwrap());
        let new = keys.sign(&claims);
        assert_ne!(old, new, "signed with the new key");
        assert!(
            keys.verify(&old, unix_now()).is_some(),
            "old key in its grace"
        );
        assert!(keys.verify(&new, unix_now()).is_some());

        // With no grace at all, the old key's tokens are refused at once.
        let strict = SessionKeys::load(Some(&path), Duration::ZERO).unwrap();
        std::fs::write(&path, "c".repeat(32)).unwrap();
        let before = strict.sign(&claims);
        assert!(strict.reload().unwrap());
        assert!(strict.verify(&before, unix_now()).is_none());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn renewal_keeps_the_session_and_stops_at_its_end() {
        let claims = Claims::new("ada", 1_000, MINUTES);
        let renewed = claims.renewed(1_500, MINUTES, 1_000 + 3_600);
        assert_eq!(
            (renewed.session, renewed.signed_in),
            (claims.session, 1_000)
        );
        assert_eq!(renewed.expires, 2_100);
        assert_eq!(claims.renewed(4_500, MINUTES, 4_600).expires, 4_600);
    }
}
