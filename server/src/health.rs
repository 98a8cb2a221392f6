//! `timecho health URL`: a container's HEALTHCHECK (deploy/Dockerfile), with
//! no curl in the image. One plain-HTTP GET with a deadline on the whole
//! exchange; exit status 0 when the answer is 200, 1 otherwise (refused, timed
//! out, any other status), and one line saying why.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use timecho_shared::duration_arg::parse_positive_duration;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// What to ask, e.g. http://127.0.0.1:8080/readyz (the path defaults to /readyz).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Give up after this long, connecting and reading included.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
enum HealthError {
    #[error("{0:?} is not an http:// URL (http://HOST[:PORT][/PATH])")]
    Url(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} answered {1:?}")]
    Status(String, String),
}

/// The answer's status line is all that is read, up to this many bytes.
const MAX_STATUS_LINE: usize = 256;

pub fn run(args: &HealthArgs) -> ExitCode {
    match check(&args.url, args.timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timecho health: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `(host:port, host, path)` of an http:// URL.
fn split_url(url: &str) -> Option<(String, &str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/readyz"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        return None;
    }
    // [v6]:port, host:port, or either without a port (80).
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    let target = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((target, authority, path))
}

fn check(url: &str, timeout: Duration) -> Result<(), HealthError> {
    let (target, host, path) = split_url(url).ok_or_else(|| HealthError::Url(url.to_owned()))?;
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| HealthError::Resolve(target.clone(), e))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        HealthError::Connect(
            target.clone(),
            last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
        )
    })?;
    let timed_out = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HealthError::Timeout(url.to_owned(), timeout)
        }
        _ => HealthError::Io(url.to_owned(), e),
    };
    stream.set_write_timeout(Some(left())).map_err(timed_out)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: timecho-health\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(timed_out)?;
    let mut head = Vec::with_capacity(MAX_STATUS_LINE);
    let mut byte = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        if Instant::now() >= deadline {
            return Err(HealthError::Timeout(url.to_owned(), timeout));
        }
        stream.set_read_timeout(Some(left())).map_err(timed_out)?;
        match stream.read(&mut byte).map_err(timed_out)? {
            0 => break,
            n => head.extend_from_slice(&byte[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line).trim_end().to_owned();
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ => Err(HealthError::Status(url.to_owned(), line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_address_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/readyz"),
            Some(("127.0.0.1:8080".into(), "127.0.0.1:8080", "/readyz"))
        );
        assert_eq!(
            split_url("http://localhost"),
            Some(("localhost:80".into(), "localhost", "/readyz"))
        );
        assert_eq!(
            split_url("http://[::1]:9/healthz"),
            Some(("[::1]:9".into(), "[::1]:9", "/healthz"))
        );
        assert_eq!(
            split_url("http://[::1]/"),
            Some(("[::1]:80".into(), "[::1]", "/"))
        );
        for bad in [
            "https://x/",
            "x:80",
            "http://",
            "http://u@x/",
            "http://x/a b",
        ] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }
}
