//! What systemd is told (`Type=notify` in deploy/timecho.service): READY=1 once
//! every listener is bound and serving, so units ordered after timecho start
//! when it can take clients; RELOADING=1 and READY=1 around a SIGHUP reload;
//! STOPPING=1 when the drain starts. Outside systemd ($NOTIFY_SOCKET unset)
//! each call does nothing.

use sd_notify::NotifyState;
use tracing::warn;

fn tell(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // The service manager may be gone or its socket full: serving matters more.
        warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
    }
}

/// Every listener is bound and serving.
pub fn ready() {
    tell(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A reload starts; [`ready`] ends it.
pub fn reloading() {
    // systemd wants the reload's start time with RELOADING=1 (sd_notify(3)).
    match NotifyState::monotonic_usec_now() {
        Ok(now) => tell(&[NotifyState::Reloading, now]),
        Err(_) => tell(&[NotifyState::Reloading]),
    }
}

/// The drain has started.
pub fn stopping() {
    tell(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}
