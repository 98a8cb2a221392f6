//! Prometheus metrics. Handles are resolved once per listener at start-up, so
//! the hot path only does relaxed atomic adds: no lock, no map lookup, no
//! allocation per message.
//!
//! A listener exports only the series it can move (no `UdpBudget` on a TCP
//! listener, no TLS failures on a plain one). The exposition is OpenMetrics, or
//! the Prometheus 0.0.4 text format for a scraper that does not ask for it
//! ([`Format`]): the two name counters and info metrics differently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// The two text expositions a Prometheus server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`, the format of a scraper that asks for nothing.
    Text004,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers, as Prometheus negotiates:
    /// OpenMetrics when it is accepted with a weight at least that of plain
    /// text (Prometheus sends `application/openmetrics-text;version=1.0.0,
    /// ...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`), else 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for param in parts {
                match param.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some((k, v)) if k.eq_ignore_ascii_case("q") => {
                        q = v.parse().unwrap_or(0.0);
                    }
                    Some((k, v)) if k.eq_ignore_ascii_case("version") => version = Some(v),
                    _ => {}
                }
            }
            match media.as_str() {
                // 1.0.0 is what this body is; 0.0.1 is its earlier name.
                "application/openmetrics-text"
                    if version.is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
                {
                    openmetrics = openmetrics.max(q)
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    /// `process_*`, which carry no `timecho_` prefix.
    process: Registry,
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
            process: Registry::default(),
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
        m.process
            .register_collector(Box::new(crate::process_metrics::ProcessCollector::default()));
        let r = &mut m.registry;
        r.register(
            "build",
            "The version of timecho running, and the commit it was built from",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("TIMECHO_COMMIT"),
            }),
        );
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

    /// The handles one listener updates, labelled with its name. A series
    /// its kind of listener cannot move (named by the name's first word, as
    /// `tcp 127.0.0.1:8899`) gets a handle that is not exported.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let kind = name.split(' ').next().unwrap_or_default();
        let lines = matches!(kind, "tcp" | "tls" | "unix");
        let udp = kind == "udp";
        let http = matches!(kind, "http" | "https" | "metrics" | "redirect");
        let addressed = kind != "unix";
        let tls = matches!(kind, "tls" | "https");
        let proxied = matches!(kind, "tcp" | "tls" | "http" | "https");
        let l = ListenerLabel {
            listener: name.to_owned(),
        };
        let series = |family: &Family<ListenerLabel, Counter>, applies: bool| {
            if applies {
                family.get_or_create(&l).clone()
            } else {
                Counter::default()
            }
        };
        let gauge = |family: &Family<ListenerLabel, Gauge>, applies: bool| {
            if applies {
                family.get_or_create(&l).clone()
            } else {
                Gauge::default()
            }
        };
        let error = |kind, applies: bool| {
            if !applies {
                return Counter::default();
            }
            self.errors
                .get_or_create(&ErrorLabel {
                    listener: name.to_owned(),
                    kind,
                })
                .clone()
        };
        Arc::new(ListenerMetrics {
            open: gauge(&self.open, lines),
            http_open: gauge(&self.http_open, http),
            accepted: series(&self.accepted, lines || http),
            rejected: series(&self.rejected, lines || http),
            lines_in: series(&self.lines_in, lines || udp),
            lines_out: series(&self.lines_out, lines || udp),
            bytes_in: series(&self.bytes_in, lines || udp),
            bytes_out: series(&self.bytes_out, lines || udp),
            too_long: error(ErrorKind::TooLong, lines),
            idle: error(ErrorKind::IdleTimeout, lines),
            stalled: error(ErrorKind::Stalled, lines || http),
            busy: error(ErrorKind::Busy, lines || http),
            per_client: error(ErrorKind::PerClient, (lines || http) && addressed),
            udp_dropped: error(ErrorKind::UdpDropped, udp),
            udp_budget: error(ErrorKind::UdpBudget, udp),
            denied: error(ErrorKind::Denied, addressed),
            tls_failed: error(ErrorKind::TlsFailed, tls),
            proxy_failed: error(ErrorKind::ProxyHeader, proxied),
            latency: self.latency.clone(),
        })
    }

    /// Counts one WebSocket session's end (once per session, not per message).
    pub fn ws_ended(&self, ending: WsEnding) {
        self.ws_closed
            .get_or_create(&WsEndingLabel { ending })
            .inc();
    }

    /// The exposition, in `format`.
    pub fn encode(&self, format: Format) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks_alive
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out));
        match format {
            Format::OpenMetrics => out,
            Format::Text004 => text_004(&out),
        }
    }
}

/// The same families in the Prometheus 0.0.4 text format. Their samples are
/// written alike; what differs is named here: a counter's family is named
/// with its `_total` (OpenMetrics names it without), an info metric is a
/// gauge named with its `_info`, `unknown` is `untyped`, and there is no
/// `# UNIT` and no `# EOF`. Without this a 0.0.4 parser types every
/// counter's samples `unknown`.
fn text_004(openmetrics: &str) -> String {
    let mut renamed: std::collections::HashMap<&str, (&str, &str)> = Default::default();
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let entry = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            renamed.insert(name, entry);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((p, (name, rest))) => {
                let (suffix, kind) = renamed.get(name).copied().unwrap_or(("", "untyped"));
                let rest = if p == "# TYPE " { kind } else { rest };
                out.push_str(p);
                out.push_str(name);
                out.push_str(suffix);
                out.push(' ');
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
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
        let text = m.encode(Format::OpenMetrics);
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

    #[test]
    fn the_format_is_negotiated_as_prometheus_asks() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, format) in [
            (Some(prometheus), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=0.0.1"),
                Format::OpenMetrics,
            ),
            (
                Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Format::Text004,
            ),
            (
                Some("application/openmetrics-text;version=9.9.9"),
                Format::Text004,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text004),
            (
                Some("text/plain,application/openmetrics-text;q=0.5"),
                Format::Text004,
            ),
            (Some("*/*"), Format::Text004),
            (Some(""), Format::Text004),
            (None, Format::Text004),
        ] {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn a_listener_exports_only_the_series_it_can_move() {
        let m = Metrics::new();
        for name in [
            "tcp 127.0.0.1:1",
            "udp 127.0.0.1:2",
            "http 127.0.0.1:3",
            "unix /s",
        ] {
            let _ = m.listener(name);
        }
        let text = m.encode(Format::OpenMetrics);
        let has = |series: &str| text.contains(series);
        assert!(has(
            r#"errors_total{listener="udp 127.0.0.1:2",kind="UdpBudget"} 0"#
        ));
        assert!(has(
            r#"errors_total{listener="tcp 127.0.0.1:1",kind="TooLong"} 0"#
        ));
        assert!(has(
            r#"errors_total{listener="http 127.0.0.1:3",kind="PerClient"} 0"#
        ));
        for absent in [
            r#"listener="tcp 127.0.0.1:1",kind="UdpBudget""#,
            r#"listener="tcp 127.0.0.1:1",kind="TlsFailed""#,
            r#"listener="udp 127.0.0.1:2",kind="TooLong""#,
            r#"listener="http 127.0.0.1:3",kind="TooLong""#,
            r#"listener="unix /s",kind="Denied""#,
            r#"http_connections_open{listener="tcp"#,
            r#"lines_in_total{listener="http"#,
        ] {
            assert!(!has(absent), "{absent} in:\n{text}");
        }
    }

    #[test]
    fn the_004_text_names_counters_and_info_as_its_parsers_expect() {
        let m = Metrics::new();
        m.listener("tcp 127.0.0.1:1").lines_in.inc();
        let text = m.encode(Format::Text004);
        assert!(
            text.contains("# TYPE timecho_lines_in_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP timecho_lines_in_total "), "{text}");
        assert!(text.contains(r#"timecho_lines_in_total{listener="tcp 127.0.0.1:1"} 1"#));
        assert!(text.contains("# TYPE timecho_build_info gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE timecho_reply_latency_seconds histogram\n"));
        assert!(!text.contains("# EOF"), "{text}");
        let om = m.encode(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE timecho_build info\n"), "{om}");
        assert!(om.contains(&format!(
            "timecho_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("TIMECHO_COMMIT")
        )));
    }
}
