//! How each listener is admitted and served, built from what every listener
//! of the process shares: one call per listener in `server::start`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderValue;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::access::AccessList;
use crate::admission::{ListenerAdmission, PerClient};
use crate::config::{Protocol, ServeConfig, PROBE_SLOTS};
use crate::forwarded::ForwardedPolicy;
use crate::gateway::http_service::{Forwarding, HttpService};
use crate::line_service::LineService;
use crate::metrics::Metrics;
use crate::proxy_protocol::ProxyPolicy;

/// What a plain-HTTP client refused at the connection limit reads.
fn http_busy(instance: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n{}: {instance}\r\n\
         connection: close\r\n\r\n",
        timecho_shared::api::header::INSTANCE
    )
    .into_bytes()
}

/// What a plain-HTTP client holding its share of connections reads.
fn http_crowded(instance: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 39\r\n\
         {}: {instance}\r\nconnection: close\r\n\r\ntoo many connections from your address\n",
        timecho_shared::api::header::INSTANCE
    )
    .into_bytes()
}

/// The handles and answers every listener is built with.
pub struct Doors {
    protocol: Arc<Protocol>,
    metrics: Arc<Metrics>,
    access: Arc<AccessList>,
    shutdown: CancellationToken,
    /// What a line client refused at the limit, or holding its share, reads.
    busy_line: Vec<u8>,
    crowded_line: Vec<u8>,
    /// `--instance`, as written in refusals and as every HTTP answer's header.
    instance: String,
    instance_header: HeaderValue,
}

impl Doors {
    pub fn new(
        config: &ServeConfig,
        protocol: Arc<Protocol>,
        metrics: Arc<Metrics>,
        access: Arc<AccessList>,
        shutdown: CancellationToken,
    ) -> Doors {
        let limits = &protocol.limits;
        let busy_line = format!(
            "{}server busy ({} connections); try again later\n",
            timecho_shared::reply::ERROR_PREFIX,
            limits.max_connections
        )
        .into_bytes();
        let crowded_line = format!(
            "{}too many connections from your address ({} at once); close some and try again\n",
            timecho_shared::reply::ERROR_PREFIX,
            limits.per_client(limits.max_connections)
        )
        .into_bytes();
        // parse_instance admits only visible ASCII, which every header value takes.
        let instance_header = HeaderValue::from_str(&config.instance)
            .unwrap_or_else(|_| HeaderValue::from_static("timecho"));
        Doors {
            protocol,
            metrics,
            access,
            shutdown,
            busy_line,
            crowded_line,
            instance: config.instance.clone(),
            instance_header,
        }
    }

    /// A listener of the line protocol (TCP, TLS or unix); `uncapped` is a
    /// source that is not one client (this process's gateway).
    pub fn line(
        &self,
        name: &str,
        tls: Option<TlsAcceptor>,
        proxy: Option<Arc<ProxyPolicy>>,
        uncapped: Option<IpAddr>,
    ) -> (ListenerAdmission, Arc<LineService>) {
        let limits = &self.protocol.limits;
        let door = ListenerAdmission {
            name: name.to_owned(),
            max_connections: limits.max_connections,
            shares: PerClient::new(limits.per_client(limits.max_connections)),
            forwarded: None,
            uncapped,
            crowded: tls.is_none().then(|| self.crowded_line.clone()),
            probe_slots: 0,
            busy: tls.is_none().then(|| self.busy_line.clone()),
            tls,
            proxy,
        };
        let service = Arc::new(LineService {
            name: name.to_owned(),
            protocol: self.protocol.clone(),
            metrics: self.metrics.listener(name),
            shutdown: self.shutdown.clone(),
        });
        (door, service)
    }

    /// An HTTP listener serving `app`; with `probes`, a full listener still
    /// answers the operations endpoints on a few extra slots.
    #[allow(clippy::too_many_arguments)]
    pub fn http(
        &self,
        name: &str,
        max_connections: usize,
        tls: Option<TlsAcceptor>,
        proxy: Option<Arc<ProxyPolicy>>,
        forwarded: Option<Arc<ForwardedPolicy>>,
        app: axum::Router,
        probes: Option<axum::Router>,
    ) -> (ListenerAdmission, Arc<HttpService>) {
        let limits = &self.protocol.limits;
        let shares = PerClient::new(limits.per_client(max_connections));
        let forwarding = forwarded.clone().map(|policy| Forwarding {
            policy,
            access: self.access.clone(),
            shares: shares.clone(),
        });
        let door = ListenerAdmission {
            name: name.to_owned(),
            max_connections,
            probe_slots: if probes.is_some() { PROBE_SLOTS } else { 0 },
            shares,
            forwarded,
            uncapped: None,
            crowded: tls.is_none().then(|| http_crowded(&self.instance)),
            busy: tls.is_none().then(|| http_busy(&self.instance)),
            tls,
            proxy,
        };
        let service = HttpService::new(
            app,
            limits.header_timeout,
            self.metrics.listener(name),
            self.shutdown.clone(),
            self.instance_header.clone(),
        )
        .with_forwarding(forwarding);
        let service = match probes {
            Some(probes) => service.with_probes(probes),
            None => service,
        };
        (door, Arc::new(service))
    }
}
