//! Binding every listener up front, so a bad or busy address fails before
//! anything starts, with a message that says which address and what to do.
//! A listen flag given a name binds every address the name resolved to.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::{TcpListener, TcpSocket, UdpSocket, UnixListener};
use tracing::warn;

use crate::config::{ListenAddr, ServeConfig};
use crate::unix_socket::{self, SocketFile, UnixBindError};

/// Pending connections the kernel may queue per listener; enough to ride out a
/// burst of connects while the accept loop catches up.
const BACKLOG: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {kind} {addr}: {error}{hint}", hint = hint(.error, .flag))]
    Socket {
        kind: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        error: io::Error,
    },
    #[error(transparent)]
    Unix(#[from] UnixBindError),
}

impl BindError {
    /// The address cannot exist here (an IPv6 address without IPv6, an address
    /// of another machine), as opposed to being busy or forbidden.
    fn is_unavailable_address(&self) -> bool {
        match self {
            BindError::Socket { error, .. } => {
                error.kind() == io::ErrorKind::AddrNotAvailable
                    || error.raw_os_error() == Some(libc::EAFNOSUPPORT)
            }
            BindError::Unix(_) => false,
        }
    }
}

fn hint(e: &io::Error, flag: &str) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            " (another program, perhaps another timecho, uses it; stop it or choose another address with {flag} ADDR)"
        ),
        io::ErrorKind::AddrNotAvailable => " (this machine has no such address)".to_owned(),
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)".to_owned(),
        _ => String::new(),
    }
}

fn bind_tcp(
    addr: SocketAddr,
    kind: &'static str,
    flag: &'static str,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let err = |error| BindError::Socket {
        kind,
        flag,
        addr,
        error,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    let listener = socket.listen(BACKLOG).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

async fn bind_udp(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), BindError> {
    let err = |error| BindError::Socket {
        kind: "udp",
        flag: "--udp",
        addr,
        error,
    };
    let s = UdpSocket::bind(addr).await.map_err(err)?;
    let local = s.local_addr().map_err(err)?;
    Ok((s, local))
}

/// What binding each address of `listen` gave. An address that cannot exist
/// here is skipped with a warning when another address of the same name
/// binds: `localhost` on a machine without IPv6 still listens on 127.0.0.1.
/// A busy or forbidden address is always an error.
fn keep_bound<T>(
    listen: &ListenAddr,
    flag: &str,
    results: impl IntoIterator<Item = Result<T, BindError>>,
) -> Result<Vec<T>, BindError> {
    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    for result in results {
        match result {
            Ok(t) => bound.push(t),
            Err(e) if listen.addrs.len() > 1 && e.is_unavailable_address() => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    if bound.is_empty() && !skipped.is_empty() {
        return Err(skipped.swap_remove(0));
    }
    for e in skipped {
        warn!(
            "{e}; {flag} {} listens on its other addresses",
            listen.given
        );
    }
    Ok(bound)
}

fn bind_tcp_all<'a>(
    listens: impl IntoIterator<Item = &'a ListenAddr>,
    kind: &'static str,
    flag: &'static str,
) -> Result<Vec<(TcpListener, SocketAddr)>, BindError> {
    let mut bound = Vec::new();
    for listen in listens {
        let results = listen.addrs.iter().map(|&a| bind_tcp(a, kind, flag));
        bound.extend(keep_bound(listen, flag, results)?);
    }
    Ok(bound)
}

/// The listeners, bound and ready to serve, with the addresses they got.
pub struct Bound {
    pub tcp: Vec<(TcpListener, SocketAddr)>,
    pub tcp_tls: Vec<(TcpListener, SocketAddr)>,
    pub unix: Vec<(UnixListener, SocketFile, PathBuf)>,
    pub udp: Vec<(UdpSocket, SocketAddr)>,
    pub http: Vec<(TcpListener, SocketAddr)>,
    pub redirect: Vec<(TcpListener, SocketAddr)>,
    pub metrics: Vec<(TcpListener, SocketAddr)>,
}

impl Bound {
    pub async fn bind(config: &ServeConfig) -> Result<Bound, BindError> {
        let tcp = bind_tcp_all(&config.tcp, "tcp", "--tcp")?;
        let tcp_tls = bind_tcp_all(&config.tcp_tls, "tcp+tls", "--tcp-tls")?;
        let mut unix = Vec::new();
        for path in &config.unix {
            let (l, file) = unix_socket::bind(path)?;
            unix.push((l, file, path.clone()));
        }
        let mut udp = Vec::new();
        for listen in &config.udp {
            let mut results = Vec::new();
            for &addr in &listen.addrs {
                results.push(bind_udp(addr).await);
            }
            udp.extend(keep_bound(listen, "--udp", results)?);
        }
        let http = bind_tcp_all(config.gateway.as_ref().map(|gw| &gw.http), "http", "--http")?;
        let redirect = bind_tcp_all(&config.redirect_http, "http", "--redirect-http")?;
        let metrics = bind_tcp_all(&config.metrics, "http", "--metrics")?;
        Ok(Bound {
            tcp,
            tcp_tls,
            unix,
            udp,
            http,
            redirect,
            metrics,
        })
    }

    /// What a person needs to connect; tests read the first two words of each line.
    pub fn describe(&self, tls_fingerprint: Option<&str>) -> String {
        let https = tls_fingerprint.is_some();
        let mut s = String::from("timecho is listening:\n");
        for (_, a) in &self.tcp {
            s += &format!("  tcp   {a:<24} try: nc {} {}\n", a.ip(), a.port());
        }
        for (_, a) in &self.tcp_tls {
            let pin = tls_fingerprint.map_or(String::new(), |f| format!(" --pin sha256:{f}"));
            s += &format!("  tls   {a:<24} try: timecho client --tls{pin} {a}\n");
        }
        for (_, _, p) in &self.unix {
            s += &format!("  unix  {:<24} try: nc -U {}\n", p.display(), p.display());
        }
        for (_, a) in &self.udp {
            s += &format!("  udp   {a:<24} try: nc -u {} {}\n", a.ip(), a.port());
        }
        let scheme = if https { "https" } else { "http" };
        for (_, a) in &self.http {
            s += &format!("  {scheme:<5} {a:<24} open: {scheme}://{a}/\n");
        }
        for (_, a) in &self.redirect {
            s += &format!("  redirect {a:<21} sends http to https\n");
        }
        for (_, a) in &self.metrics {
            s += &format!("  metrics {a:<22} http://{a}/metrics\n");
        }
        if let Some(f) = tls_fingerprint {
            s += &format!("TLS certificate SHA-256 fingerprint: {f}\n");
        }
        s += "Press Ctrl-C to stop.";
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecho_shared::host_port::HostPort;

    /// `localhost:0` as if it had resolved to `addrs`.
    fn localhost(addrs: &[&str]) -> ListenAddr {
        ListenAddr {
            given: HostPort::parse("localhost:0").unwrap(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    // 203.0.113.0/24 is reserved for documentation (RFC 5737): no machine has it.
    const ELSEWHERE: &str = "203.0.113.7:0";

    #[tokio::test]
    async fn an_address_the_machine_lacks_is_skipped_when_another_of_the_name_binds() {
        let bound =
            bind_tcp_all([&localhost(&[ELSEWHERE, "127.0.0.1:0"])], "tcp", "--tcp").unwrap();
        assert_eq!(bound.len(), 1);
        assert!(bound[0].1.ip().is_loopback());
    }

    #[tokio::test]
    async fn a_name_none_of_whose_addresses_binds_is_an_error() {
        let err = bind_tcp_all([&localhost(&[ELSEWHERE, "203.0.113.8:0"])], "tcp", "--tcp")
            .expect_err("nothing binds");
        assert!(err.to_string().contains("203.0.113.7"), "{err}");
    }

    #[tokio::test]
    async fn an_address_given_alone_must_bind() {
        let alone = ListenAddr {
            given: HostPort::parse(ELSEWHERE).unwrap(),
            addrs: vec![ELSEWHERE.parse().unwrap()],
        };
        assert!(bind_tcp_all([&alone], "tcp", "--tcp").is_err());
    }

    #[tokio::test]
    async fn a_busy_address_is_an_error_even_when_another_of_the_name_binds() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        let err = bind_tcp_all([&localhost(&[&busy, "127.0.0.2:0"])], "tcp", "--tcp")
            .expect_err("the busy address is refused");
        assert!(err.to_string().contains("--tcp ADDR"), "{err}");
    }
}
