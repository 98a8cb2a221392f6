//! What SIGHUP reloads: the TLS certificate and key, and sign-in's files (the
//! session key, users and tokens). Every SIGHUP is answered, whatever the
//! instance serves: each part that can be reloaded is, a part whose new files
//! are bad keeps its old state, and one log line says what happened ("nothing
//! to reload" when nothing can be). Open connections are never touched.

use std::sync::Arc;

use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::gateway::hosts::AllowedHosts;
use crate::gateway::Gateway;
use crate::tls::Tls;

/// The parts of a running server that SIGHUP can reload.
#[derive(Default)]
pub struct Reloadable {
    /// The certificate, and the host names it makes the gateway answer for.
    pub tls: Option<(Arc<Tls>, Arc<AllowedHosts>)>,
    /// Sign-in, when the gateway has it.
    pub gateway: Option<Arc<Gateway>>,
}

impl Reloadable {
    /// Reloads every part that can be, and says in one line what happened.
    pub fn reload(&self) {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        if let Some((tls, hosts)) = self.tls.as_ref().filter(|(t, _)| t.is_reloadable()) {
            match tls.reload() {
                Ok(()) => {
                    hosts.set_cert_names(tls.dns_names());
                    done.push(format!(
                        "TLS certificate reloaded (SHA-256 {})",
                        tls.fingerprint()
                    ));
                }
                Err(e) => failed.push(format!("TLS certificate kept: {e}")),
            }
        }
        if let Some(auth) = self.gateway.as_ref().and_then(|g| g.access.auth.as_ref()) {
            match auth.reload() {
                Ok(report) => done.push(format!("sign-in reloaded: {report}")),
                Err(e) => failed.push(format!("sign-in kept what it had: {e}")),
            }
        }
        match (done.is_empty(), failed.is_empty()) {
            (true, true) => info!("SIGHUP: nothing to reload"),
            (_, true) => info!("SIGHUP: {}", done.join("; ")),
            _ => warn!(
                "SIGHUP: {}",
                failed
                    .into_iter()
                    .chain(done)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

/// Answers every SIGHUP with [`Reloadable::reload`] until shutdown.
pub async fn on_hangup(mut hangup: Signal, parts: Reloadable, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangup.recv() => match got {
                Some(()) => {
                    crate::readiness::reloading();
                    parts.reload();
                    crate::readiness::ready();
                }
                None => return,
            },
        }
    }
}
