//! `HOST:PORT` as people type it (`localhost:8899`, `0.0.0.0:8899`, `[::1]:8899`)
//! and the addresses it resolves to. One parser for the serve flags, `--upstream`,
//! the client and the load generator, so a name works, or fails, alike everywhere.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The tutorial's port: `serve`'s default, and where a client connects when
/// its address names none.
pub const DEFAULT_PORT: u16 = 8899;

const EXAMPLES: &str = "examples: localhost:8899, 127.0.0.1:8899, [::1]:8899";

#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error("{text:?} is not HOST:PORT: {why} ({EXAMPLES})")]
    Syntax { text: String, why: &'static str },
    #[error("{0:?} has no port ({EXAMPLES})")]
    NoPort(String),
    #[error("cannot resolve {host:?}: {error}")]
    Resolve { host: String, error: io::Error },
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

/// A host (a name or an address literal) and a port, not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// As typed; an IPv6 literal without its brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `HOST:PORT`, where HOST is a name, an IPv4 address or a bracketed IPv6 address.
    pub fn parse(text: &str) -> Result<HostPort, AddrError> {
        match split(text)? {
            (host, Some(port)) => Ok(HostPort { host, port }),
            (_, None) => Err(AddrError::NoPort(text.to_owned())),
        }
    }

    /// An address to listen on: `HOST:PORT`, or a port alone (`8899` or
    /// `:8899`), which listens on loopback only, as the defaults do; every
    /// address takes `0.0.0.0:PORT` or `[::]:PORT`, said outright.
    pub fn parse_listen(text: &str) -> Result<HostPort, AddrError> {
        let port = text.strip_prefix(':').unwrap_or(text);
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(HostPort {
                    host: std::net::Ipv4Addr::LOCALHOST.to_string(),
                    port,
                });
            }
        }
        HostPort::parse(text)
    }

    /// As [`HostPort::parse`], and also a HOST alone (an IPv6 address with or
    /// without brackets), which gets `default_port`.
    pub fn parse_or_port(text: &str, default_port: u16) -> Result<HostPort, AddrError> {
        let (host, port) = split(text)?;
        Ok(HostPort {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// A timestamp server as clients name it (`timecho client`, `timecho-bench
    /// tcp`): `HOST:PORT`, or `HOST` alone for [`DEFAULT_PORT`].
    pub fn parse_or_default_port(text: &str) -> Result<HostPort, AddrError> {
        HostPort::parse_or_port(text, DEFAULT_PORT)
    }

    /// A name, as opposed to an address literal.
    pub fn is_name(&self) -> bool {
        self.host.parse::<IpAddr>().is_err()
    }

    /// Every address the host has, in the resolver's order of preference and
    /// without repeats; an address literal is its own and asks no resolver.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, AddrError> {
        let found = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|error| AddrError::Resolve {
                host: self.host.clone(),
                error,
            })?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in found {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(AddrError::NoAddress(self.host.clone()));
        }
        Ok(addrs)
    }

    /// The resolver's preferred address, for a client that uses one address
    /// throughout (every connection of a load run, or UDP, where a datagram
    /// tells nothing back about a wrong choice).
    pub fn resolve_first(&self) -> Result<SocketAddr, AddrError> {
        Ok(self.resolve()?[0])
    }
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<HostPort, AddrError> {
        HostPort::parse(text)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a timestamp server listens: `HOST:PORT`, or `unix:PATH` for a unix
/// stream socket (websockify's `--unix-target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Tcp(HostPort),
    Unix(std::path::PathBuf),
}

impl FromStr for ServerAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<ServerAddr, AddrError> {
        match text.strip_prefix("unix:") {
            Some("") => Err(AddrError::Syntax {
                text: text.to_owned(),
                why: "unix: needs a socket path",
            }),
            Some(path) => Ok(ServerAddr::Unix(path.into())),
            None => HostPort::parse(text).map(ServerAddr::Tcp),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp(hp) => hp.fmt(f),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The host and, if there is one, the port.
fn split(text: &str) -> Result<(String, Option<u16>), AddrError> {
    let bad = |why| AddrError::Syntax {
        text: text.to_owned(),
        why,
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| bad("the port is a number from 0 to 65535"))
    };
    // A bare address: `127.0.0.1`, or `::1`, whose colons are not a port's.
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| bad("a [ needs its ]"))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| bad("only an IPv6 address goes in brackets"))?;
        let port = match after {
            "" => None,
            _ => Some(port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("a port follows the ] after a colon"))?,
            )?),
        };
        return Ok((ip.to_string(), port));
    }
    if text.contains('/') {
        return Err(bad("no scheme and no path, just the host and the port"));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, p)) => (host, Some(port(p)?)),
        None => (text, None),
    };
    if host.contains(':') {
        return Err(bad("an IPv6 address with a port goes in brackets"));
    }
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(bad(
            "a host name has only letters, digits, '-', '.' and '_'",
        ));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn names_and_address_literals_with_ports_parse() {
        assert_eq!(
            HostPort::parse("localhost:8899").unwrap(),
            hp("localhost", 8899)
        );
        assert_eq!(HostPort::parse("127.0.0.1:0").unwrap(), hp("127.0.0.1", 0));
        assert_eq!(HostPort::parse("[::1]:8080").unwrap(), hp("::1", 8080));
        assert_eq!(
            HostPort::parse("[::1]:8080").unwrap().to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            HostPort::parse("time-server.example.org:1").unwrap(),
            hp("time-server.example.org", 1)
        );
    }

    #[test]
    fn a_missing_port_is_refused_where_one_is_needed() {
        for text in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            let err = HostPort::parse(text).unwrap_err();
            assert!(matches!(err, AddrError::NoPort(_)), "{text}: {err}");
            assert!(err.to_string().contains("has no port"), "{err}");
        }
    }

    #[test]
    fn a_missing_port_is_the_default_where_one_is_known() {
        assert_eq!(
            HostPort::parse_or_port("localhost", 7).unwrap(),
            hp("localhost", 7)
        );
        assert_eq!(HostPort::parse_or_port("::1", 7).unwrap(), hp("::1", 7));
        assert_eq!(HostPort::parse_or_port("[::1]", 7).unwrap(), hp("::1", 7));
        assert_eq!(HostPort::parse_or_port("[::1]:9", 7).unwrap(), hp("::1", 9));
        assert_eq!(
            HostPort::parse_or_port("127.0.0.1:9", 7).unwrap(),
            hp("127.0.0.1", 9)
        );
    }

    #[test]
    fn client_addresses_default_to_the_tutorial_port() {
        let port = |addr| HostPort::parse_or_default_port(addr).unwrap().port;
        assert_eq!(DEFAULT_PORT, 8899);
        assert_eq!(port("127.0.0.1"), 8899);
        assert_eq!(port("::1"), 8899);
        assert_eq!(port("localhost"), 8899);
        assert_eq!(port("[::1]:9"), 9);
        assert_eq!(port("localhost:7"), 7);
        assert!(HostPort::parse_or_default_port("localhost:x").is_err());
    }

    #[test]
    fn the_first_address_is_the_resolvers_first_choice() {
        let first = |text| {
            HostPort::parse_or_default_port(text)
                .unwrap()
                .resolve_first()
                .unwrap()
        };
        assert_eq!(first("127.0.0.1"), "127.0.0.1:8899".parse().unwrap());
        assert_eq!(first("[::1]:9"), "[::1]:9".parse().unwrap());
        let local = hp("localhost", 9);
        assert_eq!(local.resolve_first().unwrap(), local.resolve().unwrap()[0]);
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        for (text, why) in [
            ("localhost:http", "the port is a number"),
            ("localhost:70000", "the port is a number"),
            (":8899", "the host is missing"),
            ("[::1:8899", "needs its ]"),
            ("[localhost]:80", "only an IPv6 address"),
            ("[::1]8080", "a port follows"),
            ("fe80::1::2:80", "goes in brackets"),
            ("http://localhost:8080", "no scheme"),
            ("localhost:8080/ws", "no path"),
            ("user@localhost:8080", "only letters, digits"),
        ] {
            let err = HostPort::parse(text).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(text), "{text}: {err}");
        }
    }

    #[test]
    fn literals_resolve_to_themselves_and_localhost_to_loopback() {
        assert_eq!(
            hp("::1", 9).resolve().unwrap(),
            vec!["[::1]:9".parse().unwrap()]
        );
        let local = hp("localhost", 9).resolve().unwrap();
        assert!(!local.is_empty());
        assert!(
            local.iter().all(|a| a.ip().is_loopback() && a.port() == 9),
            "{local:?}"
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        // .invalid never resolves (RFC 6761).
        let err = hp("example.invalid", 1).resolve().unwrap_err().to_string();
        assert!(err.contains("cannot resolve \"example.invalid\""), "{err}");
    }

    #[test]
    fn a_server_is_host_port_or_a_unix_socket_path() {
        assert_eq!(
            "unix:/run/timecho.sock".parse::<ServerAddr>().unwrap(),
            ServerAddr::Unix("/run/timecho.sock".into())
        );
        assert_eq!(
            "localhost:8899".parse::<ServerAddr>().unwrap().to_string(),
            "localhost:8899"
        );
        assert_eq!(
            "unix:/tmp/t.sock"
                .parse::<ServerAddr>()
                .unwrap()
                .to_string(),
            "unix:/tmp/t.sock"
        );
        assert!("unix:".parse::<ServerAddr>().is_err());
        assert!("localhost".parse::<ServerAddr>().is_err());
    }

    #[test]
    fn a_port_alone_listens_on_loopback() {
        for text in ["8899", ":8899"] {
            assert_eq!(
                HostPort::parse_listen(text).unwrap().to_string(),
                "127.0.0.1:8899"
            );
        }
        assert_eq!(
            HostPort::parse_listen("0.0.0.0:1").unwrap().to_string(),
            "0.0.0.0:1"
        );
        assert!(HostPort::parse_listen("99999").is_err());
        assert!(
            HostPort::parse_listen("localhost").is_err(),
            "a name still needs its port"
        );
        // A port is digits only, though Rust's integer parser takes a sign.
        for signed in ["+8899", ":+8899"] {
            assert!(HostPort::parse_listen(signed).is_err(), "{signed}");
        }
    }

    #[test]
    fn a_name_is_anything_but_an_address_literal() {
        assert!(hp("localhost", 1).is_name());
        assert!(hp("time-server.example.org", 1).is_name());
        assert!(!hp("127.0.0.1", 1).is_name());
        assert!(!hp("::1", 1).is_name());
    }
}
