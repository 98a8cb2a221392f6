//! Binding every listener up front, so a bad or busy address fails before
//! anything starts, with a message that says which address and what to do.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use tokio::net::{TcpListener, TcpSocket, UdpSocket, UnixListener};

use crate::config::ServeConfig;
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

/// The listeners, bound and ready to serve, with the addresses they got.
pub struct Bound {
    pub tcp: Vec<(TcpListener, SocketAddr)>,
    pub tcp_tls: Vec<(TcpListener, SocketAddr)>,
    pub unix: Vec<(UnixListener, SocketFile, PathBuf)>,
    pub udp: Vec<(UdpSocket, SocketAddr)>,
    pub http: Option<(TcpListener, SocketAddr)>,
    pub redirect: Option<(TcpListener, SocketAddr)>,
    pub metrics: Option<(TcpListener, SocketAddr)>,
}

impl Bound {
    pub async fn bind(config: &ServeConfig) -> Result<Bound, BindError> {
        let tcp = config
            .tcp
            .iter()
            .map(|&a| bind_tcp(a, "tcp", "--tcp"))
            .collect::<Result<_, _>>()?;
        let tcp_tls = config
            .tcp_tls
            .iter()
            .map(|&a| bind_tcp(a, "tcp+tls", "--tcp-tls"))
            .collect::<Result<_, _>>()?;
        let mut unix = Vec::new();
        for path in &config.unix {
            let (l, file) = unix_socket::bind(path)?;
            unix.push((l, file, path.clone()));
        }
        let mut udp = Vec::new();
        for &addr in &config.udp {
            let err = |error| BindError::Socket {
                kind: "udp",
                flag: "--udp",
                addr,
                error,
            };
            let s = UdpSocket::bind(addr).await.map_err(err)?;
            let local = s.local_addr().map_err(err)?;
            udp.push((s, local));
        }
        let http = match &config.gateway {
            Some(gw) => Some(bind_tcp(gw.http, "http", "--http")?),
            None => None,
        };
        let redirect = match config.redirect_http {
            Some(a) => Some(bind_tcp(a, "http", "--redirect-http")?),
            None => None,
        };
        let metrics = match config.metrics {
            Some(a) => Some(bind_tcp(a, "http", "--metrics")?),
            None => None,
        };
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

    /// Where the gateway relays to when no --upstream is given: our own first
    /// TCP listener, reached over loopback when it listens on all addresses.
    pub fn own_upstream(&self) -> Option<String> {
        let (_, addr) = self.tcp.first()?;
        let mut addr = *addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        Some(addr.to_string())
    }

    /// What a person needs to connect; tests read the first two words of each line.
    pub fn describe(&self, tls_fingerprint: Option<&str>) -> String {
        let https = tls_fingerprint.is_some();
        let mut s = String::from("timecho is listening:\n");
        for (_, a) in &self.tcp {
            s += &format!("  tcp   {a:<24} try: nc {} {}\n", a.ip(), a.port());
        }
        for (_, a) in &self.tcp_tls {
            s += &format!("  tls   {a:<24} try: timecho client --tls {a}\n");
        }
        for (_, _, p) in &self.unix {
            s += &format!("  unix  {:<24} try: nc -U {}\n", p.display(), p.display());
        }
        for (_, a) in &self.udp {
            s += &format!("  udp   {a:<24} try: nc -u {} {}\n", a.ip(), a.port());
        }
        let scheme = if https { "https" } else { "http" };
        if let Some((_, a)) = &self.http {
            s += &format!("  {scheme:<5} {a:<24} open: {scheme}://{a}/\n");
        }
        if let Some((_, a)) = &self.redirect {
            s += &format!("  redirect {a:<21} sends http to https\n");
        }
        if let Some((_, a)) = &self.metrics {
            s += &format!("  metrics {a:<22} http://{a}/metrics\n");
        }
        if let Some(f) = tls_fingerprint {
            s += &format!("TLS certificate SHA-256 fingerprint: {f}\n");
        }
        s += "Press Ctrl-C to stop.";
        s
    }
}
