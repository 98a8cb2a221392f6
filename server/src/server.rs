//! `timecho serve`: binds every listener, reports where it listens, serves
//! until a signal, then drains: /readyz turns 503, after --shutdown-delay the
//! listeners close, and connections get --drain-timeout to answer what they have.

use std::io;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admission::{self, Door, Shared};
use crate::bind::{BindError, Bound};
use crate::config::ServeConfig;
use crate::gateway::hosts::AllowedHosts;
use crate::gateway::http_service::HttpService;
use crate::gateway::{self, Gateway, Ops};
use crate::heap_trim;
use crate::host_port::{HostPort, ServerAddr, DEFAULT_PORT};
use crate::line_service::LineService;
use crate::metrics::Metrics;
use crate::proxy_protocol::ProxyPolicy;
use crate::shutdown::Signals;
use crate::signin::{Auth, AuthError, SessionSettings};
use crate::tls::{Tls, TlsError};
use crate::udp;

/// Connections the --metrics and --redirect-http listeners serve at once.
const SMALL_LISTENER_CONNECTIONS: usize = 1024;
/// HTTP connections (page loads, handshakes) allowed beyond the WebSocket limit.
const HTTP_HEADROOM: usize = 1024;
/// What a plain-HTTP client refused at the connection limit reads.
const HTTP_BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let tls = config.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
    let bound = Bound::bind(&config).await?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let protocol = Arc::new(config.protocol.clone());
    let limits = &protocol.limits;
    let shared_limits = Arc::new(limits.clone());
    let metrics = Arc::new(Metrics::new());
    let access = Arc::new(config.access.clone());
    let proxy = config.proxy.clone().map(Arc::new);
    let ops = Arc::new(Ops {
        metrics: metrics.clone(),
        draining: CancellationToken::new(),
    });
    let shared = Shared {
        access: access.clone(),
        metrics: metrics.clone(),
        limits: shared_limits.clone(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    let busy_line = format!(
        "{}server busy ({} connections); try again later\n",
        timecho_shared::reply::ERROR_PREFIX,
        limits.max_connections
    )
    .into_bytes();
    let line_door = |name: &str, tls: Option<TlsAcceptor>, proxy: Option<Arc<ProxyPolicy>>| {
        let door = Door {
            name: name.to_owned(),
            max_connections: limits.max_connections,
            busy: tls.is_none().then(|| busy_line.clone()),
            tls,
            proxy,
        };
        let service = Arc::new(LineService {
            name: name.to_owned(),
            protocol: protocol.clone(),
            metrics: metrics.listener(name),
            shutdown: shutdown.clone(),
        });
        (door, service)
    };
    let http_door = |name: &str, max_connections, tls: Option<TlsAcceptor>, proxy, app| {
        let door = Door {
            name: name.to_owned(),
            max_connections,
            busy: tls.is_none().then(|| HTTP_BUSY.to_vec()),
            tls,
            proxy,
        };
        let service = Arc::new(HttpService::new(
            app,
            limits.header_timeout,
            metrics.listener(name),
            shutdown.clone(),
        ));
        (door, service)
    };

    let http_addrs: Vec<_> = bound.http.iter().map(|(_, addr)| *addr).collect();
    let hosts = Arc::new(AllowedHosts::new(
        &http_addrs,
        config.gateway.as_ref().map_or(&[], |g| &g.allowed_hosts),
        tls.as_ref().map(|t| t.dns_names()).unwrap_or_default(),
    ));
    let signals = Signals::install().map_err(ServeError::Signals)?;
    let fingerprint = tls.as_ref().map(|t| t.fingerprint());
    println!("{}", bound.describe(fingerprint.as_deref()));
    if let Some(tls) = &tls {
        if tls.is_reloadable() {
            tracker.spawn(reload_on_sighup(
                tls.clone(),
                hosts.clone(),
                shutdown.clone(),
            ));
        }
    }
    let own_upstream = bound.own_upstream();
    for (l, addr) in bound.tcp {
        let (door, service) = line_door(&format!("tcp {addr}"), None, proxy.clone());
        tracker.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    for (l, addr) in bound.tcp_tls {
        let Some(tls) = &tls else { break };
        let (door, service) =
            line_door(&format!("tls {addr}"), Some(tls.tcp.clone()), proxy.clone());
        tracker.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    for (l, file, path) in bound.unix {
        let (door, service) = line_door(&format!("unix {}", path.display()), None, None);
        tracker.spawn(admission::run(l, door, shared.clone(), service, file));
    }
    for (s, addr) in bound.udp {
        let name = format!("udp {addr}");
        let m = metrics.listener(&name);
        tracker.spawn(udp::run(
            s,
            name,
            protocol.clone(),
            m,
            access.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(gw) = &config.gateway {
        let auth = (!gw.auth.is_empty())
            .then(|| {
                let session = SessionSettings {
                    key: gw.session_key.as_deref(),
                    token_lifetime: gw.token_lifetime,
                };
                Auth::load(&gw.auth, session, tls.is_some(), &metrics)
            })
            .transpose()?;
        let gateway = Arc::new(Gateway {
            hosts: hosts.clone(),
            secure: tls.is_some(),
            config: gw.clone(),
            send_proxy_header: gw.upstream.is_none() && config.proxy.is_some(),
            upstream: gw
                .upstream
                .clone()
                .or_else(|| own_upstream.map(ServerAddr::Tcp))
                .unwrap_or_else(|| {
                    ServerAddr::Tcp(HostPort {
                        host: "127.0.0.1".to_owned(),
                        port: DEFAULT_PORT,
                    })
                }),
            sessions: Arc::new(Semaphore::new(gw.max_sessions)),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            max_frame: limits.max_line,
            stamp: protocol.stamp.clone(),
            limits: shared_limits.clone(),
            metrics: metrics.clone(),
            auth,
        });
        if gateway.auth.as_ref().is_some_and(Auth::key_is_reloadable) {
            tracker.spawn(reload_session_key_on_sighup(
                gateway.clone(),
                shutdown.clone(),
            ));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = gateway::router(gateway, ops.clone(), limits.body_timeout);
        for (l, addr) in bound.http {
            let (door, service) = http_door(
                &format!("{scheme} {addr}"),
                gw.max_sessions + HTTP_HEADROOM,
                tls.as_ref().map(|t| t.http.clone()),
                proxy.clone(),
                app.clone(),
            );
            tracker.spawn(admission::run(l, door, shared.clone(), service, ()));
        }
        // With port 0 each address of an --http name has its own port; redirects go to the first.
        let https_port = http_addrs.first().map_or(0, |addr| addr.port());
        for (r, raddr) in bound.redirect {
            let app = gateway::redirect_router(https_port, hosts.clone());
            let (door, service) = http_door(
                &format!("redirect {raddr}"),
                SMALL_LISTENER_CONNECTIONS,
                None,
                None,
                app,
            );
            tracker.spawn(admission::run(r, door, shared.clone(), service, ()));
        }
    }
    for (l, addr) in bound.metrics {
        let app = gateway::ops_router(ops.clone());
        let (door, service) = http_door(
            &format!("metrics {addr}"),
            SMALL_LISTENER_CONNECTIONS,
            None,
            None,
            app,
        );
        tracker.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    tracker.spawn(heap_trim::run(shutdown.clone()));
    tracker.close();

    signals.first().await;
    ops.draining.cancel();
    if !config.shutdown_delay.is_zero() {
        info!(
            "draining: /readyz now reports 503; closing listeners in {:?}",
            config.shutdown_delay
        );
        tokio::time::sleep(config.shutdown_delay).await;
    }
    let drain = limits.drain_timeout;
    let deadline = Instant::now() + drain;
    info!("shutting down: answering what was received, waiting up to {drain:?}");
    shutdown.cancel();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "drain deadline passed; {} tasks still open are dropped",
            tracker.len()
        );
    } else {
        info!("all connections closed");
    }
    Ok(())
}

/// SIGHUP re-reads the session key file: a new key signs from now on, and
/// the previous one is still accepted for a session lifetime.
async fn reload_session_key_on_sighup(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let Some(auth) = &gateway.auth else { return };
    on_sighup("session key reload", shutdown, || match auth.reload_key() {
        Ok(true) => {
            info!("session key replaced; the previous one is accepted for a session lifetime")
        }
        Ok(false) => info!("session key unchanged"),
        Err(e) => warn!("session key not reloaded, keeping the old one: {e}"),
    })
    .await;
}

/// SIGHUP reloads the certificate and key; open connections keep theirs.
async fn reload_on_sighup(tls: Arc<Tls>, hosts: Arc<AllowedHosts>, shutdown: CancellationToken) {
    on_sighup("certificate reload", shutdown, || match tls.reload() {
        Ok(()) => {
            hosts.set_cert_names(tls.dns_names());
            info!(fingerprint = %tls.fingerprint(), "TLS certificate reloaded");
        }
        Err(e) => warn!("TLS certificate not reloaded, keeping the old one: {e}"),
    })
    .await;
}

/// Runs `reload` at every SIGHUP until shutdown; `what` names it if SIGHUP
/// cannot be watched.
async fn on_sighup(what: &str, shutdown: CancellationToken, reload: impl Fn()) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot watch SIGHUP; {what} is off");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => reload(),
        }
    }
}
