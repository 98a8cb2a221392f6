//! Durations on the command line, as people write them: `100ms`, `30s`, `5m`.
//! One parser for `timecho serve`, `timecho client` and `timecho-bench`, so a
//! flag takes the same spellings everywhere.

use std::time::Duration;

/// Any duration; a bare `0` means none (a timeout that is off, no warm-up).
/// Duration flags take values that start with `-`, so that `-1s` reaches this
/// parser and is refused in words, not with clap's tip to write `-- -1`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.starts_with('-') {
        return Err("durations cannot be negative (examples: 100ms, 30s, 5m, 0)".to_owned());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 100ms, 30s, 5m, 0)"))
}

/// A duration that must not be zero (a deadline that is always already past).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0 (examples: 500ms, 10s)".to_owned()),
        d => Ok(d),
    }
}

/// A duration of at least one second (sign-in tokens expire in whole seconds).
pub fn parse_whole_seconds(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < Duration::from_secs(1) => {
            Err("must be at least 1s (examples: 30s, 10m)".to_owned())
        }
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        let err = parse_duration("-1s").unwrap_err();
        assert!(err.contains("cannot be negative"), "{err}");
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("examples: 100ms"), "{err}");
    }

    #[test]
    fn a_positive_duration_refuses_zero_in_any_spelling() {
        assert_eq!(parse_positive_duration("2s"), Ok(Duration::from_secs(2)));
        for zero in ["0", "0s", "0ms"] {
            let err = parse_positive_duration(zero).unwrap_err();
            assert!(err.contains("more than 0"), "{zero}: {err}");
        }
        assert!(parse_positive_duration("soon").is_err());
    }

    #[test]
    fn whole_seconds_start_at_one_second() {
        assert_eq!(parse_whole_seconds("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_whole_seconds("10m"), Ok(Duration::from_secs(600)));
        for short in ["0", "999ms"] {
            let err = parse_whole_seconds(short).unwrap_err();
            assert!(err.contains("at least 1s"), "{short}: {err}");
        }
        assert!(parse_whole_seconds("soon").is_err());
    }
}
