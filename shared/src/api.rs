//! The gateway's HTTP API (`/api/...`) as one contract: the server writes
//! these bodies and the page reads them, so a path, a field or a status named
//! here cannot drift between the two.
//!
//! The bodies derive serde's traits behind the `serde` feature (on by
//! default; the workspace dependency turns it off): the server writes them
//! with serde_json, the page reads them from the browser's `JSON.parse` with
//! serde-wasm-bindgen. A field's name is its JSON key, so renaming one is a
//! change of the contract, which the tests below show as such.

use crate::relay::subprotocol;
use crate::stamp::{Precision, StampError, StampFormat, TimeFormat};

/// Where each endpoint lives.
pub mod path {
    /// `GET`: whether sign-in is on and who is signed in ([`super::SessionInfo`]).
    pub const SESSION: &str = "/api/session";
    /// `POST` a [`super::LoginRequest`]: sets the session cookie, answers a
    /// [`super::SessionInfo`].
    pub const LOGIN: &str = "/api/login";
    /// `POST`: ends the session and clears its cookie; `204` and no body.
    pub const LOGOUT: &str = "/api/logout";
    /// `GET`, no sign-in needed: the server's limits and stamp layout
    /// ([`super::ServerConfig`]).
    pub const CONFIG: &str = "/api/config";
}

/// The statuses with a meaning of their own to a client of the API; any other
/// failure carries its reason in the body, as JSON (`reason`) or plain text.
/// Response headers of the gateway's HTTP listener.
pub mod header {
    /// On every HTTP answer: the `--instance` that answered (behind a
    /// balancer, which of several it was). Also in [`super::ServerConfig`].
    pub const INSTANCE: &str = "x-timecho-instance";
}

pub mod status {
    /// Sign in first (`/api/session`), or the user name or password was
    /// wrong (`/api/login`).
    pub const UNAUTHORIZED: u16 = 401;
    /// `/api/login` on a server without sign-in.
    pub const NOT_FOUND: u16 = 404;
    /// Too many password attempts from this client; the reason says so.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// Every password check is taken; the same attempt may be sent again
    /// (`Retry-After: 1`).
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// The answer to `/api/session` and `/api/login`, and the body of every
/// sign-in refusal (401, 429, 503), whose `reason` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionInfo {
    /// Whether this server asks people to sign in.
    pub auth: bool,
    /// Who is signed in, if anyone.
    pub user: Option<String>,
    /// Why not, when someone is not: meant for people.
    pub reason: Option<String>,
}

/// The body of `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// The answer to `GET /api/config`: what a client must know of the server's
/// settings to talk to it, which the page would otherwise have to guess.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerConfig {
    /// `--max-line`: the longest line the timestamp server answers.
    pub max_line: usize,
    /// The largest WebSocket message the gateway takes; a longer one ends the
    /// session with close code 1009.
    pub max_frame: usize,
    pub stamp: StampInfo,
    /// The WebSocket subprotocols `/ws` speaks, in the order it prefers them.
    pub subprotocols: Vec<String>,
    /// Whether `/ws` and the page need a sign-in (`--auth`).
    pub auth: bool,
    /// With sign-in on: how often (seconds) an open page asks `/api/session`
    /// again, which renews its sign-in token (a third of `--token-lifetime`).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub renew_every_seconds: Option<u64>,
    /// `--instance`: which server answered (the host name unless named), so
    /// that behind a balancer a person can tell instances apart. Absent from
    /// a gateway that predates it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub instance: Option<String>,
}

impl ServerConfig {
    /// The answer for these settings. The gateway speaks every subprotocol
    /// in [`subprotocol::SUPPORTED`].
    pub fn new(max_line: usize, max_frame: usize, stamp: StampInfo, auth: bool) -> ServerConfig {
        ServerConfig {
            max_line,
            max_frame,
            stamp,
            subprotocols: subprotocol::SUPPORTED.map(str::to_owned).to_vec(),
            auth,
            renew_every_seconds: None,
            instance: None,
        }
    }

    /// The longest text message a client may send in one frame: it must fit
    /// the gateway's frame limit and, as one line, the server's line limit.
    pub fn max_message(&self) -> usize {
        self.max_line.min(self.max_frame)
    }
}

/// How the server writes its stamps, in the words of its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StampInfo {
    /// As `--time-format` takes it: `ctime`, `rfc3339`, `unix`, or a strftime
    /// pattern.
    pub format: String,
    /// As `--precision` takes it: `s`, `ms` or `us`.
    pub precision: String,
    /// `--utc`: stamps are in UTC; otherwise in the server's local zone.
    pub utc: bool,
    /// The zone's offset east of UTC when the answer was written (0 under
    /// `--utc`). A local zone's offset changes with daylight saving time.
    pub utc_offset_seconds: i32,
}

impl StampInfo {
    /// Describes `stamp`; `local_offset_seconds` is the local zone's current
    /// offset, ignored for UTC stamps.
    pub fn new(stamp: &StampFormat, local_offset_seconds: i32) -> StampInfo {
        StampInfo {
            format: format_name(&stamp.format).to_owned(),
            precision: precision_name(stamp.precision).to_owned(),
            utc: stamp.utc,
            utc_offset_seconds: if stamp.utc { 0 } else { local_offset_seconds },
        }
    }

    /// The layout back, read with the same parsers as the flags.
    pub fn stamp_format(&self) -> Result<StampFormat, StampError> {
        Ok(StampFormat {
            format: self.format.parse()?,
            precision: self.precision.parse()?,
            utc: self.utc,
        })
    }
}

/// The `--time-format` value that selects `format`.
pub fn format_name(format: &TimeFormat) -> &str {
    match format {
        TimeFormat::Ctime => "ctime",
        TimeFormat::Rfc3339 => "rfc3339",
        TimeFormat::Unix => "unix",
        TimeFormat::Strftime(pattern) => pattern,
    }
}

/// The `--precision` value that selects `precision`.
pub fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Seconds => "s",
        Precision::Millis => "ms",
        Precision::Micros => "us",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(format: TimeFormat, precision: Precision, utc: bool) -> StampFormat {
        StampFormat {
            format,
            precision,
            utc,
        }
    }

    #[test]
    fn every_format_and_precision_reads_back_as_itself() {
        let formats = [
            TimeFormat::Ctime,
            TimeFormat::Rfc3339,
            TimeFormat::Unix,
            TimeFormat::Strftime("%Y-%m-%d %H:%M:%S%.3f".into()),
        ];
        let precisions = [Precision::Seconds, Precision::Millis, Precision::Micros];
        for format in formats {
            for precision in precisions {
                for utc in [false, true] {
                    let s = stamp(format.clone(), precision, utc);
                    assert_eq!(StampInfo::new(&s, 3600).stamp_format(), Ok(s));
                }
            }
        }
    }

    #[test]
    fn names_are_the_flags_values() {
        let info = StampInfo::new(&stamp(TimeFormat::Rfc3339, Precision::Millis, true), 0);
        assert_eq!(
            (info.format.as_str(), info.precision.as_str()),
            ("rfc3339", "ms")
        );
        let info = StampInfo::new(&stamp(TimeFormat::Ctime, Precision::Seconds, false), 0);
        assert_eq!(
            (info.format.as_str(), info.precision.as_str()),
            ("ctime", "s")
        );
        let info = StampInfo::new(&stamp(TimeFormat::Unix, Precision::Micros, false), 0);
        assert_eq!(
            (info.format.as_str(), info.precision.as_str()),
            ("unix", "us")
        );
    }

    #[test]
    fn the_offset_is_the_local_zones_unless_stamps_are_utc() {
        let local = StampInfo::new(&stamp(TimeFormat::Ctime, Precision::Seconds, false), 19_800);
        assert_eq!((local.utc, local.utc_offset_seconds), (false, 19_800));
        let utc = StampInfo::new(&stamp(TimeFormat::Ctime, Precision::Seconds, true), 19_800);
        assert_eq!((utc.utc, utc.utc_offset_seconds), (true, 0));
    }

    #[test]
    fn a_layout_the_flags_would_refuse_is_an_error() {
        let mut info = StampInfo::new(&StampFormat::default(), 0);
        info.precision = "ns".into();
        assert_eq!(
            info.stamp_format(),
            Err(StampError::BadPrecision("ns".into()))
        );
        info.precision = "s".into();
        info.format = "iso".into();
        assert_eq!(
            info.stamp_format(),
            Err(StampError::UnknownFormat("iso".into()))
        );
    }

    #[test]
    fn a_message_must_fit_both_the_line_and_the_frame_limit() {
        let stamp = StampInfo::new(&StampFormat::default(), 0);
        let config = ServerConfig::new(100, 200, stamp.clone(), false);
        assert_eq!(config.max_message(), 100);
        assert_eq!(ServerConfig::new(300, 200, stamp, false).max_message(), 200);
        assert_eq!(config.subprotocols, ["timecho-lines", "binary"]);
    }

    /// The JSON the server writes and other clients read: a change here is
    /// a change of the contract (README, "The HTTP API").
    #[cfg(feature = "serde")]
    #[test]
    fn the_bodies_json_is_the_documented_one() {
        fn round_trip<T>(body: &T, json: &str)
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            assert_eq!(serde_json::to_string(body).expect("serialises"), json);
            assert_eq!(&serde_json::from_str::<T>(json).expect("reads back"), body);
        }
        round_trip(
            &SessionInfo {
                auth: true,
                user: Some("ada".into()),
                reason: None,
            },
            r#"{"auth":true,"user":"ada","reason":null}"#,
        );
        round_trip(
            &LoginRequest {
                user: "ada".into(),
                password: "lovelace".into(),
            },
            r#"{"user":"ada","password":"lovelace"}"#,
        );
        let stamp = StampFormat {
            format: TimeFormat::Rfc3339,
            precision: Precision::Millis,
            utc: false,
        };
        round_trip(
            &ServerConfig::new(100, 200, StampInfo::new(&stamp, -18_000), true),
            concat!(
                r#"{"max_line":100,"max_frame":200,"#,
                r#""stamp":{"format":"rfc3339","precision":"ms","utc":false,"utc_offset_seconds":-18000},"#,
                r#""subprotocols":["timecho-lines","binary"],"auth":true}"#
            ),
        );
        let mut renewing = ServerConfig::new(100, 200, StampInfo::new(&stamp, 0), true);
        renewing.renew_every_seconds = Some(200);
        renewing.instance = Some("web-2".into());
        let json = serde_json::to_string(&renewing).expect("serialises");
        assert!(
            json.ends_with(r#""auth":true,"renew_every_seconds":200,"instance":"web-2"}"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ServerConfig>(&json).expect("reads"),
            renewing
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_session_answer_without_user_or_reason_reads_as_none() {
        let info: SessionInfo = serde_json::from_str(r#"{"auth":false}"#).expect("reads");
        assert_eq!(
            info,
            SessionInfo {
                auth: false,
                user: None,
                reason: None
            }
        );
    }
}
