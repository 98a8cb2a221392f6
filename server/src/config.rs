//! The validated server configuration: built once from the command line at
//! start-up, then shared read-only by every task.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use timecho_shared::stamp::MAX_STAMP_LEN;
use timecho_shared::StampFormat;

use crate::access::AccessList;
use crate::descriptors::{Demand, Fitted};
use crate::proxy_protocol::ProxyPolicy;
use crate::signin::{AuthSource, StoreUrl};
use crate::tls::CertSource;
use timecho_shared::host_port::{AddrError, HostPort, ServerAddr};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--precision (precision in a config file) only applies to rfc3339 and unix stamps")]
    PrecisionNotApplicable,
    #[error("--tcp-tls and --redirect-http need a certificate: give --tls-cert and --tls-key, or --tls-self-signed")]
    TlsNeedsCertificate,
    #[error("--redirect-http needs the https listener; it cannot be used with --no-http")]
    RedirectNeedsHttp,
    #[error(
        "--session-store needs --auth: it holds sign-outs, and without sign-in there are none"
    )]
    SessionStoreNeedsAuth,
    #[error(
        "--allow-origin * cannot go with --auth: the session cookie would then ride \
         requests from any page; list the origins that may use the gateway"
    )]
    AnyOriginWithAuth,
    #[error(
        "the gateway reaches its own TCP listener from {0}, which --allow/--deny refuse; \
         allow {0}, or relay elsewhere with --upstream"
    )]
    UpstreamRefused(IpAddr),
    #[error(
        "--upstream-proxy-protocol: the gateway relays to this process's own TCP listener, \
         which does not take a PROXY header from {0}; add {0} to --trusted-proxy, or drop \
         --upstream-proxy-protocol (the header is sent by itself when the listener trusts the gateway)"
    )]
    UpstreamHeaderUnheard(IpAddr),
    #[error(
        "--upstream-proxy-protocol needs a TCP --upstream; a unix socket takes no PROXY header"
    )]
    UpstreamHeaderOverUnix,
    #[error(
        "--framing raw answers each read as it came, several lines under one stamp, which the \
         gateway's one reply frame per line cannot carry; use --framing line, --no-http, or \
         relay to another server with --upstream"
    )]
    RawFramingBehindGateway,
    #[error(
        "--time-format: its stamps can be {0} bytes long; at most {MAX_STAMP_LEN} fit beside \
         a reply (the gateway and UDP reserve that much room)"
    )]
    StampTooLong(usize),
    #[error("the gateway has no TCP listener of this process to relay to; give --upstream")]
    NoOwnUpstream,
    #[error("{flag} {given}: {error}")]
    Address {
        flag: &'static str,
        given: HostPort,
        error: AddrError,
    },
}

/// A listen flag's value as given, and every address it resolved to at start-up:
/// all of them are bound, and the name says which ones belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub given: HostPort,
    pub addrs: Vec<SocketAddr>,
}

impl ListenAddr {
    /// Resolves `given` once; a name that does not resolve stops start-up.
    pub fn resolve(flag: &'static str, given: &HostPort) -> Result<ListenAddr, ConfigError> {
        let addrs = given.resolve().map_err(|error| ConfigError::Address {
            flag,
            given: given.clone(),
            error,
        })?;
        Ok(ListenAddr {
            given: given.clone(),
            addrs,
        })
    }

    pub fn resolve_all(
        flag: &'static str,
        given: &[HostPort],
    ) -> Result<Vec<ListenAddr>, ConfigError> {
        given.iter().map(|g| ListenAddr::resolve(flag, g)).collect()
    }
}

/// How a TCP or unix stream is cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// One reply per line (`\n` or `\r\n`); a partial line left idle for
    /// --partial-timeout is answered too, so clients that send no newline work.
    Line,
    /// The tutorial's exact behaviour: every read is answered as it came, no newline added.
    Raw,
}

/// Per-connection limits, in one place so every listener enforces the same ones.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_line: usize,
    pub max_connections: usize,
    /// Connections one client (IPv4 address, IPv6 /64) may hold on a
    /// listener; `None`: a quarter of the listener's limit.
    pub max_per_client: Option<u32>,
    pub partial_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub stall_timeout: Duration,
    pub drain_timeout: Duration,
    /// TLS handshake, from the first byte of the connection.
    pub handshake_timeout: Duration,
    /// A trusted proxy's PROXY protocol header.
    pub proxy_timeout: Duration,
    /// An HTTP request's headers, from the connection or the previous response.
    pub header_timeout: Duration,
    /// An HTTP request's body.
    pub body_timeout: Duration,
    /// Reading and discarding after a close, before the socket is released;
    /// also how long a closing WebSocket waits for the browser's close frame.
    pub linger_timeout: Duration,
    /// The gateway's connection to the timestamp server.
    pub connect_timeout: Duration,
}

/// What a connection needs to answer: framing, stamp layout and limits.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub framing: Framing,
    pub stamp: StampFormat,
    pub limits: Limits,
}

/// `--allow-origin *`: any page may open `/ws` and use the API.
pub const ANY_ORIGIN: &str = "*";

/// The web page and WebSocket gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub http: ListenAddr,
    /// `None`: relay to this process's first TCP listener.
    pub upstream: Option<ServerAddr>,
    /// `--upstream-proxy-protocol`: the --upstream server trusts this host
    /// as a proxy and expects a PROXY header before the browser's bytes.
    pub upstream_proxy_protocol: bool,
    /// Origins allowed besides the gateway's own: `--allow-origin`, each
    /// `scheme://host[:port]`, `null` or [`ANY_ORIGIN`].
    pub allowed_origins: Vec<String>,
    /// Host names answered besides the built-in ones: `--allow-host`, and the
    /// names the HTTP listeners were given.
    pub allowed_hosts: Vec<String>,
    pub max_sessions: usize,
    /// Largest text frame accepted: the TCP line limit, so that the gateway
    /// accepts exactly what the line server answers.
    pub max_frame: usize,
    /// WebSocket sessions one sign-in may hold open (with `--auth`).
    pub max_sessions_per_user: usize,
    pub ping_interval: Duration,
    /// Sessions closed by a shutdown are told to come back within this window.
    pub reconnect_window: Duration,
    pub auth: Vec<AuthSource>,
    /// The key session tokens are signed with, shared by instances.
    pub session_key: Option<PathBuf>,
    /// How long one session token lasts (the sign-out bound across instances).
    pub token_lifetime: Duration,
    /// Where sign-outs are shared between instances.
    pub session_store: Option<StoreUrl>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `--instance`, or the host name: told on every HTTP answer.
    pub instance: String,
    pub tcp: Vec<ListenAddr>,
    pub unix: Vec<PathBuf>,
    pub udp: Vec<ListenAddr>,
    pub gateway: Option<GatewayConfig>,
    /// A separate listener for /metrics, /healthz and /readyz.
    pub metrics: Option<ListenAddr>,
    /// Time between /readyz turning 503 and the listeners closing.
    pub shutdown_delay: Duration,
    pub proxy: Option<ProxyPolicy>,
    /// `--forwarded-headers`: HTTP requests' clients from trusted proxies' headers.
    pub forwarded: Option<crate::forwarded::ForwardedPolicy>,
    pub access: AccessList,
    /// The certificate for https/wss and --tcp-tls, if any.
    pub tls: Option<CertSource>,
    pub tcp_tls: Vec<ListenAddr>,
    pub redirect_http: Option<ListenAddr>,
    pub protocol: Protocol,
    /// The descriptor limit the limits were fitted to, and the verdict.
    pub descriptors: Option<(u64, Fitted)>,
}

/// Where the gateway relays each browser, and whether that server expects a
/// PROXY header before the browser's bytes. Decided once, from the validated
/// configuration and the addresses the TCP listeners got, so that the gateway
/// and the listener it feeds agree by construction: a header is sent exactly
/// when the listener will read one, and a browser's bytes are never read as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub addr: ServerAddr,
    /// Introduce the browser with a PROXY v2 header.
    pub proxy_header: bool,
    /// One of this process's own listeners.
    pub is_own: bool,
    /// The address the gateway's sessions come from on its own listener when
    /// they carry no header: that listener does not count them as one client.
    pub uncapped: Option<IpAddr>,
}

/// HTTP connections (page loads, handshakes) allowed beyond the WebSocket limit.
pub const HTTP_HEADROOM: usize = 1024;
/// Connections the main HTTP listener keeps past its limit for a balancer's
/// health checks (`/healthz`, `/readyz`), so that clients filling it cannot
/// make the instance look dead.
pub const PROBE_SLOTS: usize = 16;
/// Connections the --metrics and --redirect-http listeners serve at once.
pub const SMALL_LISTENER_CONNECTIONS: usize = 1024;

impl GatewayConfig {
    /// `--allow-origin *`: start-up warns, since any page may then use the
    /// gateway (never with sign-in: [`ConfigError::AnyOriginWithAuth`]).
    pub fn allows_any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == ANY_ORIGIN)
    }

    /// Connections each HTTP listener serves at once: every WebSocket, and
    /// room for page loads and handshakes beside them.
    pub fn http_connections(&self) -> usize {
        self.max_sessions + HTTP_HEADROOM
    }
}

impl ServeConfig {
    /// Sets the connection and WebSocket limits the user left to their
    /// defaults to what the descriptor limit can hold, and keeps the verdict
    /// for start-up to report.
    pub fn fit_descriptors(
        &mut self,
        connections: Option<usize>,
        websockets: Option<usize>,
        websockets_per_user: Option<usize>,
        nofile: u64,
    ) {
        let count = |l: &[ListenAddr]| l.iter().map(|l| l.addrs.len()).sum::<usize>();
        let demand = Demand {
            line_listeners: count(&self.tcp) + count(&self.tcp_tls) + self.unix.len(),
            http_listeners: self.gateway.as_ref().map_or(0, |g| g.http.addrs.len()),
            headroom: HTTP_HEADROOM,
            gateway: self.gateway.is_some(),
            small_listeners: self.metrics.as_ref().map_or(0, |m| m.addrs.len())
                + self.redirect_http.as_ref().map_or(0, |r| r.addrs.len()),
            small: SMALL_LISTENER_CONNECTIONS,
            probe_slots: PROBE_SLOTS,
        };
        let fitted = demand.fit(nofile, connections, websockets);
        self.protocol.limits.max_connections = fitted.max_connections;
        if let Some(gw) = &mut self.gateway {
            gw.max_sessions = fitted.max_websockets;
            // One sign-in must leave room for others however many it opens.
            gw.max_sessions_per_user = websockets_per_user.unwrap_or((gw.max_sessions / 4).max(1));
        }
        self.descriptors = Some((nofile, fitted));
    }
}

impl Limits {
    /// The share of one client on a listener of `slots` connections.
    pub fn per_client(&self, slots: usize) -> u32 {
        self.max_per_client
            .unwrap_or_else(|| u32::try_from(slots / 4).unwrap_or(u32::MAX).max(1))
    }
}

impl ServeConfig {
    /// The gateway's upstream, for TCP listeners bound at `own_tcp` (in order).
    /// An `--upstream` that names one of them is treated as the default, since
    /// the same listener reads the same way.
    pub fn upstream(&self, own_tcp: &[SocketAddr]) -> Result<Option<Upstream>, ConfigError> {
        let Some(gateway) = &self.gateway else {
            return Ok(None);
        };
        let upstream = gateway.upstream(own_tcp, self.proxy.as_ref(), &self.access)?;
        // Raw framing answers each read as it came, several lines in one
        // stamp, which one reply frame per line cannot carry.
        if upstream.is_own && self.protocol.framing == Framing::Raw {
            return Err(ConfigError::RawFramingBehindGateway);
        }
        Ok(Some(upstream))
    }
}

impl GatewayConfig {
    fn upstream(
        &self,
        own_tcp: &[SocketAddr],
        proxy: Option<&ProxyPolicy>,
        access: &AccessList,
    ) -> Result<Upstream, ConfigError> {
        let target = match &self.upstream {
            None => own_target(own_tcp.first().ok_or(ConfigError::NoOwnUpstream)?),
            Some(ServerAddr::Unix(_)) if self.upstream_proxy_protocol => {
                return Err(ConfigError::UpstreamHeaderOverUnix)
            }
            Some(other) => {
                let own = match other {
                    ServerAddr::Tcp(hp) => names_own_listener(hp, own_tcp),
                    ServerAddr::Unix(_) => None,
                };
                let Some(own) = own else {
                    // Another server: only the operator knows whether it trusts us.
                    return Ok(Upstream {
                        addr: other.clone(),
                        proxy_header: self.upstream_proxy_protocol,
                        is_own: false,
                        uncapped: None,
                    });
                };
                own_target(&own)
            }
        };
        // A connection to a local address comes from that same address.
        let from = target.ip();
        let proxy_header = proxy.is_some_and(|p| p.trusts(from));
        if self.upstream_proxy_protocol && !proxy_header {
            return Err(ConfigError::UpstreamHeaderUnheard(from));
        }
        if !proxy_header && !access.permits(from) {
            return Err(ConfigError::UpstreamRefused(from));
        }
        let addr = match &self.upstream {
            Some(given) => given.clone(),
            None => ServerAddr::Tcp(HostPort {
                host: target.ip().to_string(),
                port: target.port(),
            }),
        };
        Ok(Upstream {
            addr,
            proxy_header,
            is_own: true,
            uncapped: (!proxy_header).then_some(from),
        })
    }
}

/// Where to reach a listener bound at `bound`: over loopback when it listens
/// on every address.
fn own_target(bound: &SocketAddr) -> SocketAddr {
    let mut addr = *bound;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// The address `upstream` reaches one of `own_tcp` at, if it names one: same
/// port, and the listener's address or, for a wildcard listener, a loopback
/// address or the wildcard itself. A name is resolved here, once.
fn names_own_listener(upstream: &HostPort, own_tcp: &[SocketAddr]) -> Option<SocketAddr> {
    let resolved = upstream.resolve().ok()?;
    resolved.into_iter().find(|to| {
        own_tcp.iter().any(|bound| {
            let ip = to.ip().to_canonical();
            bound.port() == to.port()
                && (bound.ip().to_canonical() == ip
                    || (bound.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    })
}
