//! `timecho serve`: binds every listener, reports where it listens, serves
//! until a signal, then drains: /readyz turns 503, after --shutdown-delay the
//! listeners close, and connections get --drain-timeout to answer what they have.

use std::io;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bind::{BindError, Bound};
use crate::config::ServeConfig;
use crate::gateway::{self, Gateway, HttpLimits, Ops};
use crate::listener::{self, Service, TlsTcpListener};
use crate::metrics::Metrics;
use crate::shutdown::Signals;
use crate::signin::{Auth, AuthFileError};
use crate::tls::{Tls, TlsError};
use crate::udp;

/// Connections the --metrics and --redirect-http listeners serve at once.
const SMALL_LISTENER_CONNECTIONS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthFileError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let tls = config.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
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
    let small_limits = || HttpLimits {
        max_connections: SMALL_LISTENER_CONNECTIONS,
        drain_timeout: protocol.limits.drain_timeout,
        access: access.clone(),
    };

    let signals = Signals::install().map_err(ServeError::Signals)?;
    let fingerprint = tls.as_ref().map(|t| t.fingerprint());
    println!("{}", bound.describe(fingerprint.as_deref()));
    if let Some(tls) = &tls {
        if tls.is_reloadable() {
            tracker.spawn(reload_on_sighup(tls.clone(), shutdown.clone()));
        }
    }
    let own_upstream = bound.own_upstream();
    for (l, addr) in bound.tcp {
        tracker.spawn(listener::run(l, format!("tcp {addr}"), service.clone(), ()));
    }
    for (tcp, addr) in bound.tcp_tls {
        let Some(tls) = tls.clone() else { break };
        let l = TlsTcpListener { tcp, tls };
        tracker.spawn(listener::run(l, format!("tls {addr}"), service.clone(), ()));
    }
    for (l, file, path) in bound.unix {
        let name = format!("unix {}", path.display());
        tracker.spawn(listener::run(l, name, service.clone(), file));
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
    if let (Some((l, addr)), Some(gw)) = (bound.http, &config.gateway) {
        let auth = (!gw.auth.is_empty())
            .then(|| Auth::load(&gw.auth, tls.is_some(), &metrics))
            .transpose()?;
        let gateway = Arc::new(Gateway {
            config: gw.clone(),
            send_proxy_header: gw.upstream.is_none() && config.proxy.is_some(),
            upstream: gw.upstream.clone().or(own_upstream).unwrap_or_default(),
            max_frame: protocol.limits.max_line,
            sessions: Arc::new(Semaphore::new(gw.max_sessions)),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            drain_timeout: protocol.limits.drain_timeout,
            metrics: metrics.clone(),
            access: access.clone(),
            tls: tls.clone(),
            auth,
        });
        tracker.spawn(gateway::run(l, gateway, ops.clone()));
        if let Some((r, _)) = bound.redirect {
            tracker.spawn(gateway::run_redirect(
                r,
                addr.port(),
                shutdown.clone(),
                small_limits(),
            ));
        }
    }
    if let Some((l, _)) = bound.metrics {
        tracker.spawn(gateway::run_ops(
            l,
            ops.clone(),
            shutdown.clone(),
            small_limits(),
        ));
    }
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

/// SIGHUP reloads the certificate and key; open connections keep theirs.
async fn reload_on_sighup(tls: Arc<Tls>, shutdown: CancellationToken) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot watch SIGHUP; certificate reload is off");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => match tls.reload() {
                Ok(()) => info!(fingerprint = %tls.fingerprint(), "TLS certificate reloaded"),
                Err(e) => warn!("TLS certificate not reloaded, keeping the old one: {e}"),
            },
        }
    }
}
