//! `--session-store redis://HOST:PORT[/DB]`: checked where it enters, so a
//! mistyped URL stops start-up with a message naming the flag, and shown
//! everywhere without the password it may carry.

use std::str::FromStr;

use timecho_shared::host_port::HostPort;

/// Redis's own port, for a URL that names none.
const DEFAULT_PORT: u16 = 6379;

#[derive(Debug, thiserror::Error)]
#[error("--session-store {given:?}: {why} (expected redis://HOST:PORT or redis://HOST:PORT/DB)")]
pub struct StoreUrlError {
    given: String,
    why: String,
}

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, checked at start-up. Shown
/// (logs, errors) without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// As given to the client: it may hold a password.
    pub(super) url: String,
    /// Without the password.
    pub(super) shown: String,
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({})", self.shown)
    }
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(given: &str) -> Result<StoreUrl, StoreUrlError> {
        let bad = |why: &str| StoreUrlError {
            given: redact(given),
            why: why.to_owned(),
        };
        let Some(rest) = given.strip_prefix("redis://") else {
            return Err(bad(if given.starts_with("rediss://") {
                "TLS to the store is not supported; reach it over a trusted network with redis://"
            } else {
                "not a redis:// URL"
            }));
        };
        if rest.contains(['?', '#']) {
            return Err(bad("options (?...) are not supported"));
        }
        let (user_info, rest) = match rest.rsplit_once('@') {
            Some((user_info, rest)) => (Some(user_info), rest),
            None => (None, rest),
        };
        let (host_port, db) = rest.split_once('/').unwrap_or((rest, ""));
        if host_port.is_empty() {
            return Err(bad("it names no host"));
        }
        let host_port =
            HostPort::parse_or_port(host_port, DEFAULT_PORT).map_err(|e| bad(&e.to_string()))?;
        if host_port.port == 0 {
            return Err(bad("port 0 is no server's port"));
        }
        let db: u32 = match db {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the database after / must be a number"))?,
        };
        let shown = format!("redis://{host_port}/{db}");
        let url = match user_info {
            Some(user_info) => format!("redis://{user_info}@{host_port}/{db}"),
            None => shown.clone(),
        };
        redis::Client::open(url.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(StoreUrl { url, shown })
    }
}

/// `given` without the password it may carry, for an error message.
fn redact(given: &str) -> String {
    match given.rsplit_once('@') {
        Some((_, host)) => format!("redis://***@{host}"),
        None => given.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<String, String> {
        url.parse::<StoreUrl>()
            .map(|u| u.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn store_urls_are_checked_and_shown_without_their_password() {
        assert_eq!(
            parse("redis://127.0.0.1:6380"),
            Ok("redis://127.0.0.1:6380/0".into())
        );
        assert_eq!(
            parse("redis://cache.internal/3"),
            Ok("redis://cache.internal:6379/3".into())
        );
        assert_eq!(
            parse("redis://[::1]:7000/"),
            Ok("redis://[::1]:7000/0".into())
        );
        let secret = "redis://:hunter2@10.0.0.5:6379/1";
        assert_eq!(parse(secret), Ok("redis://10.0.0.5:6379/1".into()));
        assert!(!format!("{:?}", secret.parse::<StoreUrl>().unwrap()).contains("hunter2"));
        for (bad, why) in [
            ("127.0.0.1:6379", "not a redis:// URL"),
            ("rediss://127.0.0.1:6379", "TLS"),
            ("redis://", "no host"),
            ("redis://127.0.0.1:0", "port 0"),
            ("redis://127.0.0.1:99999", "HOST:PORT"),
            ("redis://127.0.0.1:6379/zero", "must be a number"),
            ("redis://127.0.0.1:6379/0?protocol=resp3", "options"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("--session-store"),
                "{bad}: {err}"
            );
        }
        let err = parse("redis://:hunter2@127.0.0.1:x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
