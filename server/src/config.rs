//! The validated server configuration: built once from the command line at
//! start-up, then shared read-only by every task.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use timecho_shared::stamp::MAX_STAMP_LEN;
use timecho_shared::{Precision, StampError, StampFormat, TimeFormat};

use crate::access::AccessList;
use crate::cli::ServeArgs;
use crate::descriptors::{self, Demand, Fitted};
use crate::host_port::{AddrError, HostPort, ServerAddr, DEFAULT_PORT};
use crate::proxy_protocol::ProxyPolicy;
use crate::signin::{AuthSource, StoreUrl};
use crate::tls::CertSource;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--time-format: {0}")]
    TimeFormat(StampError),
    #[error("--precision: {0}")]
    Precision(StampError),
    #[error("--precision only applies to rfc3339 and unix stamps")]
    PrecisionNotApplicable,
    #[error("--max-line must be at least 1 byte")]
    MaxLine,
    #[error("--max-connections must be at least 1")]
    MaxConnections,
    #[error("--stall-timeout must be more than 0")]
    StallTimeout,
    #[error("--tcp-tls and --redirect-http need a certificate: give --tls-cert and --tls-key, or --tls-self-signed")]
    TlsNeedsCertificate,
    #[error("--redirect-http needs the https listener; it cannot be used with --no-http")]
    RedirectNeedsHttp,
    #[error("--ws-ping must be more than 0")]
    WsPing,
    #[error("--token-lifetime must be at least 1s")]
    TokenLifetime,
    #[error(
        "--session-store needs --auth: it holds sign-outs, and without sign-in there are none"
    )]
    SessionStoreNeedsAuth,
    #[error("--max-websockets must be at least 1")]
    MaxWebsockets,
    #[error("--max-websockets-per-user must be at least 1")]
    MaxWebsocketsPerUser,
    #[error("--allow-origin {0:?}: an origin looks like https://example.org or http://host:8080")]
    Origin(String),
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
    fn resolve(flag: &'static str, given: &HostPort) -> Result<ListenAddr, ConfigError> {
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

    fn resolve_all(flag: &'static str, given: &[HostPort]) -> Result<Vec<ListenAddr>, ConfigError> {
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

/// The web page and WebSocket gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub http: ListenAddr,
    /// `None`: relay to this process's first TCP listener.
    pub upstream: Option<ServerAddr>,
    /// `--upstream-proxy-protocol`: the --upstream server trusts this host
    /// as a proxy and expects a PROXY header before the browser's bytes.
    pub upstream_proxy_protocol: bool,
    pub allowed_origins: Vec<String>,
    /// Host names answered besides the built-in ones: `--allow-host`, and the
    /// names the HTTP listeners were given.
    pub allowed_hosts: Vec<String>,
    pub max_sessions: usize,
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
    pub tcp: Vec<ListenAddr>,
    pub unix: Vec<PathBuf>,
    pub udp: Vec<ListenAddr>,
    pub gateway: Option<GatewayConfig>,
    /// A separate listener for /metrics, /healthz and /readyz.
    pub metrics: Option<ListenAddr>,
    /// Time between /readyz turning 503 and the listeners closing.
    pub shutdown_delay: Duration,
    pub proxy: Option<ProxyPolicy>,
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
/// Connections the --metrics and --redirect-http listeners serve at once.
pub const SMALL_LISTENER_CONNECTIONS: usize = 1024;

impl ServeConfig {
    /// Sets the connection and WebSocket limits the user left to their
    /// defaults to what the descriptor limit can hold, and keeps the verdict
    /// for start-up to report.
    fn fit_descriptors(&mut self, args: &ServeArgs, nofile: u64) {
        let count = |l: &[ListenAddr]| l.iter().map(|l| l.addrs.len()).sum::<usize>();
        let demand = Demand {
            line_listeners: count(&self.tcp) + count(&self.tcp_tls) + self.unix.len(),
            http_listeners: self.gateway.as_ref().map_or(0, |g| g.http.addrs.len()),
            headroom: HTTP_HEADROOM,
            gateway: self.gateway.is_some(),
            small_listeners: self.metrics.as_ref().map_or(0, |m| m.addrs.len())
                + self.redirect_http.as_ref().map_or(0, |r| r.addrs.len()),
            small: SMALL_LISTENER_CONNECTIONS,
        };
        let fitted = demand.fit(nofile, args.max_connections, args.max_websockets);
        self.protocol.limits.max_connections = fitted.max_connections;
        if let Some(gw) = &mut self.gateway {
            gw.max_sessions = fitted.max_websockets;
            // One sign-in must leave room for others however many it opens.
            gw.max_sessions_per_user = args
                .max_websockets_per_user
                .unwrap_or((gw.max_sessions / 4).max(1));
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

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
fn is_origin(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains('/'))
}

/// Names a self-signed certificate is made for: the local names, and the
/// names and specific addresses the TLS listeners were given.
fn listen_names<'a>(tls_listeners: impl Iterator<Item = &'a ListenAddr>) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for listen in tls_listeners {
        let ips = listen.addrs.iter().map(SocketAddr::ip);
        let given = listen.given.is_name().then(|| listen.given.host.clone());
        let specific = ips
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| ip.to_string());
        for name in given.into_iter().chain(specific) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The name an HTTP listener was given, which its `Host` header may carry.
fn host_name(listen: &ListenAddr) -> Option<String> {
    listen.given.is_name().then(|| listen.given.host.clone())
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl ServeConfig {
    /// The configuration `args` describe, for a process that may open the
    /// descriptors it may open now.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        Self::from_args_with(args, descriptors::limit())
    }

    /// As [`ServeConfig::from_args`], for a process that may open `nofile` descriptors.
    pub fn from_args_with(args: &ServeArgs, nofile: u64) -> Result<Self, ConfigError> {
        let format: TimeFormat = args.time_format.parse().map_err(ConfigError::TimeFormat)?;
        let precision = match (&args.precision, &format) {
            (None, TimeFormat::Unix) => Precision::Millis,
            (None, _) => Precision::Seconds,
            (Some(p), TimeFormat::Rfc3339 | TimeFormat::Unix) => {
                p.parse().map_err(ConfigError::Precision)?
            }
            (Some(_), _) => return Err(ConfigError::PrecisionNotApplicable),
        };
        let stamp = StampFormat {
            format,
            precision,
            utc: args.utc,
        };
        let longest_stamp = stamp.longest_len();
        if longest_stamp > MAX_STAMP_LEN {
            return Err(ConfigError::StampTooLong(longest_stamp));
        }
        if args.max_line == 0 {
            return Err(ConfigError::MaxLine);
        }
        if args.max_connections == Some(0) {
            return Err(ConfigError::MaxConnections);
        }
        if args.stall_timeout.is_zero() {
            return Err(ConfigError::StallTimeout);
        }
        let tcp = if args.tcp.is_empty() {
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT));
            vec![ListenAddr {
                given: HostPort {
                    host: Ipv4Addr::LOCALHOST.to_string(),
                    port: DEFAULT_PORT,
                },
                addrs: vec![local],
            }]
        } else {
            ListenAddr::resolve_all("--tcp", &args.tcp)?
        };
        let udp = ListenAddr::resolve_all("--udp", &args.udp)?;
        let tcp_tls = ListenAddr::resolve_all("--tcp-tls", &args.tcp_tls)?;
        let metrics = args
            .metrics
            .as_ref()
            .map(|m| ListenAddr::resolve("--metrics", m))
            .transpose()?;
        let redirect_http = args
            .redirect_http
            .as_ref()
            .map(|r| ListenAddr::resolve("--redirect-http", r))
            .transpose()?;
        if args.session_store.is_some() && args.auth.is_empty() {
            return Err(ConfigError::SessionStoreNeedsAuth);
        }
        let gateway = if args.no_http {
            None
        } else {
            if args.ws_ping.is_zero() {
                return Err(ConfigError::WsPing);
            }
            if args.token_lifetime < Duration::from_secs(1) {
                return Err(ConfigError::TokenLifetime);
            }
            if args.max_websockets == Some(0) {
                return Err(ConfigError::MaxWebsockets);
            }
            if args.max_websockets_per_user == Some(0) {
                return Err(ConfigError::MaxWebsocketsPerUser);
            }
            if let Some(bad) = args.allow_origin.iter().find(|o| !is_origin(o)) {
                return Err(ConfigError::Origin(bad.clone()));
            }
            let http = ListenAddr::resolve("--http", &args.http)?;
            let allowed_hosts = args
                .allow_host
                .iter()
                .cloned()
                .chain(host_name(&http))
                .chain(redirect_http.as_ref().and_then(host_name))
                .collect();
            Some(GatewayConfig {
                http,
                upstream: args.upstream.clone(),
                upstream_proxy_protocol: args.upstream_proxy_protocol,
                allowed_origins: args.allow_origin.clone(),
                allowed_hosts,
                max_sessions: 0,
                max_sessions_per_user: 0,
                ping_interval: args.ws_ping,
                reconnect_window: args.reconnect_window,
                auth: args.auth.clone(),
                session_key: args.session_key.clone(),
                token_lifetime: args.token_lifetime,
                session_store: args.session_store.clone(),
            })
        };
        let tls = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
            (Some(cert), Some(key), _) => Some(CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, true) => Some(CertSource::SelfSigned(listen_names(
                tcp_tls.iter().chain(gateway.as_ref().map(|g| &g.http)),
            ))),
            _ => None,
        };
        if tls.is_none() && (!tcp_tls.is_empty() || redirect_http.is_some()) {
            return Err(ConfigError::TlsNeedsCertificate);
        }
        if redirect_http.is_some() && gateway.is_none() {
            return Err(ConfigError::RedirectNeedsHttp);
        }
        let mut config = ServeConfig {
            tls,
            tcp_tls,
            redirect_http,
            gateway,
            metrics,
            descriptors: None,
            shutdown_delay: args.shutdown_delay,
            access: AccessList {
                allow: args.allow.clone(),
                deny: args.deny.clone(),
            },
            proxy: args.proxy_protocol.then(|| ProxyPolicy {
                trusted: args.trusted_proxy.clone(),
            }),
            tcp,
            unix: args.unix.clone(),
            udp,
            protocol: Protocol {
                framing: args.framing,
                stamp,
                limits: Limits {
                    max_line: args.max_line,
                    max_connections: 0,
                    max_per_client: args.max_connections_per_client,
                    partial_timeout: non_zero(args.partial_timeout),
                    idle_timeout: non_zero(args.idle_timeout),
                    stall_timeout: args.stall_timeout,
                    drain_timeout: args.drain_timeout,
                    handshake_timeout: args.handshake_timeout,
                    proxy_timeout: args.proxy_timeout,
                    header_timeout: args.header_timeout,
                    body_timeout: args.body_timeout,
                    linger_timeout: args.linger_timeout,
                    connect_timeout: args.connect_timeout,
                },
            },
        };
        config.fit_descriptors(args, nofile);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn config(args: &[&str]) -> Result<ServeConfig, ConfigError> {
        let cli = Cli::try_parse_from(["timecho", "serve"].iter().chain(args)).expect("parses");
        let Command::Serve(serve) = cli.command else {
            unreachable!("serve was given")
        };
        ServeConfig::from_args_with(&serve, 1 << 20)
    }

    #[test]
    fn defaults_listen_on_the_tutorial_port() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.tcp.len(), 1);
        assert_eq!(c.tcp[0].addrs, vec!["127.0.0.1:8899".parse().unwrap()]);
        assert_eq!(c.protocol.stamp.format, TimeFormat::Ctime);
        assert_eq!(c.protocol.limits.max_line, 64 * 1024);
    }

    #[test]
    fn invalid_pattern_is_refused_at_start_up() {
        let err = config(&["--time-format", "%Y %Q"]).unwrap_err();
        assert!(
            err.to_string().contains("invalid strftime pattern"),
            "{err}"
        );
    }

    #[test]
    fn precision_is_checked_against_the_format() {
        assert!(matches!(
            config(&["--precision", "ms"]),
            Err(ConfigError::PrecisionNotApplicable)
        ));
        let c = config(&["--time-format", "rfc3339", "--precision", "us"]).unwrap();
        assert_eq!(c.protocol.stamp.precision, Precision::Micros);
    }

    fn parse_error(args: &[&str]) -> String {
        Cli::try_parse_from(["timecho", "serve"].iter().chain(args))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn listen_flags_take_names_and_bind_every_address() {
        let c = config(&["--tcp", "localhost:8899", "--http", "localhost:8080"]).unwrap();
        assert_eq!(c.tcp[0].given.to_string(), "localhost:8899");
        let gw = c.gateway.unwrap();
        for (listen, port) in [(&c.tcp[0], 8899), (&gw.http, 8080)] {
            assert!(!listen.addrs.is_empty());
            assert!(
                listen
                    .addrs
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == port),
                "{listen:?}"
            );
        }
        assert!(gw.allowed_hosts.contains(&"localhost".to_owned()));
    }

    #[test]
    fn listen_flags_take_address_literals() {
        let c = config(&[
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "[::1]:8899",
            "--http",
            "[::1]:8080",
            "--metrics",
            "127.0.0.1:9090",
        ])
        .unwrap();
        let addrs = |l: &ListenAddr| l.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(addrs(&c.tcp[0]), ["127.0.0.1:0"]);
        assert_eq!(addrs(&c.udp[0]), ["[::1]:8899"]);
        assert_eq!(addrs(&c.gateway.unwrap().http), ["[::1]:8080"]);
        assert_eq!(addrs(&c.metrics.unwrap()), ["127.0.0.1:9090"]);
    }

    #[test]
    fn a_name_that_does_not_resolve_is_refused_naming_the_flag() {
        for flag in ["--tcp", "--udp", "--http", "--metrics"] {
            let err = config(&[flag, "example.invalid:1"])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{flag} example.invalid:1: cannot resolve")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_address_without_a_port_is_refused_naming_the_flag() {
        for flag in ["--tcp", "--http", "--upstream", "--redirect-http"] {
            let err = parse_error(&[flag, "localhost"]);
            assert!(
                err.contains(&format!("'{flag} <")) && err.contains("has no port"),
                "{err}"
            );
        }
    }

    #[test]
    fn upstream_is_checked_but_left_for_each_session_to_resolve() {
        let c = config(&["--upstream", "localhost:8899"]).unwrap();
        let upstream = c.gateway.unwrap().upstream.map(|u| u.to_string());
        assert_eq!(upstream.as_deref(), Some("localhost:8899"));
        let c = config(&["--upstream", "example.invalid:8899"]).unwrap();
        let upstream = c.gateway.unwrap().upstream.map(|u| u.to_string());
        assert_eq!(upstream.as_deref(), Some("example.invalid:8899"));
        let err = parse_error(&["--upstream", "ws://localhost:8899/"]);
        assert!(err.contains("--upstream"), "{err}");
        let c = config(&["--upstream", "unix:/run/timecho.sock"]).unwrap();
        assert_eq!(
            c.gateway.unwrap().upstream,
            Some(ServerAddr::Unix("/run/timecho.sock".into()))
        );
    }

    fn upstream_for(args: &[&str], own: &[&str]) -> Result<Upstream, ConfigError> {
        let own: Vec<SocketAddr> = own.iter().map(|a| a.parse().unwrap()).collect();
        Ok(config(args)?.upstream(&own)?.expect("a gateway"))
    }

    #[test]
    fn the_gateway_sends_a_proxy_header_exactly_when_its_own_listener_reads_one() {
        let tcp = |host: &str, port| {
            ServerAddr::Tcp(HostPort {
                host: host.to_owned(),
                port,
            })
        };
        // No PROXY protocol: nothing to send.
        let u = upstream_for(&[], &["127.0.0.1:8899"]).unwrap();
        assert_eq!(
            u,
            Upstream {
                addr: tcp("127.0.0.1", 8899),
                proxy_header: false,
                is_own: true,
                uncapped: Some(Ipv4Addr::LOCALHOST.into()),
            }
        );
        // Loopback trusted (the default): the listener reads one, so it is sent.
        let u = upstream_for(&["--proxy-protocol"], &["0.0.0.0:8899"]).unwrap();
        assert_eq!(
            u,
            Upstream {
                addr: tcp("127.0.0.1", 8899),
                proxy_header: true,
                is_own: true,
                uncapped: None,
            }
        );
        // The shipped file's 10/8: the listener serves the gateway as a client.
        let shipped = ["--proxy-protocol", "--trusted-proxy", "10.0.0.0/8"];
        let u = upstream_for(&shipped, &["0.0.0.0:8899"]).unwrap();
        assert!(!u.proxy_header);
        // An --upstream naming the own listener reads the same way...
        for named in ["127.0.0.1:8899", "localhost:8899", "0.0.0.0:8899"] {
            let u =
                upstream_for(&["--proxy-protocol", "--upstream", named], &["[::]:8899"]).unwrap();
            assert!(u.proxy_header, "{named}");
            assert_eq!(u.addr.to_string(), named);
        }
        // ...while another server gets a header only when the operator says so.
        let u = upstream_for(
            &["--proxy-protocol", "--upstream", "127.0.0.1:9999"],
            &["127.0.0.1:8899"],
        )
        .unwrap();
        assert!(!u.proxy_header);
        let u = upstream_for(
            &["--upstream", "127.0.0.1:9999", "--upstream-proxy-protocol"],
            &["127.0.0.1:8899"],
        )
        .unwrap();
        assert!(u.proxy_header);
    }

    #[test]
    fn an_upstream_that_cannot_work_is_refused() {
        assert!(matches!(
            upstream_for(&["--allow", "10.0.0.0/8"], &["0.0.0.0:8899"]),
            Err(ConfigError::UpstreamRefused(ip)) if ip == IpAddr::from(Ipv4Addr::LOCALHOST)
        ));
        // With the header read, the listener checks the browser instead.
        assert!(upstream_for(
            &["--allow", "10.0.0.0/8", "--proxy-protocol"],
            &["0.0.0.0:8899"]
        )
        .is_ok());
        assert!(matches!(
            upstream_for(
                &[
                    "--upstream",
                    "127.0.0.1:8899",
                    "--upstream-proxy-protocol",
                    "--proxy-protocol",
                    "--trusted-proxy",
                    "10.0.0.0/8"
                ],
                &["127.0.0.1:8899"]
            ),
            Err(ConfigError::UpstreamHeaderUnheard(_))
        ));
        assert!(matches!(
            upstream_for(
                &[
                    "--upstream",
                    "unix:/run/t.sock",
                    "--upstream-proxy-protocol"
                ],
                &["127.0.0.1:8899"]
            ),
            Err(ConfigError::UpstreamHeaderOverUnix)
        ));
        assert!(matches!(
            upstream_for(&[], &[]),
            Err(ConfigError::NoOwnUpstream)
        ));
    }
}
