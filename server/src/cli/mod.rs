//! The command line: every flag, its default and its help text, in one place,
//! and (in `serve`) the configuration built from them.

mod serve;

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::config::Framing;
use crate::config::ANY_ORIGIN;
use timecho_shared::duration_arg::{parse_duration, parse_positive_duration, parse_whole_seconds};
use timecho_shared::host_port::{HostPort, ServerAddr};
use timecho_shared::{Precision, TimeFormat};

/// `timecho --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TIMECHO_COMMIT"),
    ")"
);

/// A whole number from `min` to `max`, refused in words that say what is
/// allowed (the standard library's "invalid digit found in string" does not).
fn whole_number(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a whole number in digits (e.g. 1024; no units or separators)"
        ));
    }
    match digits.parse::<u64>() {
        Ok(n) if n < min => Err(format!("{n} is too small: the least is {min}")),
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{digits} is too large: the most is {max}")),
    }
}

/// A count that must be at least 1 (a limit of 0 would refuse everything).
fn at_least_one(text: &str) -> Result<usize, String> {
    whole_number(text, 1, usize::MAX as u64).map(|n| n as usize)
}

/// As [`at_least_one`], for counts kept in 32 bits.
fn at_least_one_u32(text: &str) -> Result<u32, String> {
    whole_number(text, 1, u32::MAX.into()).map(|n| n as u32)
}

/// `clock --samples`: enough to halve the error bound many times, few
/// enough to finish.
fn samples(text: &str) -> Result<u32, String> {
    whole_number(text, 1, 1000).map(|n| n as u32)
}

/// A `--pin` value: `sha256:` and 64 hex digits, colons allowed between them.
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!(
            "{text:?} is not a pin: write sha256: and the 64 hex digits of the certificate's \
             SHA-256 fingerprint (as `timecho serve --tls-self-signed` prints it)"
        )
    };
    let hex = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .ok_or_else(bad)?;
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (byte, pair) in pin.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(pin)
}

/// An `--instance` name: 1 to 64 visible ASCII characters, so that it goes
/// as it is into an HTTP header, JSON and a log line.
pub fn parse_instance(name: &str) -> Result<String, String> {
    if (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(name.to_owned())
    } else {
        Err(
            "an instance name is 1 to 64 visible ASCII characters (no spaces), \
             such as web-2 or eu-west-1a"
                .to_owned(),
        )
    }
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`
/// (a trailing `/`, as copied from an address bar, is dropped); `null`, the
/// origin of a page opened from `file://` or a sandboxed frame; or `*`, any
/// origin (a test server's setting: refused together with `--auth`).
fn parse_origin(s: &str) -> Result<String, String> {
    if s == ANY_ORIGIN || s.eq_ignore_ascii_case("null") {
        return Ok(s.to_ascii_lowercase());
    }
    let s = s.strip_suffix('/').unwrap_or(s);
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains('/') => Ok(s.to_owned()),
        _ => Err(
            "an origin looks like https://example.org or http://localhost:3000; \
             `null` is a page opened from a file, `*` any page"
                .to_owned(),
        ),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "timecho",
    version = VERSION,
    about = "A timestamp echo service: every line you send comes back as `[<time>] <line>`.",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the timestamp server (TCP, unix socket, UDP) and the web page.
    Serve(Box<ServeArgs>),
    /// Talk to a timestamp server: type a line, see it come back stamped.
    ///
    /// On a terminal it prompts `> `; what the server sends is shown as it
    /// arrives, and the session ends when the server closes. An empty line,
    /// Ctrl-D or Ctrl-C ends it from your side. With piped input every line is
    /// sent and it exits once all are answered.
    Client(ClientArgs),
    /// Measure how far this machine's clock is from a timestamp server's, with an
    /// error bound (NTP's method; `htpdate`'s for one-second stamps). Exit status:
    /// 0 within --max-offset, 1 beyond it, 2 when it could not measure; with
    /// --nagios, a monitoring plugin's (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Clock(ClockArgs),
    /// Send probes to a timestamp server and report its round trips, as ping(8) does:
    /// one line per reply (its size, sequence number, round trip and the server's
    /// stamp) and a summary. Over TCP, --unix, --udp, --tls and ws:// or wss:// URLs.
    /// Exit status: 0 when replies came, 1 when none did (or fewer than -c within
    /// -w), 2 on other errors.
    Ping(PingArgs),
    /// Print a `user:argon2-hash` line for a `--auth basic:FILE` file; the password
    /// is read from the terminal (not echoed) or from standard input.
    HashPassword {
        /// The user name.
        user: String,
    },
    /// Ask a server's /readyz (or another http:// URL): exit status 0 when it answers
    /// 200, 1 otherwise. For a container's HEALTHCHECK.
    Health(crate::health::HealthArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file; its keys are these flags' names
    /// (`max-line = 1024`, `tcp = ["0.0.0.0:8899"]`). Environment variables
    /// (TIMECHO_MAX_LINE...) override the file, and flags override both.
    #[arg(
        help_heading = "Configuration",
        long,
        value_name = "PATH",
        env = "TIMECHO_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Print the effective configuration, in the config file's format, and exit.
    #[arg(help_heading = "Configuration", long)]
    pub print_config: bool,

    /// TCP address to listen on (e.g. 0.0.0.0:8899, [::1]:8899, localhost:8899); repeatable.
    /// A port alone (8899 or :8899) listens on 127.0.0.1, as on every listen flag.
    /// A name is resolved once at start-up and every address it has is bound (an address
    /// this machine cannot bind, such as ::1 without IPv6, is skipped with a warning when
    /// another binds); with port 0 each address gets its own port.
    #[arg(
        help_heading = "Listeners",
        value_parser = HostPort::parse_listen,
        long = "tcp",
        value_name = "ADDR",
        default_value = "127.0.0.1:8899",
        env = "TIMECHO_TCP",
        value_delimiter = ','
    )]
    pub tcp: Vec<HostPort>,

    /// Unix stream socket to listen on; repeatable. A stale socket file left by a crashed
    /// server is replaced; one a running server still listens on is not.
    #[arg(
        help_heading = "Listeners",
        long = "unix",
        value_name = "PATH",
        env = "TIMECHO_UNIX",
        value_delimiter = ','
    )]
    pub unix: Vec<PathBuf>,

    /// UDP address to listen on; each datagram is answered with one stamped datagram, within
    /// a per-source budget (3x the bytes received plus 1 KiB a minute) so that a forged
    /// source address cannot make timecho an amplifier; repeatable. A name is bound on
    /// every address it has, as for --tcp.
    #[arg(
        help_heading = "Listeners",
        value_parser = HostPort::parse_listen,
        long = "udp",
        value_name = "ADDR",
        env = "TIMECHO_UDP",
        value_delimiter = ','
    )]
    pub udp: Vec<HostPort>,

    /// How a TCP or unix stream is cut into messages.
    #[arg(help_heading = "Framing and stamps", long, value_enum, default_value_t = Framing::Line, env = "TIMECHO_FRAMING")]
    pub framing: Framing,

    /// Stamp layout: ctime (`Wed Nov  4 09:05:01 2026`), rfc3339, unix (seconds with a
    /// fraction), or a strftime pattern such as "%Y-%m-%d %H:%M:%S".
    #[arg(
        help_heading = "Framing and stamps",
        long,
        value_name = "FORMAT",
        default_value = "ctime",
        env = "TIMECHO_TIME_FORMAT"
    )]
    pub time_format: TimeFormat,

    /// Fraction digits for rfc3339 and unix stamps: s, ms or us.
    /// Default: s for rfc3339, ms for unix.
    #[arg(
        help_heading = "Framing and stamps",
        long,
        value_name = "s|ms|us",
        env = "TIMECHO_PRECISION"
    )]
    pub precision: Option<Precision>,

    /// Stamp in UTC instead of the local time zone.
    #[arg(help_heading = "Framing and stamps", long, env = "TIMECHO_UTC", value_parser = BoolishValueParser::new())]
    pub utc: bool,

    /// Longest line accepted, in bytes; a longer one is answered with an error line and skipped.
    #[arg(help_heading = "Framing and stamps", long, value_name = "BYTES", default_value_t = timecho_shared::DEFAULT_MAX_LINE, value_parser = at_least_one, env = "TIMECHO_MAX_LINE")]
    pub max_line: usize,

    /// Most clients served at once per listener; past it a new client is told the server
    /// is busy and closed. Default: 10,000, or less if the descriptor limit (ulimit -n,
    /// LimitNOFILE=) cannot hold that many on every listener at once.
    #[arg(help_heading = "Limits and timeouts", long, value_name = "N", value_parser = at_least_one, env = "TIMECHO_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections one client (an IPv4 address, or an IPv6 /64; behind a trusted
    /// proxy, the client its header names) may hold at once on each stream listener, so
    /// that one address cannot take every slot; past it, new ones are refused with a
    /// reason. Default: a quarter of the listener's limit (--max-connections, or
    /// --max-websockets plus 1,024 for HTTP). The gateway's own sessions to this
    /// process's TCP listener are not counted against its address.
    #[arg(
        help_heading = "Limits and timeouts",
        long,
        value_name = "N",
        value_parser = at_least_one_u32,
        env = "TIMECHO_MAX_CONNECTIONS_PER_CLIENT"
    )]
    pub max_connections_per_client: Option<u32>,

    /// A partial line (no newline yet) left idle this long is answered as a message
    /// (the tutorial's client sends no newline), until the client has ended a line
    /// with a newline: then its lines wait for their newline. 0 turns it off.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration, env = "TIMECHO_PARTIAL_TIMEOUT")]
    pub partial_timeout: Duration,

    /// Close a connection that sends nothing for this long. 0 turns it off.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "TIMECHO_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,

    /// Drop a client that does not read its replies for this long.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive_duration, env = "TIMECHO_STALL_TIMEOUT")]
    pub stall_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to let connections finish their replies before exiting.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, env = "TIMECHO_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,

    /// How long a TLS client may take to complete its handshake (https, --tcp-tls).
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration, env = "TIMECHO_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Duration,

    /// How long a trusted proxy may take to send its PROXY protocol header.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration, env = "TIMECHO_PROXY_TIMEOUT")]
    pub proxy_timeout: Duration,

    /// How long an HTTP client may take to send a request's headers, counted from
    /// the connection (or the previous response): silent and trickling clients are cut off.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration, env = "TIMECHO_HEADER_TIMEOUT")]
    pub header_timeout: Duration,

    /// How long an HTTP client may take to send a request's body.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration, env = "TIMECHO_BODY_TIMEOUT")]
    pub body_timeout: Duration,

    /// After closing a connection, how long to read and discard what the client still
    /// sends, so that our last reply or close frame is not destroyed by a reset; also
    /// how long a closing WebSocket waits for the browser's close frame.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, env = "TIMECHO_LINGER_TIMEOUT")]
    pub linger_timeout: Duration,

    /// How long the gateway waits for the timestamp server (--upstream) to accept a
    /// session's connection; past it the WebSocket closes with 1011.
    #[arg(allow_hyphen_values = true, help_heading = "Limits and timeouts", long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration, env = "TIMECHO_CONNECT_TIMEOUT")]
    pub connect_timeout: Duration,

    /// HTTP address for the web page and its WebSocket gateway (`/ws`); a name is
    /// bound on every address it has, as for --tcp.
    #[arg(
        help_heading = "Listeners",
        value_parser = HostPort::parse_listen,
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "TIMECHO_HTTP"
    )]
    pub http: HostPort,

    /// Serve no web page and no WebSocket gateway.
    #[arg(help_heading = "Listeners", long, conflicts_with_all = ["http", "upstream", "upstream_proxy_protocol", "allow_origin", "allow_host", "auth"], env = "TIMECHO_NO_HTTP", value_parser = BoolishValueParser::new())]
    pub no_http: bool,

    /// Timestamp server (HOST:PORT, or unix:PATH for a unix socket) that each WebSocket
    /// is relayed to; the browser can never choose it. A name is resolved each time a
    /// session connects, and each of its addresses is tried. Default: this process's
    /// first TCP listener.
    #[arg(
        help_heading = "Gateway (web page and /ws)",
        long,
        value_name = "HOST:PORT|unix:PATH",
        env = "TIMECHO_UPSTREAM"
    )]
    pub upstream: Option<ServerAddr>,

    /// Introduce each browser to the --upstream server with a PROXY v2 header, for an
    /// upstream that trusts this host as a proxy (and so would read the browser's first
    /// bytes as a header without one). Decided by itself when the gateway relays to this
    /// process's own TCP listener: the header is sent exactly when --proxy-protocol
    /// and --trusted-proxy make that listener read one.
    #[arg(help_heading = "Gateway (web page and /ws)", long, requires = "upstream", env = "TIMECHO_UPSTREAM_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    pub upstream_proxy_protocol: bool,

    /// Also let pages from this origin (e.g. https://example.org, http://localhost:3000) open
    /// `/ws` and the API; repeatable. `null` allows pages opened from a file, `*` any page (for
    /// a test server; not with --auth). Pages served by this gateway, and clients that send no
    /// Origin, are always allowed.
    #[arg(
        help_heading = "Gateway (web page and /ws)",
        long = "allow-origin",
        value_name = "ORIGIN",
        env = "TIMECHO_ALLOW_ORIGIN",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    pub allow_origin: Vec<String>,

    /// Also answer HTTP requests whose Host is this name (`*.example.org` matches one
    /// label); repeatable. Always answered: localhost, loopback addresses, the --http
    /// address or name (any address literal when it is a wildcard) and the TLS
    /// certificate's names. Other names get 421, which stops DNS rebinding.
    #[arg(
        help_heading = "Gateway (web page and /ws)",
        long = "allow-host",
        value_name = "NAME",
        env = "TIMECHO_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,

    /// Most WebSocket sessions open at once; past it new ones get 503. Default: 10,000, or
    /// less if the descriptor limit cannot hold that many (each takes two or three).
    #[arg(help_heading = "Gateway (web page and /ws)", long, value_name = "N", value_parser = at_least_one, env = "TIMECHO_MAX_WEBSOCKETS")]
    pub max_websockets: Option<usize>,

    /// Most WebSocket sessions one sign-in may hold open at once (a user, whichever way they
    /// signed in, or one bearer token); past it new ones get 429. Default: a quarter of
    /// --max-websockets, at least 1.
    #[arg(help_heading = "Sign-in", long, value_name = "N", value_parser = at_least_one, env = "TIMECHO_MAX_WEBSOCKETS_PER_USER")]
    pub max_websockets_per_user: Option<usize>,

    /// Ping each WebSocket this often; a peer silent for two intervals is dropped.
    #[arg(allow_hyphen_values = true, help_heading = "Gateway (web page and /ws)", long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive_duration, env = "TIMECHO_WS_PING")]
    pub ws_ping: Duration,

    /// On shutdown, WebSockets close with 1012 (restart) naming this window, and
    /// clients come back at a random moment within it instead of all at once.
    #[arg(allow_hyphen_values = true, help_heading = "Gateway (web page and /ws)", long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, env = "TIMECHO_RECONNECT_WINDOW")]
    pub reconnect_window: Duration,

    /// Also serve /metrics, /healthz and /readyz on this address (they are always on --http);
    /// a name is bound on every address it has, as for --tcp.
    #[arg(help_heading = "Listeners", long, value_parser = HostPort::parse_listen, value_name = "ADDR", env = "TIMECHO_METRICS")]
    pub metrics: Option<HostPort>,

    /// On SIGTERM, report not ready on /readyz for this long before closing the
    /// listeners, so a load balancer stops sending new clients first.
    #[arg(allow_hyphen_values = true, help_heading = "Operations", long, value_name = "DURATION", default_value = "0", value_parser = parse_duration, env = "TIMECHO_SHUTDOWN_DELAY")]
    pub shutdown_delay: Duration,

    /// This instance's name, so that behind a balancer one can tell which answered: in
    /// /api/config, in an X-Timecho-Instance header on every HTTP answer, and in the page's
    /// status tooltip. Default: the host name.
    #[arg(
        help_heading = "Operations",
        long,
        value_name = "NAME",
        env = "TIMECHO_INSTANCE",
        value_parser = parse_instance
    )]
    pub instance: Option<String>,

    /// Expect a PROXY protocol (v1 or v2) header on TCP connections from
    /// --trusted-proxy addresses, and log the client it names.
    #[arg(help_heading = "Operations", long, env = "TIMECHO_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: bool,

    /// Take each HTTP request's client from its X-Forwarded-For or Forwarded header when the
    /// peer is a --trusted-proxy (an HTTP balancer that sends no PROXY header: nginx, Traefik,
    /// a cloud load balancer): the right-most address in it that is not itself trusted. That
    /// client then counts for the sign-in limit, the per-client caps and --allow/--deny.
    /// From anyone else the headers are ignored.
    #[arg(help_heading = "Operations", long, env = "TIMECHO_FORWARDED_HEADERS", value_parser = BoolishValueParser::new())]
    pub forwarded_headers: bool,

    /// Address range (CIDR) whose PROXY protocol headers (and, with --forwarded-headers,
    /// X-Forwarded-For and Forwarded headers) are believed; repeatable. Peers outside it
    /// are served as direct clients.
    #[arg(
        help_heading = "Operations",
        long,
        value_name = "CIDR",
        default_value = "127.0.0.0/8,::1/128",
        env = "TIMECHO_TRUSTED_PROXY",
        value_delimiter = ',',
        value_parser = crate::access::parse_rule
    )]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Only clients from this address range (CIDR) may connect, on every listener; repeatable.
    #[arg(
        help_heading = "Operations",
        long,
        value_name = "CIDR",
        env = "TIMECHO_ALLOW",
        value_delimiter = ',',
        value_parser = crate::access::parse_rule
    )]
    pub allow: Vec<ipnet::IpNet>,

    /// Clients from this address range (CIDR) get nothing, on every listener; repeatable.
    /// Deny wins over allow.
    #[arg(help_heading = "Operations", long, value_name = "CIDR", env = "TIMECHO_DENY", value_delimiter = ',', value_parser = crate::access::parse_rule)]
    pub deny: Vec<ipnet::IpNet>,

    /// TLS certificate chain (PEM) for https/wss on --http and for --tcp-tls; needs --tls-key.
    /// Reloaded on SIGHUP.
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "PATH",
        env = "TIMECHO_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) matching --tls-cert.
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "PATH",
        env = "TIMECHO_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Generate a certificate at start-up for the listen names (for local use);
    /// its SHA-256 fingerprint is printed so it can be checked.
    #[arg(help_heading = "TLS", long, env = "TIMECHO_TLS_SELF_SIGNED", conflicts_with = "tls_cert", value_parser = BoolishValueParser::new())]
    pub tls_self_signed: bool,

    /// TCP address for the timestamp protocol inside TLS (openssl s_client, ncat --ssl,
    /// timecho client --tls); repeatable; a name is bound on every address it has, as for
    /// --tcp. Needs a certificate.
    #[arg(
        help_heading = "Listeners",
        value_parser = HostPort::parse_listen,
        long,
        value_name = "ADDR",
        env = "TIMECHO_TCP_TLS",
        value_delimiter = ','
    )]
    pub tcp_tls: Vec<HostPort>,

    /// Plain http address that redirects every request to the https listener; a name is
    /// bound on every address it has, as for --tcp.
    #[arg(help_heading = "Listeners", long, value_parser = HostPort::parse_listen, value_name = "ADDR", env = "TIMECHO_REDIRECT_HTTP")]
    pub redirect_http: Option<HostPort>,

    /// Require sign-in for the page's WebSocket and /ws: `basic:FILE` (lines of
    /// `user:argon2-hash`, made with `timecho hash-password`) and/or `token:FILE`
    /// (one bearer token per line, for scripts); repeatable. The raw TCP, unix and
    /// UDP listeners stay open-protocol: protect them with --allow, TLS or loopback.
    #[arg(
        help_heading = "Sign-in",
        long,
        value_name = "basic:FILE|token:FILE",
        env = "TIMECHO_AUTH",
        value_delimiter = ','
    )]
    pub auth: Vec<crate::signin::AuthSource>,

    /// Sign session tokens with the key in FILE (32 random bytes or more, e.g.
    /// `head -c 32 /dev/urandom | base64`; a shorter or patterned key stops
    /// start-up), so that every instance given the same file honours a sign-in
    /// made on any of them. Re-read on SIGHUP; the previous key stays valid for
    /// one token lifetime. Without it each process has a random key of its own.
    #[arg(
        help_heading = "Sign-in",
        long,
        value_name = "FILE",
        env = "TIMECHO_SESSION_KEY",
        requires = "auth"
    )]
    pub session_key: Option<std::path::PathBuf>,

    /// How long one sign-in token is accepted; the open page renews it well
    /// before, and a page closed for longer asks again. Without --session-store,
    /// other instances refuse a signed-out session only when its tokens expire,
    /// and keep renewing a copy of the cookie (see the README).
    #[arg(allow_hyphen_values = true, help_heading = "Sign-in", long, value_name = "DURATION", default_value = "10m", value_parser = parse_whole_seconds, env = "TIMECHO_TOKEN_LIFETIME")]
    pub token_lifetime: Duration,

    /// Share sign-outs between instances through this Redis-compatible server
    /// (redis://HOST:PORT or redis://HOST:PORT/DB): every instance then refuses
    /// a signed-out session and closes its sockets at once. Each session cookie
    /// is checked there, with a deadline; while it does not answer, cookie
    /// sessions get 503. Reached at start-up, or the server does not start.
    /// Needs --auth.
    #[arg(
        help_heading = "Sign-in",
        long,
        value_name = "URL",
        env = "TIMECHO_SESSION_STORE"
    )]
    pub session_store: Option<crate::signin::StoreUrl>,

    /// Log format: text for people, json for log collectors.
    #[arg(help_heading = "Operations", long, value_enum, default_value_t = LogFormat::Text, env = "TIMECHO_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter (e.g. info, debug, timecho=trace); the RUST_LOG variable also works.
    #[arg(
        help_heading = "Operations",
        long,
        value_name = "FILTER",
        default_value = "info",
        env = "TIMECHO_LOG"
    )]
    pub log: String,
}

/// Which timestamp server a client command talks to, and how.
#[derive(Debug, Args)]
pub struct ServerTarget {
    /// Server address as HOST:PORT or HOST (port 8899), or the gateway's WebSocket
    /// as ws://HOST:PORT/ws or wss://HOST:PORT/ws (each line one text message).
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8899")]
    pub addr: String,

    /// Connect to a unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with = "udp")]
    pub unix: Option<PathBuf>,

    /// Use UDP datagrams, one line each; a reply that does not come within the timeout is
    /// reported as lost.
    #[arg(long)]
    pub udp: bool,

    /// Connect with TLS (to a `serve --tcp-tls` listener), verifying the server's
    /// certificate against --ca or the system's root certificates. A wss:// URL is TLS
    /// without it.
    #[arg(long, conflicts_with_all = ["udp", "unix"])]
    pub tls: bool,

    /// CA certificate(s) (PEM) to verify the server with, instead of the system's; a
    /// self-signed server certificate (`openssl req -x509`) given here is trusted as it is.
    /// With --tls or a wss:// URL.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,

    /// Trust the server whose certificate has this SHA-256 fingerprint, as
    /// `timecho serve --tls-self-signed` prints it (sha256:AB:CD:...), whatever signed it.
    /// With --tls or a wss:// URL.
    #[arg(long, value_name = "sha256:HEX", value_parser = parse_pin)]
    pub pin: Option<[u8; 32]>,
}

impl ServerTarget {
    /// What clap cannot say, since it hangs on the address's scheme: a
    /// WebSocket URL goes with no other transport, --ca and --pin need TLS.
    pub fn usage_error(&self) -> Option<String> {
        let websocket = self.addr.starts_with("ws://") || self.addr.starts_with("wss://");
        let secure = self.tls || self.addr.starts_with("wss://");
        if websocket && (self.udp || self.unix.is_some() || self.tls) {
            return Some(format!(
                "{} is a WebSocket URL: it goes without --udp, --unix and --tls \
                 (wss:// is TLS already)",
                self.addr
            ));
        }
        if !secure && (self.ca.is_some() || self.pin.is_some()) {
            return Some(
                "--ca and --pin verify a TLS server: add --tls, or give a wss:// URL".to_owned(),
            );
        }
        None
    }
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub server: ServerTarget,

    /// Give up on a reply after this long.
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ClockArgs {
    #[command(flatten)]
    pub server: ServerTarget,

    /// How many probes to send. With one-second stamps each after the first
    /// halves the error bound, down to about one round trip.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = samples)]
    pub samples: u32,

    /// Exit with status 1 when the clocks are further apart than this (e.g. 500ms).
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_offset: Option<Duration>,

    /// The server writes ctime stamps in UTC (`serve --utc`). A ctime stamp does
    /// not name its zone; without this it is read in this machine's zone.
    #[arg(long)]
    pub utc: bool,

    /// Print one JSON object instead of sentences; when it cannot measure, the
    /// object says why (`error`).
    #[arg(long, conflicts_with = "nagios")]
    pub json: bool,

    /// Report as a monitoring plugin (Nagios, Icinga, Sensu), as check_ntp_time
    /// does: one status line with perfdata, exit 0 OK, 1 WARNING (the offset is
    /// beyond --warn), 2 CRITICAL (beyond --crit), 3 UNKNOWN (no measurement).
    #[arg(long, conflicts_with = "max_offset")]
    pub nagios: bool,

    /// With --nagios: WARNING beyond this offset.
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "60s",
          value_parser = parse_duration, requires = "nagios")]
    pub warn: Duration,

    /// With --nagios: CRITICAL beyond this offset.
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "120s",
          value_parser = parse_duration, requires = "nagios")]
    pub crit: Duration,

    /// Give up on a reply after this long (over UDP: skip that probe).
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

/// A ping(8)-style time: seconds as a bare number (`0.2`), or a duration (`200ms`).
fn seconds_or_duration(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        Ok(_) => Err(format!("{text:?} must be more than 0 seconds")),
        Err(_) => parse_positive_duration(text),
    }
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub server: ServerTarget,

    /// Stop after this many probes (default: until Ctrl-C or -w).
    #[arg(short = 'c', long, value_name = "COUNT", value_parser = at_least_one_u64)]
    pub count: Option<u64>,

    /// Time between probes, in seconds (0.2) or as a duration (200ms).
    #[arg(short = 'i', long, value_name = "INTERVAL", default_value = "1", value_parser = seconds_or_duration)]
    pub interval: Duration,

    /// How long to wait for each reply; a later one is counted late, not received.
    #[arg(short = 'W', long, value_name = "TIMEOUT", default_value = "5", value_parser = seconds_or_duration)]
    pub timeout: Duration,

    /// Stop after this long, whatever was sent or received.
    #[arg(short = 'w', long, value_name = "DEADLINE", value_parser = seconds_or_duration)]
    pub deadline: Option<Duration>,

    /// Bytes in each probe line (padded with dots; at least the probe's own header).
    #[arg(short = 's', long, value_name = "SIZE", default_value = "32", value_parser = probe_size)]
    pub size: usize,

    /// Also print the 50th, 90th and 99th percentile round trips.
    #[arg(long)]
    pub percentiles: bool,

    /// Print one JSON object (every reply, the summary) instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// A count of at least 1, as a u64.
fn at_least_one_u64(text: &str) -> Result<u64, String> {
    whole_number(text, 1, u64::MAX)
}

/// `ping -s`: within the server's default line limit.
fn probe_size(text: &str) -> Result<usize, String> {
    whole_number(text, 0, timecho_shared::DEFAULT_MAX_LINE as u64).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bad_count_says_what_is_allowed() {
        assert_eq!(at_least_one("1024"), Ok(1024));
        assert_eq!(samples("1000"), Ok(1000));
        let not_digits = at_least_one("10k").unwrap_err();
        assert!(
            not_digits.contains("whole number in digits"),
            "{not_digits}"
        );
        assert!(at_least_one("-1").unwrap_err().contains("whole number"));
        assert_eq!(
            at_least_one("0").unwrap_err(),
            "0 is too small: the least is 1"
        );
        assert_eq!(
            samples("1001").unwrap_err(),
            "1001 is too large: the most is 1000"
        );
        let huge = at_least_one_u32("99999999999999999999999").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn a_pin_is_the_fingerprint_as_the_server_prints_it() {
        let colons = format!("sha256:{}", ["AB"; 32].join(":"));
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert_eq!(
            parse_pin(&format!("sha256:{}", "0f".repeat(32))).unwrap(),
            [0x0f; 32]
        );
        for bad in [
            "AB:CD",
            "sha256:abcd",
            "md5:00",
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(parse_pin(bad).is_err(), "{bad}");
        }
    }
}
