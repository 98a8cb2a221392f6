//! What every request handler and session of the gateway holds, behind one
//! `Arc`: a leaf, so that the gateway's rooms import it without reaching back
//! up to the router that wires them.

use std::sync::Arc;

use timecho_shared::StampFormat;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hosts::AllowedHosts;
use super::per_user::PerUser;
use crate::config::{GatewayConfig, Limits, Upstream};
use crate::log_throttle::Throttle;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;
use crate::signin::Auth;

/// The gateway: what it was told, where sessions are admitted, the runtime's
/// handles, and who may come in.
pub struct Gateway {
    pub settings: Settings,
    pub capacity: Capacity,
    pub runtime: Runtime,
    pub access: Access,
}

/// What the operator configured, fixed for the gateway's life.
pub struct Settings {
    /// Its options as given; `config.max_frame` is the largest text frame
    /// accepted (the TCP line limit).
    pub config: GatewayConfig,
    /// The timestamp server every session is relayed to, resolved, and
    /// whether it expects a PROXY header naming the browser.
    pub upstream: Upstream,
    /// How the timestamp server writes its stamps, for `/api/config`.
    pub stamp: StampFormat,
    /// Deadlines: drain, stall (upstream writes), linger (the browser's close
    /// frame), connect (the timestamp server).
    pub limits: Arc<Limits>,
    /// Served over TLS: origins are `https://`, responses carry HSTS.
    pub secure: bool,
    /// `--instance`, for `/api/config`.
    pub instance: String,
}

/// Where sessions are admitted.
pub struct Capacity {
    /// `--max-websockets`.
    pub sessions: Arc<Semaphore>,
    /// Sessions open per sign-in (`--max-websockets-per-user`).
    pub per_user: Arc<PerUser>,
}

/// The runtime's handles every session uses.
pub struct Runtime {
    pub shutdown: CancellationToken,
    /// Every task the gateway starts, so that a drain waits for them.
    pub tracker: TaskTracker,
    pub metrics: Arc<Metrics>,
    /// The timestamp server unreachable or lost, which every session of an
    /// outage meets: logged once per interval, with a count.
    pub upstream_warnings: Throttle,
}

/// Who may come in.
pub struct Access {
    /// The names this gateway answers for (`Host`).
    pub hosts: Arc<AllowedHosts>,
    /// Sign-in for the page and `/ws`, when `--auth` is given.
    pub auth: Option<Auth>,
    /// Refused sign-ins, logged once per client and interval.
    pub refusals: Arc<RefusalLog>,
}
