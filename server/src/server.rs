//! `timecho serve`: binds every listener, reports where it listens, serves
//! until a signal, then drains: /readyz turns 503, after --shutdown-delay the
//! listeners close, and connections get --drain-timeout to answer what they have.

use std::io;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admission::{self, AcceptContext};
use crate::bind::{BindError, Bound};
use crate::config::{ConfigError, ServeConfig, SMALL_LISTENER_CONNECTIONS};
use crate::doors::Doors;
use crate::gateway::hosts::AllowedHosts;
use crate::gateway::per_user::PerUser;
use crate::gateway::{self, Gateway, Ops};
use crate::heap_trim;
use crate::log_throttle::Throttle;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::reload::{self, Reloadable};
use crate::secret_files;
use crate::shutdown::Signals;
use crate::signin::{Auth, AuthError, SessionSettings};
use crate::tls::{Tls, TlsError};
use crate::udp;

/// How often an unreachable or lost timestamp server is logged at most.
const UPSTREAM_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// Serves `config` until SIGINT or SIGTERM, then drains.
pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let mut running = start(config).await?;
    // Installed before the banner, so a supervisor that signals as soon as it
    // sees it gets a graceful drain (or a reload), never the default action.
    let signals = Signals::install().map_err(ServeError::Signals)?;
    if let Some(parts) = running.reloadable.take() {
        running.tracker.spawn(reload::on_hangup(
            signals.hangup,
            parts,
            running.shutdown.clone(),
        ));
    }
    println!("{}", running.banner);
    // Every listener is bound and serving: units ordered after timecho may start.
    crate::readiness::ready();
    running.drain_after(signals.stop.first()).await;
    Ok(())
}

/// A server whose listeners are serving.
pub struct Running {
    /// What the operator is told: every address with a command to try it.
    pub banner: String,
    /// The HTTP listeners' addresses, as bound (port 0 resolved).
    #[cfg_attr(not(test), allow(dead_code))]
    pub http_addrs: Vec<std::net::SocketAddr>,
    /// What SIGHUP reloads, until [`run`] hands it to the reload task.
    reloadable: Option<Reloadable>,
    ops: Arc<Ops>,
    /// Stops the accept loops (`listeners`), first.
    closing: CancellationToken,
    listeners: TaskTracker,
    /// Tells every connection to drain, once the listeners are closed.
    shutdown: CancellationToken,
    tracker: TaskTracker,
    shutdown_delay: std::time::Duration,
    drain_timeout: std::time::Duration,
}

/// Says at start-up what an operator should know of the configuration:
/// secrets others can read, any origin allowed, descriptors fitted.
fn warn_about(config: &ServeConfig) {
    secret_files::warn_if_exposed(config);
    if let Some(gw) = config.gateway.as_ref().filter(|g| g.allows_any_origin()) {
        warn!(
            "--allow-origin *: any web page may open /ws on {}; for a test server only",
            gw.http.given
        );
    }
    if let Some((nofile, fitted)) = &config.descriptors {
        if let Some(warning) = &fitted.warning {
            warn!("{warning}");
        } else if fitted.lowered {
            info!(
                "{nofile} file descriptors allowed: at most {} connections per listener and {} \
                 WebSockets (raise LimitNOFILE= or ulimit -n for more)",
                fitted.max_connections, fitted.max_websockets
            );
        }
    }
}

/// Sign-in, when the gateway has it; a session store that cannot be reached
/// stops start-up, before anything says where it listens.
async fn sign_in(
    config: &ServeConfig,
    secure: bool,
    metrics: &Arc<Metrics>,
) -> Result<Option<Auth>, AuthError> {
    let Some(gw) = config.gateway.as_ref().filter(|gw| !gw.auth.is_empty()) else {
        return Ok(None);
    };
    let session = SessionSettings {
        key: gw.session_key.as_deref(),
        token_lifetime: gw.token_lifetime,
        store: gw.session_store.as_ref(),
    };
    Ok(Some(Auth::load(&gw.auth, session, secure, metrics).await?))
}

/// Binds every listener and starts serving, without signal handlers: the
/// caller decides when the drain starts ([`Running::drain_after`]).
pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    warn_about(&config);
    let tls = config.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
    let bound = Bound::bind(&config).await?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The accept loops, stopped and awaited before anything drains.
    let closing = CancellationToken::new();
    let listeners = TaskTracker::new();
    let protocol = Arc::new(config.protocol.clone());
    let limits = &protocol.limits;
    let shared_limits = Arc::new(limits.clone());
    let metrics = Arc::new(Metrics::new());
    let access = Arc::new(config.access.clone());
    let proxy = config.proxy.clone().map(Arc::new);
    let forwarded = config.forwarded.clone().map(Arc::new);
    let ops = Arc::new(Ops {
        metrics: metrics.clone(),
        draining: CancellationToken::new(),
    });
    let shared = AcceptContext {
        access: access.clone(),
        metrics: metrics.clone(),
        limits: shared_limits.clone(),
        closing: closing.clone(),
        tracker: tracker.clone(),
    };
    let doors = Doors::new(
        &config,
        protocol.clone(),
        metrics.clone(),
        access.clone(),
        shutdown.clone(),
    );
    let http_addrs: Vec<_> = bound.http.iter().map(|(_, addr)| *addr).collect();
    let hosts = Arc::new(AllowedHosts::new(
        &http_addrs,
        config.gateway.as_ref().map_or(&[], |g| &g.allowed_hosts),
        tls.as_ref().map(|t| t.dns_names()).unwrap_or_default(),
    ));
    // Before saying where it listens: a session store that cannot be reached stops start-up.
    let auth = sign_in(&config, tls.is_some(), &metrics).await?;
    let fingerprint = tls.as_ref().map(|t| t.fingerprint());
    // Printed once everything is validated and set up (sign-in's files
    // included), so a supervisor never sees "listening" followed by an exit.
    let banner = bound.describe(fingerprint.as_deref());
    let mut reloadable = Reloadable {
        tls: tls.clone().map(|t| (t, hosts.clone())),
        gateway: None,
    };
    let own_tcp: Vec<_> = bound.tcp.iter().map(|(_, addr)| *addr).collect();
    let upstream = config.upstream(&own_tcp)?;
    for (l, addr) in bound.tcp {
        // The gateway's sessions arrive on its own listener from one address.
        let uncapped = upstream.as_ref().and_then(|u| u.uncapped);
        let (door, service) = doors.line(&format!("tcp {addr}"), None, proxy.clone(), uncapped);
        listeners.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    for (l, addr) in bound.tcp_tls {
        let Some(tls) = &tls else { break };
        let (door, service) = doors.line(
            &format!("tls {addr}"),
            Some(tls.tcp.clone()),
            proxy.clone(),
            None,
        );
        listeners.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    for (l, file, path) in bound.unix {
        let (door, service) = doors.line(&format!("unix {}", path.display()), None, None, None);
        listeners.spawn(admission::run(l, door, shared.clone(), service, file));
    }
    let udp_budget = Arc::new(udp::SharedBudget::default());
    for (s, addr) in bound.udp {
        let name = format!("udp {addr}");
        let m = metrics.listener(&name);
        tracker.spawn(udp::run(
            s,
            name,
            protocol.clone(),
            m,
            access.clone(),
            udp_budget.clone(),
            shutdown.clone(),
        ));
    }
    if let (Some(gw), Some(upstream)) = (&config.gateway, upstream) {
        let refusals = Arc::new(RefusalLog::default());
        let flushing = refusals.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move { flushing.flush_every_interval("sign-in refused", stop).await });
        let gateway = Arc::new(Gateway {
            settings: gateway::Settings {
                config: gw.clone(),
                upstream,
                stamp: protocol.stamp.clone(),
                limits: shared_limits.clone(),
                secure: tls.is_some(),
                instance: config.instance.clone(),
            },
            capacity: gateway::Capacity {
                sessions: Arc::new(Semaphore::new(gw.max_sessions)),
                per_user: PerUser::new(gw.max_sessions_per_user),
            },
            runtime: gateway::Runtime {
                shutdown: shutdown.clone(),
                tracker: tracker.clone(),
                metrics: metrics.clone(),
                upstream_warnings: Throttle::new(UPSTREAM_WARN_EVERY),
            },
            access: gateway::Access {
                hosts: hosts.clone(),
                auth,
                refusals: refusals.clone(),
            },
        });
        reloadable.gateway = Some(gateway.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = gateway::router(gateway, ops.clone(), limits.body_timeout);
        for (l, addr) in bound.http {
            let (door, service) = doors.http(
                &format!("{scheme} {addr}"),
                gw.http_connections(),
                tls.as_ref().map(|t| t.http.clone()),
                proxy.clone(),
                forwarded.clone(),
                app.clone(),
                Some(gateway::ops_router(ops.clone())),
            );
            listeners.spawn(admission::run(l, door, shared.clone(), service, ()));
        }
        // With port 0 each address of an --http name has its own port; redirects go to the first.
        let https_port = http_addrs.first().map_or(0, |addr| addr.port());
        for (r, raddr) in bound.redirect {
            let app = gateway::redirect_router(https_port, hosts.clone());
            let (door, service) = doors.http(
                &format!("redirect {raddr}"),
                SMALL_LISTENER_CONNECTIONS,
                None,
                None,
                None,
                app,
                None,
            );
            listeners.spawn(admission::run(r, door, shared.clone(), service, ()));
        }
    }
    for (l, addr) in bound.metrics {
        let app = gateway::ops_router(ops.clone());
        let (door, service) = doors.http(
            &format!("metrics {addr}"),
            SMALL_LISTENER_CONNECTIONS,
            None,
            None,
            None,
            app,
            None,
        );
        listeners.spawn(admission::run(l, door, shared.clone(), service, ()));
    }
    tracker.spawn(heap_trim::run(shutdown.clone()));
    tracker.close();
    listeners.close();
    Ok(Running {
        banner,
        http_addrs,
        reloadable: Some(reloadable),
        ops,
        closing,
        listeners,
        shutdown,
        tracker,
        shutdown_delay: config.shutdown_delay,
        drain_timeout: limits.drain_timeout,
    })
}

impl Running {
    /// Serves until `stop`, then drains: /readyz turns 503, after the
    /// shutdown delay the listeners close, then connections get the drain
    /// timeout to answer what they have.
    pub async fn drain_after(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        crate::readiness::stopping();
        self.ops.draining.cancel();
        if !self.shutdown_delay.is_zero() {
            info!(
                "draining: /readyz now reports 503; closing listeners in {:?}",
                self.shutdown_delay
            );
            tokio::time::sleep(self.shutdown_delay).await;
        }
        let drain = self.drain_timeout;
        let deadline = Instant::now() + drain;
        info!("shutting down: answering what was received, waiting up to {drain:?}");
        self.closing.cancel();
        // Every listening socket is closed before any connection hears of the
        // drain, so a client that saw its connection end is refused if it comes back.
        let _ = tokio::time::timeout_at(deadline, self.listeners.wait()).await;
        self.shutdown.cancel();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                "drain deadline passed; {} tasks still open are dropped",
                self.tracker.len()
            );
        } else {
            info!("all connections closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Duration;

    use clap::Parser;
    use tokio::sync::oneshot;
    use tungstenite::Message;

    use super::*;
    use crate::alloc_count;
    use crate::cli::{Cli, Command};

    /// What an idle bridged session may keep, both sides together: the
    /// browser's WebSocket with its HTTP connection, the relay, and its
    /// upstream connection to this server's own TCP listener (issue 21: 16 KiB).
    const IDLE_SESSION_BYTES: i64 = 16 * 1024;

    fn config(args: &[&str]) -> ServeConfig {
        let cli = Cli::try_parse_from(["timecho", "serve"].iter().chain(args)).expect("parses");
        let Command::Serve(serve) = cli.command else {
            unreachable!("serve was given")
        };
        serve.config_with(1 << 20).expect("valid")
    }

    /// A browser on its own thread (so that what it allocates is not counted):
    /// opens `/ws`, sends `message`, reads the reply, says so, and stays
    /// connected and quiet until `leave` is dropped.
    fn browser(
        addr: std::net::SocketAddr,
        message: String,
    ) -> (oneshot::Receiver<String>, mpsc::Sender<()>) {
        let (replied, reply) = oneshot::channel();
        let (go, leave) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let tcp = TcpStream::connect(addr).unwrap();
            let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), tcp).unwrap();
            ws.send(Message::text(message)).unwrap();
            let got = loop {
                match ws.read().unwrap() {
                    Message::Text(t) => break t.to_string(),
                    _ => continue,
                }
            };
            let _ = replied.send(got);
            let _ = leave.recv();
            let _ = ws.close(None);
            let mut rest = Vec::new();
            let _ = ws.get_mut().read_to_end(&mut rest);
            let _ = ws.get_mut().flush();
        });
        (reply, go)
    }

    /// Bytes held by one session once it has rested, after `message`.
    /// The session stays open (the sender ends it), so that the next one is
    /// measured without its teardown.
    async fn held_by_an_idle_session(
        addr: std::net::SocketAddr,
        message: String,
    ) -> (i64, i64, mpsc::Sender<()>) {
        let before = alloc_count::live_bytes();
        let (reply, go) = browser(addr, message);
        let got = tokio::time::timeout(Duration::from_secs(10), reply)
            .await
            .expect("a reply within 10 s")
            .expect("the browser thread replied");
        assert!(got.starts_with('['), "a stamped reply: {:.80}", got);
        let busy = alloc_count::live_bytes() - before;
        // Both sides rest REST_AFTER after their last byte and give their
        // buffers back: done once that has passed twice over and the count
        // holds still.
        let replied = Instant::now();
        let deadline = replied + Duration::from_secs(5);
        let mut idle = busy;
        loop {
            tokio::time::sleep(crate::connection::REST_AFTER / 4).await;
            let now = alloc_count::live_bytes() - before;
            let rested = replied.elapsed() >= crate::connection::REST_AFTER * 2;
            if (rested && now == idle) || Instant::now() > deadline {
                break (busy, now, go);
            }
            idle = now;
        }
    }

    #[test]
    fn an_idle_bridged_session_keeps_little_after_its_largest_message() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = config(&["--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
        rt.block_on(async {
            let running = start(config).await.expect("starts");
            let addr = running.http_addrs[0];
            // A first session warms what is made once (metrics' series, the
            // per-user table's first entry), so the next one counts alone.
            let (_, _, warm) = held_by_an_idle_session(addr, "warm".into()).await;
            let mut open = vec![warm];
            for message in ["x".repeat(16), "y".repeat(60 * 1024)] {
                let (busy, idle, go) = held_by_an_idle_session(addr, message.clone()).await;
                open.push(go);
                eprintln!(
                    "after a {}-byte message a bridged session held {busy} bytes, {idle} at rest",
                    message.len()
                );
                // The reply is twice the message in flight: a guard that
                // measures nothing would see nothing grow.
                assert!(
                    busy > message.len() as i64,
                    "the message grew nothing: {busy}"
                );
                assert!(
                    idle <= IDLE_SESSION_BYTES,
                    "an idle session kept {idle} bytes after a {}-byte message",
                    message.len()
                );
            }
            drop(open);
        });
    }
}
