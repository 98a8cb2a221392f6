//! Prometheus metrics. Handles are resolved once per listener at start-up, so
//! the hot path only does relaxed atomic adds: no lock, no map lookup, no
//! allocation per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// Why a client was refused or cut off.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ErrorKind {
    TooLong,
    IdleTimeout,
    Stalled,
    Busy,
    /// Refused: the client already held its share of the listener's connections.
    PerClient,
    UdpDropped,
    /// A UDP reply not sent: its source's byte budget was spent.
    UdpBudget,
    Denied,
    TlsFailed,
    /// A trusted proxy sent no valid PROXY header in time.
    ProxyHeader,
}

/// How a WebSocket session ended, as counted.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum WsEnding {
    /// The timestamp server closed after answering everything (1000).
    UpstreamClosed,
    /// The timestamp server closed a session quiet for its `--idle-timeout`
    /// (4002): routine, the page reconnects when it next needs to.
    Idle,
    /// The timestamp server went away mid-session: closed with replies owed,
    /// reset, or stopped reading (1011).
    UpstreamLost,
    /// The timestamp server could not be reached at all (1011).
    UpstreamUnreachable,
    /// The browser closed (and got what it was owed, or not in time).
    BrowserClosed,
    /// The browser went away without a close frame, or stopped answering pings.
    BrowserVanished,
    /// A frame the contract refuses (1003, 1007, 1009).
    Refused,
    /// Shutdown or restart of the gateway (1012).
    Restart,
    /// Sign-out (1008).
    SignedOut,
    /// The sign-in token it was opened with expired (4001; the page renews).
    TokenExpired,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WsEndingLabel {
    ending: WsEnding,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    listener: String,
    kind: ErrorKind,
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    open: Family<ListenerLabel, Gauge>,
    http_open: Family<ListenerLabel, Gauge>,
    accepted: Family<ListenerLabel, Counter>,
    rejected: Family<ListenerLabel, Counter>,
    lines_in: Family<ListenerLabel, Counter>,
    lines_out: Family<ListenerLabel, Counter>,
    bytes_in: Family<ListenerLabel, Counter>,
    bytes_out: Family<ListenerLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    latency: LatencyHistogram,
    pub ws_open: Gauge,
    pub ws_sessions: Counter,
    pub ws_refused: Counter,
    pub upstream_failures: Counter,
    ws_closed: Family<WsEndingLabel, Counter>,
    /// Tasks alive in the runtime, read when scraped (a leak shows as growth).
    tasks_alive: Gauge,
    pub signin_verifications: Counter,
    pub signin_rate_limited: Counter,
    pub signin_busy: Counter,
    pub session_store_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("timecho"),
            open: Family::default(),
            http_open: Family::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            lines_in: Family::default(),
            lines_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            errors: Family::default(),
            latency: LatencyHistogram::default(),
            ws_open: Gauge::default(),
            ws_sessions: Counter::default(),
            ws_refused: Counter::default(),
            upstream_failures: Counter::default(),
            ws_closed: Family::default(),
            tasks_alive: Gauge::default(),
            signin_verifications: Counter::default(),
            signin_rate_limited: Counter::default(),
            signin_busy: Counter::default(),
            session_store_failures: Counter::default(),
        };
        let r = &mut m.registry;
        r.register("connections_open", "Clients connected now", m.open.clone());
        r.register(
            "http_connections_open",
            "HTTP connections open now (upgraded WebSockets count as sessions)",
            m.http_open.clone(),
        );
        r.register(
            "connections_accepted",
            "Clients accepted",
            m.accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "Clients refused at the connection limit",
            m.rejected.clone(),
        );
        r.register(
            "lines_in",
            "Messages received (lines, raw reads or datagrams)",
            m.lines_in.clone(),
        );
        r.register(
            "lines_out",
            "Replies sent, error lines included",
            m.lines_out.clone(),
        );
        r.register(
            "bytes_in",
            "Bytes received from clients",
            m.bytes_in.clone(),
        );
        r.register("bytes_out", "Bytes sent to clients", m.bytes_out.clone());
        r.register(
            "errors",
            "Clients given an error or cut off, by kind",
            m.errors.clone(),
        );
        r.register(
            "reply_latency_seconds",
            "Time from reading a batch of lines to having written all its replies",
            m.latency.clone(),
        );
        r.register(
            "websocket_sessions_open",
            "WebSocket sessions open now",
            m.ws_open.clone(),
        );
        r.register(
            "websocket_sessions",
            "WebSocket sessions started",
            m.ws_sessions.clone(),
        );
        r.register(
            "websocket_refused",
            "WebSocket handshakes refused (origin, limit)",
            m.ws_refused.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Gateway sessions whose timestamp server could not be reached",
            m.upstream_failures.clone(),
        );
        r.register(
            "websocket_closed",
            "WebSocket sessions ended, by how",
            m.ws_closed.clone(),
        );
        r.register(
            "tasks_alive",
            "Tasks alive in the async runtime (sessions, connections, timers)",
            m.tasks_alive.clone(),
        );
        r.register(
            "signin_verifications",
            "Password hashes checked (argon2 runs, the dummy hash for unknown users included)",
            m.signin_verifications.clone(),
        );
        r.register(
            "signin_rate_limited",
            "Sign-in attempts refused before any check: too many from one address",
            m.signin_rate_limited.clone(),
        );
        r.register(
            "signin_busy",
            "Sign-in attempts refused because every password check slot was taken",
            m.signin_busy.clone(),
        );
        r.register(
            "session_store_failures",
            "Calls to the session store (--session-store) that failed or missed their deadline; \
             session cookies were refused meanwhile",
            m.session_store_failures.clone(),
        );
        m
    }

    /// The handles one listener updates, labelled with its name.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let l = ListenerLabel {
            listener: name.to_owned(),
        };
        let error = |kind| {
            self.errors
                .get_or_create(&ErrorLabel {
                    listener: name.to_owned(),
                    kind,
                })
                .clone()
        };
        Arc::new(ListenerMetrics {
            open: self.open.get_or_create(&l).clone(),
            http_open: self.http_open.get_or_create(&l).clone(),
            accepted: self.accepted.get_or_create(&l).clone(),
            rejected: self.rejected.get_or_create(&l).clone(),
            lines_in: self.lines_in.get_or_create(&l).clone(),
            lines_out: self.lines_out.get_or_create(&l).clone(),
            bytes_in: self.bytes_in.get_or_create(&l).clone(),
            bytes_out: self.bytes_out.get_or_create(&l).clone(),
            too_long: error(ErrorKind::TooLong),
            idle: error(ErrorKind::IdleTimeout),
            stalled: error(ErrorKind::Stalled),
            busy: error(ErrorKind::Busy),
            per_client: error(ErrorKind::PerClient),
            udp_dropped: error(ErrorKind::UdpDropped),
            udp_budget: error(ErrorKind::UdpBudget),
            denied: error(ErrorKind::Denied),
            tls_failed: error(ErrorKind::TlsFailed),
            proxy_failed: error(ErrorKind::ProxyHeader),
            latency: self.latency.clone(),
        })
    }

    /// Counts one WebSocket session's end (once per session, not per message).
    pub fn ws_ended(&self, ending: WsEnding) {
        self.ws_closed
            .get_or_create(&WsEndingLabel { ending })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks_alive
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What one listener's connections count.
#[derive(Debug)]
pub struct ListenerMetrics {
    pub open: Gauge,
    pub http_open: Gauge,
    pub accepted: Counter,
    pub rejected: Counter,
    pub lines_in: Counter,
    pub lines_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub too_long: Counter,
    pub idle: Counter,
    pub stalled: Counter,
    pub busy: Counter,
    pub per_client: Counter,
    pub udp_dropped: Counter,
    pub udp_budget: Counter,
    pub denied: Counter,
    pub tls_failed: Counter,
    pub proxy_failed: Counter,
    pub latency: LatencyHistogram,
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// A fixed-bucket histogram made of atomics. The crate's own histogram takes a
/// mutex on every observation, which is too much for the reply path.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    /// One count per bucket plus the `+Inf` bucket; not cumulative.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder makes the bucket counts cumulative itself.
        let mut count = 0;
        let mut buckets = [(0.0, 0); BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n = self.0.counts[i].load(Ordering::Relaxed);
            count += n;
            *slot = (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_listener_labels_and_histogram() {
        let m = Metrics::new();
        let l = m.listener("tcp 127.0.0.1:8899");
        l.lines_in.inc_by(3);
        l.too_long.inc();
        l.latency.observe(Duration::from_micros(70));
        l.latency.observe(Duration::from_secs(5));
        let text = m.encode();
        assert!(
            text.contains(r#"timecho_lines_in_total{listener="tcp 127.0.0.1:8899"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"timecho_errors_total{listener="tcp 127.0.0.1:8899",kind="TooLong"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"timecho_reply_latency_seconds_bucket{le="0.0001"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"timecho_reply_latency_seconds_bucket{le="2.5"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"timecho_reply_latency_seconds_bucket{le="+Inf"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("timecho_reply_latency_seconds_count 2"),
            "{text}"
        );
    }
}
