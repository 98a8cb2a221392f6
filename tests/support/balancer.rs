//! Two instances behind HAProxy with `deploy/haproxy.cfg` as it is, and the
//! requests the scale-out tests send through it or straight to one instance
//! (behind the PROXY header HAProxy would send).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{self, Request, Response};
use super::{on_free_addrs, scrape, Server, TempDir};

/// The header HAProxy sends an instance before each connection's bytes (as
/// `send-proxy-v2` would, in its text form), for requests straight to one.
pub const PROXY_HEADER: &str = "PROXY TCP4 127.0.0.9 127.0.0.1 40000 80\r\n";

pub fn haproxy() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("haproxy is not installed: run `cargo xtask test`, which installs it")
}

/// HAProxy in the foreground, stopped when dropped.
pub struct Balancer {
    child: Child,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    /// Holds HAProxy's log (its stderr), shown when a test fails.
    dir: TempDir,
}

impl Balancer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- haproxy log ---\n{}", self.log());
        }
    }
}

/// HAProxy in front of `a` and `b`, once it routes to both. Its listeners
/// are named in its configuration before it starts, on free ports (see
/// [`super::free_addr`]): when another process took one first, HAProxy
/// cannot bind it and exits, and is started again on fresh ones.
pub fn start_balancer(a: &Server, b: &Server) -> Balancer {
    on_free_addrs("HAProxy", |[tcp, http]| try_start_balancer(a, b, tcp, http))
}

/// One start of HAProxy on `tcp` and `http`: `Err` with its log if it could
/// not bind them.
fn try_start_balancer(
    a: &Server,
    b: &Server,
    tcp: SocketAddr,
    http: SocketAddr,
) -> Result<Balancer, String> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let dir = TempDir::new();
    let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("create haproxy.log");
    let child = Command::new(haproxy())
        .args(["-db", "-f"])
        .arg(&config)
        .env("LB_TCP", tcp.to_string())
        .env("LB_HTTP", http.to_string())
        .env("A_TCP", a.tcp_addr().to_string())
        .env("A_HTTP", a.http_addr().to_string())
        .env("A_HTTP_PORT", a.http_addr().port().to_string())
        .env("B_TCP", b.tcp_addr().to_string())
        .env("B_HTTP", b.http_addr().to_string())
        .env("B_HTTP_PORT", b.http_addr().port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("haproxy starts");
    let mut balancer = Balancer {
        child,
        tcp,
        http,
        dir,
    };
    // Ready once both backends pass their health checks and serve through it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = balancer.child.try_wait() {
            let log = balancer.log();
            if log.contains("Address already in use") {
                return Err(log);
            }
            panic!("HAProxy exited ({status}) before routing; its log:\n{log}");
        }
        if accepted(a) > 0 && accepted(b) > 0 {
            return Ok(balancer);
        }
        let _ = one_exchange(balancer.tcp, "warm-up");
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "HAProxy did not route to both instances within 15 s; its log:\n{}",
        balancer.log()
    );
}

pub fn one_exchange(addr: SocketAddr, text: &str) -> std::io::Result<(SocketAddr, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let local = s.local_addr()?;
    s.write_all(format!("{text}\n").as_bytes())?;
    let mut line = Vec::new();
    BufReader::new(&s).read_until(b'\n', &mut line)?;
    Ok((local, line))
}

/// TCP clients the instance has accepted, from its /metrics (on its own
/// listener: the HTTP listener expects HAProxy's PROXY header).
pub fn accepted(server: &Server) -> u64 {
    scrape(server.listener("metrics"))
        .lines()
        .filter(|l| l.starts_with("timecho_connections_accepted_total{listener=\"tcp "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `request` straight to one instance's HTTP listener, behind the PROXY
/// header HAProxy would send (that listener reads one from loopback), with
/// `Host: localhost`.
pub fn straight_to(instance: &Server, request: Request) -> Response {
    let addr = instance.http_addr();
    let mut bytes = PROXY_HEADER.as_bytes().to_vec();
    bytes.extend(request.host("localhost").bytes(addr));
    http::send_raw(addr, bytes)
}

/// The `name=value` of the response's session cookie, if it set one.
pub fn session_cookie(response: &Response) -> Option<String> {
    response
        .headers_named("set-cookie")
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with("timecho_session=") && c.len() > "timecho_session=".len())
}

/// `GET /api/session` straight to one instance: the status and any renewed
/// cookie.
pub fn session_at(instance: &Server, cookie: &str) -> (u16, Option<String>) {
    let response = straight_to(instance, http::get("/api/session").header("Cookie", cookie));
    (response.status, session_cookie(&response))
}

/// A WebSocket through the balancer, signed in with `cookie`.
pub fn ws_through(lb: SocketAddr, cookie: &str) -> tungstenite::WebSocket<TcpStream> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{lb}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let stream = TcpStream::connect(lb).expect("connect to HAProxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("WebSocket through HAProxy refused: {e}"),
    }
}

pub fn ws_sessions(instance: &Server) -> u64 {
    scrape(instance.listener("metrics"))
        .lines()
        .find_map(|l| l.strip_prefix("timecho_websocket_sessions_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The close code of a socket's close frame (skipping replies and pings).
pub fn close_code_of(ws: &mut tungstenite::WebSocket<TcpStream>) -> u16 {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(tungstenite::Message::Close(None)) => panic!("a close frame without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}
