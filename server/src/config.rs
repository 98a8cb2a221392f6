//! The validated server configuration: built once from the command line at
//! start-up, then shared read-only by every task.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use timecho_shared::{Precision, StampError, StampFormat, TimeFormat};

use crate::access::AccessList;
use crate::cli::ServeArgs;
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
    #[error("--allow-origin {0:?}: an origin looks like https://example.org or http://host:8080")]
    Origin(String),
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
    pub allowed_origins: Vec<String>,
    /// Host names answered besides the built-in ones: `--allow-host`, and the
    /// names the HTTP listeners were given.
    pub allowed_hosts: Vec<String>,
    pub max_sessions: usize,
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
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let format: TimeFormat = args.time_format.parse().map_err(ConfigError::TimeFormat)?;
        let precision = match (&args.precision, &format) {
            (None, TimeFormat::Unix) => Precision::Millis,
            (None, _) => Precision::Seconds,
            (Some(p), TimeFormat::Rfc3339 | TimeFormat::Unix) => {
                p.parse().map_err(ConfigError::Precision)?
            }
            (Some(_), _) => return Err(ConfigError::PrecisionNotApplicable),
        };
        if args.max_line == 0 {
            return Err(ConfigError::MaxLine);
        }
        if args.max_connections == 0 {
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
            if args.max_websockets == 0 {
                return Err(ConfigError::MaxWebsockets);
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
                allowed_origins: args.allow_origin.clone(),
                allowed_hosts,
                max_sessions: args.max_websockets,
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
        Ok(ServeConfig {
            tls,
            tcp_tls,
            redirect_http,
            gateway,
            metrics,
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
                stamp: StampFormat {
                    format,
                    precision,
                    utc: args.utc,
                },
                limits: Limits {
                    max_line: args.max_line,
                    max_connections: args.max_connections,
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
        })
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
        ServeConfig::from_args(&serve)
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
}
