//! From the command line to the validated configuration: every value was
//! parsed where it entered (clap's value parsers), and here the values are
//! put together, the names resolved, and what depends on several of them
//! checked once, before anything is bound.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use timecho_shared::stamp::MAX_STAMP_LEN;
use timecho_shared::{Precision, StampFormat, TimeFormat};

use super::ServeArgs;
use crate::access::AccessList;
use crate::config::{
    ConfigError, GatewayConfig, Limits, ListenAddr, Protocol, ServeConfig, ANY_ORIGIN,
};
use crate::descriptors;
use crate::forwarded::ForwardedPolicy;
use crate::proxy_protocol::ProxyPolicy;
use crate::tls::CertSource;
use timecho_shared::host_port::{HostPort, DEFAULT_PORT};

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

/// This machine's host name as an instance name, or `timecho` when it has
/// none that fits one.
fn default_instance() -> String {
    let name = nix::unistd::gethostname().ok();
    match name
        .as_ref()
        .and_then(|n| n.to_str())
        .map(super::parse_instance)
    {
        Some(Ok(name)) => name,
        _ => "timecho".to_owned(),
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl ServeArgs {
    /// The configuration these arguments describe, for a process that may
    /// open the descriptors it may open now.
    pub fn config(&self) -> Result<ServeConfig, ConfigError> {
        self.config_with(descriptors::limit())
    }

    /// As [`ServeArgs::config`], for a process that may open `nofile` descriptors.
    pub fn config_with(&self, nofile: u64) -> Result<ServeConfig, ConfigError> {
        let args = self;
        let format = args.time_format.clone();
        let precision = match (args.precision, &format) {
            (None, TimeFormat::Unix) => Precision::Millis,
            (None, _) => Precision::Seconds,
            (Some(p), TimeFormat::Rfc3339 | TimeFormat::Unix) => p,
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
        if !args.auth.is_empty() && args.allow_origin.iter().any(|o| o == ANY_ORIGIN) {
            return Err(ConfigError::AnyOriginWithAuth);
        }
        let gateway = if args.no_http {
            None
        } else {
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
                max_frame: args.max_line,
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
            instance: args.instance.clone().unwrap_or_else(default_instance),
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
            forwarded: args.forwarded_headers.then(|| ForwardedPolicy {
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
        config.fit_descriptors(
            args.max_connections,
            args.max_websockets,
            args.max_websockets_per_user,
            nofile,
        );
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::Upstream;
    use clap::Parser;
    use std::net::{IpAddr, Ipv4Addr};
    use timecho_shared::host_port::ServerAddr;
    use timecho_shared::{Precision, TimeFormat};

    fn config(args: &[&str]) -> Result<ServeConfig, ConfigError> {
        let cli = Cli::try_parse_from(["timecho", "serve"].iter().chain(args)).expect("parses");
        let Command::Serve(serve) = cli.command else {
            unreachable!("serve was given")
        };
        serve.config_with(1 << 20)
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
    fn origins_are_taken_as_web_developers_write_them() {
        let c = config(&[
            "--allow-origin",
            "http://localhost:3000/",
            "--allow-origin",
            "null",
            "--allow-origin",
            "*",
        ])
        .expect("valid origins");
        let origins = &c.gateway.expect("a gateway").allowed_origins;
        assert_eq!(origins, &["http://localhost:3000", "null", "*"]);
        assert!(matches!(
            config(&["--allow-origin", "*", "--auth", "token:/nonexistent"]),
            Err(ConfigError::AnyOriginWithAuth)
        ));
    }

    #[test]
    fn invalid_pattern_is_refused_at_start_up() {
        let err = parse_error(&["--time-format", "%Y %Q"]);
        assert!(err.contains("invalid strftime pattern"), "{err}");
    }

    #[test]
    fn every_typed_value_is_checked_where_it_enters() {
        for (flag, value, said) in [
            ("--max-line", "0", "0 is too small: the least is 1"),
            ("--max-connections", "0", "0 is too small: the least is 1"),
            ("--max-websockets", "0", "0 is too small: the least is 1"),
            ("--stall-timeout", "0", "must be more than 0"),
            ("--ws-ping", "0", "must be more than 0"),
            ("--token-lifetime", "500ms", "at least 1s"),
            ("--allow-origin", "example.org", "an origin looks like"),
            ("--precision", "ns", "unknown precision"),
        ] {
            let err = parse_error(&[flag, value]);
            assert!(
                err.contains(flag) && err.contains(said),
                "{flag} {value}: {err}"
            );
        }
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

    #[test]
    fn serve_help_groups_its_flags_under_headings() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_help()
            .to_string();
        for heading in [
            "Listeners:",
            "Framing and stamps:",
            "Limits and timeouts:",
            "Gateway (web page and /ws):",
            "TLS:",
            "Sign-in:",
            "Operations:",
        ] {
            assert!(help.contains(heading), "no {heading} in:\n{help}");
        }
        assert!(
            !help.contains("Tue Nov  4"),
            "4 November 2026 is a Wednesday"
        );
    }
}
