//! Two instances behind HAProxy with `deploy/haproxy.cfg` as it is, and the
//! requests the scale-out tests send through it or straight to one instance
//! (behind the PROXY header HAProxy would send).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Server;

pub fn haproxy() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("haproxy is not installed: run `cargo xtask test`, which installs it")
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// HAProxy in the foreground, stopped when dropped.
pub struct Balancer {
    child: Child,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_balancer(a: &Server, b: &Server) -> Balancer {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let (tcp, http) = (free_addr(), free_addr());
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
        .stderr(Stdio::inherit())
        .spawn()
        .expect("haproxy starts");
    let balancer = Balancer { child, tcp, http };
    // Ready once both backends pass their health checks and serve through it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if accepted(a) > 0 && accepted(b) > 0 {
            return balancer;
        }
        let _ = one_exchange(balancer.tcp, "warm-up");
        thread::sleep(Duration::from_millis(50));
    }
    panic!("HAProxy did not route to both instances within 15 s");
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

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

/// TCP clients the instance has accepted, from its /metrics (on its own
/// listener: the HTTP listener expects HAProxy's PROXY header).
pub fn accepted(server: &Server) -> u64 {
    let (_, body) = http_get(server.listener("metrics"), "/metrics");
    body.lines()
        .filter(|l| l.starts_with("timecho_connections_accepted_total{listener=\"tcp "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One HTTP/1.1 request; the raw response.
pub fn http_raw(addr: SocketAddr, proxy_header: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(proxy_header.as_bytes()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw
}

pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The `name=value` of the response's session cookie, if it set one.
pub fn session_cookie(raw: &str) -> Option<String> {
    raw.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with("timecho_session=") && c.len() > "timecho_session=".len())
}

/// `GET /api/session` straight to one instance (behind its PROXY header, as
/// HAProxy would send it): the status and any renewed cookie.
pub fn session_at(instance: &Server, cookie: &str) -> (u16, Option<String>) {
    let raw = http_raw(
        instance.http_addr(),
        "PROXY TCP4 127.0.0.9 127.0.0.1 40000 80\r\n",
        &format!(
            "GET /api/session HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    (status_of(&raw), session_cookie(&raw))
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
    let (_, body) = http_get(instance.listener("metrics"), "/metrics");
    body.lines()
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
