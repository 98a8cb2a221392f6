//! `timecho serve`: binds every listener up front (so a bad address fails before
//! anything starts), reports where it listens, runs until a signal, then drains.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::ServeConfig;
use crate::gateway::{self, Gateway, Ops};
use crate::listener::{self, Service};
use crate::metrics::Metrics;
use crate::unix_socket::{self, UnixBindError};
use crate::{shutdown, udp};

/// Pending connections the kernel may queue per listener; enough to ride out a
/// burst of connects while the accept loop catches up.
const BACKLOG: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on tcp {0}: {1}{hint}", hint = in_use_hint(.1, "--tcp"))]
    Tcp(SocketAddr, io::Error),
    #[error("cannot listen on udp {0}: {1}{hint}", hint = in_use_hint(.1, "--udp"))]
    Udp(SocketAddr, io::Error),
    #[error("cannot listen on http {0}: {1}{hint}", hint = in_use_hint(.1, "--http"))]
    Http(SocketAddr, io::Error),
    #[error(transparent)]
    Unix(#[from] UnixBindError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

fn in_use_hint(e: &io::Error, flag: &str) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            format!(" (another program, perhaps another timecho, uses it; stop it or choose another address with {flag} ADDR)")
        }
        io::ErrorKind::AddrNotAvailable => " (this machine has no such address)".to_owned(),
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)".to_owned(),
        _ => String::new(),
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The listeners, bound and ready to serve.
pub struct Bound {
    tcp: Vec<(TcpListener, SocketAddr)>,
    unix: Vec<(tokio::net::UnixListener, unix_socket::SocketFile, PathBuf)>,
    udp: Vec<(UdpSocket, SocketAddr)>,
    http: Option<(TcpListener, SocketAddr)>,
    metrics: Option<(TcpListener, SocketAddr)>,
}

impl Bound {
    pub async fn bind(config: &ServeConfig) -> Result<Bound, ServeError> {
        let mut bound = Bound {
            tcp: Vec::new(),
            unix: Vec::new(),
            udp: Vec::new(),
            http: None,
            metrics: None,
        };
        for &addr in &config.tcp {
            let l = bind_tcp(addr).map_err(|e| ServeError::Tcp(addr, e))?;
            let local = l.local_addr().map_err(|e| ServeError::Tcp(addr, e))?;
            bound.tcp.push((l, local));
        }
        for path in &config.unix {
            let (l, file) = unix_socket::bind(path)?;
            bound.unix.push((l, file, path.clone()));
        }
        for &addr in &config.udp {
            let s = UdpSocket::bind(addr)
                .await
                .map_err(|e| ServeError::Udp(addr, e))?;
            let local = s.local_addr().map_err(|e| ServeError::Udp(addr, e))?;
            bound.udp.push((s, local));
        }
        if let Some(gw) = &config.gateway {
            let l = bind_tcp(gw.http).map_err(|e| ServeError::Http(gw.http, e))?;
            let local = l.local_addr().map_err(|e| ServeError::Http(gw.http, e))?;
            bound.http = Some((l, local));
        }
        if let Some(addr) = config.metrics {
            let l = bind_tcp(addr).map_err(|e| ServeError::Http(addr, e))?;
            let local = l.local_addr().map_err(|e| ServeError::Http(addr, e))?;
            bound.metrics = Some((l, local));
        }
        Ok(bound)
    }

    /// Where the gateway relays to when no --upstream is given: our own first
    /// TCP listener, reached over loopback when it listens on all addresses.
    fn own_upstream(&self) -> Option<String> {
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
    fn describe(&self) -> String {
        let mut s = String::from("timecho is listening:\n");
        for (_, a) in &self.tcp {
            s += &format!("  tcp   {a:<24} try: nc {} {}\n", a.ip(), a.port());
        }
        for (_, _, p) in &self.unix {
            s += &format!("  unix  {:<24} try: nc -U {}\n", p.display(), p.display());
        }
        for (_, a) in &self.udp {
            s += &format!("  udp   {a:<24} try: nc -u {} {}\n", a.ip(), a.port());
        }
        if let Some((_, a)) = &self.http {
            s += &format!("  http  {a:<24} open: http://{a}/\n");
        }
        if let Some((_, a)) = &self.metrics {
            s += &format!("  metrics {a:<22} http://{a}/metrics\n");
        }
        s += "Press Ctrl-C to stop.";
        s
    }
}

pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let bound = Bound::bind(&config).await?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let protocol = Arc::new(config.protocol.clone());
    let metrics = Arc::new(Metrics::new());
    let access = Arc::new(config.access.clone());
    let ops = Arc::new(Ops {
        metrics: metrics.clone(),
        draining: CancellationToken::new(),
    });
    let service = Service {
        metrics: metrics.clone(),
        proxy: config.proxy.clone().map(Arc::new),
        access: access.clone(),
        protocol: protocol.clone(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };

    println!("{}", bound.describe());
    let own_upstream = bound.own_upstream();
    for (l, addr) in bound.tcp {
        tracker.spawn(listener::run(l, format!("tcp {addr}"), service.clone(), ()));
    }
    for (l, file, path) in bound.unix {
        let name = format!("unix {}", path.display());
        tracker.spawn(listener::run(l, name, service.clone(), file));
    }
    for (s, addr) in bound.udp {
        let name = format!("udp {addr}");
        let udp_metrics = metrics.listener(&name);
        tracker.spawn(udp::run(
            s,
            name,
            protocol.clone(),
            udp_metrics,
            access.clone(),
            shutdown.clone(),
        ));
    }
    if let (Some((l, _)), Some(gw)) = (bound.http, &config.gateway) {
        let send_proxy_header = gw.upstream.is_none() && config.proxy.is_some();
        let upstream = gw.upstream.clone().or(own_upstream).unwrap_or_default();
        let gateway = Arc::new(Gateway {
            config: gw.clone(),
            upstream,
            max_frame: protocol.limits.max_line,
            sessions: Arc::new(Semaphore::new(gw.max_sessions)),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            drain_timeout: protocol.limits.drain_timeout,
            metrics: metrics.clone(),
            send_proxy_header,
            access: access.clone(),
        });
        tracker.spawn(gateway::run(l, gateway, ops.clone()));
    }
    if let Some((l, _)) = bound.metrics {
        let drain = protocol.limits.drain_timeout;
        let ops_limits = gateway::HttpLimits {
            max_connections: 1024,
            drain_timeout: drain,
            access: access.clone(),
        };
        tracker.spawn(gateway::run_ops(
            l,
            ops.clone(),
            shutdown.clone(),
            ops_limits,
        ));
    }
    tracker.close();

    shutdown::signalled().await.map_err(ServeError::Signals)?;
    ops.draining.cancel();
    if !config.shutdown_delay.is_zero() {
        info!(
            "draining: /readyz now reports 503; closing listeners in {:?}",
            config.shutdown_delay
        );
        tokio::time::sleep(config.shutdown_delay).await;
    }
    let drain = config.protocol.limits.drain_timeout;
    info!("shutting down: answering what was received, waiting up to {drain:?}");
    shutdown.cancel();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            "drain deadline passed; {} tasks still open are dropped",
            tracker.len()
        );
    } else {
        info!("all connections closed");
    }
    Ok(())
}
