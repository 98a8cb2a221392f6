//! Signed session tokens: a sign-in made on one instance is honoured by every
//! instance that shares the key (`--session-key FILE`), with nothing shared
//! but that file.
//!
//! A token names its session (a random id), its user, when the person signed
//! in and when the token expires, and carries an HMAC-SHA256 of all that. It
//! lives only `--token-lifetime`: the page renews it while it is open. A token
//! is taken only as far as it could have been made by an honest instance: not
//! expiring more than one token lifetime from now, not signed in in the future
//! (both beyond [`CLOCK_SKEW`]), so a leaked key cannot mint tokens that
//! outlive its rotation. SIGHUP re-reads the key file; the previous key is
//! still accepted while tokens it signed can be live: one token lifetime (and
//! the skew), after which a leaked old key opens nothing.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use password_hash::rand_core::{OsRng, RngCore};
use sha2::Sha256;

use super::key_strength::{self, Weak};

type HmacSha256 = Hmac<Sha256>;

/// Size of the random key of a process without a key file: 256 bits, as
/// HMAC-SHA256 wants.
const RANDOM_KEY_BYTES: usize = 32;
/// How far another instance's clock may be ahead of ours: its tokens may be
/// signed in, or expire, this much later than ours would.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the session key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(
        "the session key {0} is too weak: {1} (make one with: \
         head -c 32 /dev/urandom | base64 > {0})"
    )]
    Weak(PathBuf, Weak),
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
    /// How long one token is accepted; a replaced key is accepted that long
    /// (and the skew) after the rotation.
    token_lifetime: Duration,
    keys: RwLock<Keys>,
}

struct Keys {
    current: Vec<u8>,
    /// The replaced key and until when (seconds since the epoch) it is accepted.
    previous: Option<(Vec<u8>, u64)>,
}

impl SessionKeys {
    /// The key in `path`, or a random one for this process alone (sessions
    /// then end when it stops, and other instances do not accept them).
    pub fn load(path: Option<&Path>, token_lifetime: Duration) -> Result<SessionKeys, KeyError> {
        let current = match path {
            Some(path) => read_key(path)?,
            None => {
                let mut key = vec![0u8; RANDOM_KEY_BYTES];
                OsRng.fill_bytes(&mut key);
                key
            }
        };
        Ok(SessionKeys {
            source: path.map(Path::to_owned),
            token_lifetime,
            keys: RwLock::new(Keys {
                current,
                previous: None,
            }),
        })
    }

    /// Re-reads the key file, changing nothing yet: `None` without one.
    pub fn read(&self) -> Result<Option<Vec<u8>>, KeyError> {
        self.source.as_deref().map(read_key).transpose()
    }

    /// Makes `key` (from [`SessionKeys::read`]) current; the replaced one is
    /// accepted while its tokens can be live. Returns whether the key changed.
    pub fn install(&self, key: Vec<u8>) -> bool {
        self.install_at(key, unix_now())
    }

    fn install_at(&self, key: Vec<u8>, now: u64) -> bool {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if key == keys.current {
            return false;
        }
        let old = std::mem::replace(&mut keys.current, key);
        let grace = self.token_lifetime + CLOCK_SKEW;
        keys.previous = Some((old, now + grace.as_secs()));
        true
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

    /// The claims of `token` if a key we accept signed it, it has not expired
    /// at `now` (seconds since the epoch), and it could have been made by an
    /// instance whose clock is within the skew of ours.
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
                    .is_some_and(|(key, until)| now < *until && signed_by(key))
        };
        if !accepted {
            return None;
        }
        let mut fields = payload.split('.');
        let session = URL_SAFE_NO_PAD.decode(fields.next()?).ok()?;
        let signed_in = fields.next()?.parse().ok()?;
        let expires = fields.next()?.parse().ok()?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(fields.next()?).ok()?).ok()?;
        let skew = CLOCK_SKEW.as_secs();
        let latest_expiry = now + self.token_lifetime.as_secs() + skew;
        if fields.next().is_some()
            || expires <= now
            || expires > latest_expiry
            || signed_in > now + skew
        {
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
    // The key is used as written (base64 or hex text is not decoded), so
    // that every instance and every release signs with the same bytes.
    let key = bytes.trim_ascii().to_vec();
    key_strength::check(&key).map_err(|weak| KeyError::Weak(path.to_owned(), weak))?;
    Ok(key)
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    const MINUTES: Duration = Duration::from_secs(600);
    const SKEW: u64 = CLOCK_SKEW.as_secs();

    /// A key made the README's way: 32 random bytes in base64.
    pub fn strong_key() -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes) + "\n"
    }

    fn key_file(name: &str, key: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("timecho-session-key-{}-{name}", std::process::id()));
        std::fs::write(&path, key).unwrap();
        path
    }

    #[test]
    fn a_token_says_who_until_when_and_nothing_else_passes() {
        let keys = SessionKeys::load(None, MINUTES).unwrap();
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
        let other = SessionKeys::load(None, MINUTES).unwrap();
        assert_eq!(other.verify(&token, 1_000), None);
    }

    #[test]
    fn tokens_from_the_future_are_refused_beyond_the_clock_skew() {
        let keys = SessionKeys::load(None, MINUTES).unwrap();
        let now = 10_000;
        let life = MINUTES.as_secs();
        let token = |signed_in: u64, expires: u64| {
            keys.sign(&Claims {
                user: "ada".into(),
                session: [7; 16],
                signed_in,
                expires,
            })
        };
        // Expiring later than a token made now could: refused past the skew.
        assert!(keys.verify(&token(now, now + life + SKEW), now).is_some());
        assert!(keys
            .verify(&token(now, now + life + SKEW + 1), now)
            .is_none());
        assert!(keys
            .verify(&token(now - 60, now + 100 * life), now)
            .is_none());
        // Signed in in the future: refused past the skew.
        assert!(keys.verify(&token(now + SKEW, now + life), now).is_some());
        assert!(keys
            .verify(&token(now + SKEW + 1, now + life), now)
            .is_none());
    }

    #[test]
    fn instances_sharing_a_key_file_accept_each_others_tokens() {
        let path = key_file("shared", &strong_key());
        let a = SessionKeys::load(Some(&path), MINUTES).unwrap();
        let b = SessionKeys::load(Some(&path), MINUTES).unwrap();
        let claims = Claims::new("ada", 1_000, MINUTES);
        assert_eq!(b.verify(&a.sign(&claims), 1_001), Some(claims));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_weak_key_file_is_refused_naming_the_fix() {
        for (name, weak) in [("short", "too short\n"), ("aaaa", &"a".repeat(32))] {
            let path = key_file(name, weak);
            let err = SessionKeys::load(Some(&path), MINUTES)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("too weak") && err.contains("/dev/urandom"),
                "{err}"
            );
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn after_a_rotation_the_previous_key_is_accepted_one_token_lifetime() {
        let old_key = strong_key();
        let path = key_file("rotate", &old_key);
        let keys = SessionKeys::load(Some(&path), MINUTES).unwrap();
        // What a holder of the old key can sign, at any time.
        let leaked = SessionKeys::load(Some(&path), MINUTES).unwrap();
        assert!(
            !keys.install(keys.read().unwrap().unwrap()),
            "same key: no rotation"
        );

        let rotated = 50_000;
        std::fs::write(&path, strong_key()).unwrap();
        assert!(keys.install_at(keys.read().unwrap().unwrap(), rotated));
        let life = MINUTES.as_secs();
        let made_at = |now: u64| Claims::new("ada", now, MINUTES);
        // Tokens the old key signed before the rotation live out their lifetime...
        let before = made_at(rotated - 1);
        let old = leaked.sign(&before);
        assert_ne!(
            keys.sign(&before),
            old,
            "new tokens are signed with the new key"
        );
        assert!(keys.verify(&old, before.expires - 1).is_some());
        // ...and the old key is accepted for as long as such a token can be
        // live (one lifetime and the skew), never after.
        let last = rotated + life + SKEW - 1;
        assert!(keys.verify(&leaked.sign(&made_at(last)), last).is_some());
        let after = rotated + life + SKEW;
        assert!(keys.verify(&leaked.sign(&made_at(after)), after).is_none());
        assert!(keys.verify(&keys.sign(&made_at(after)), after).is_some());
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
