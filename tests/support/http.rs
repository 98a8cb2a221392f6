//! The one raw HTTP/1.1 client of the suites. Raw, because the tests send what
//! no HTTP library would (a forged or doubled `Host`, a 40 KB head, a PROXY
//! header before the request, a body the server refuses half-way) and must
//! see the server's answer as it came; blocking, so that it needs no runtime.
//!
//! A request is written as given ([`send_raw`]) or built from a method, path,
//! host and headers ([`get`], [`post`], [`Request`]); the response is read
//! with [`REPLY_TIMEOUT`] per read until the server ends the connection, or
//! until its own framing (`Content-Length`, chunked) says it is whole, so a
//! connection the server keeps open does not hold the test up.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::REPLY_TIMEOUT;

/// An HTTP/1.1 request on a connection of its own. It asks the server to
/// close the connection after its answer (`Connection: close`), which is
/// what reading a response to the end needs.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// `GET path`.
pub fn get(path: &str) -> Request {
    Request::new("GET", path)
}

/// `POST path` with `body` (and its `Content-Length`).
pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Request {
    Request::new("POST", path).body(body)
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            host: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// The `Host` header; without it, the address the request is sent to.
    pub fn host(mut self, host: impl Into<String>) -> Request {
        self.host = Some(host.into());
        self
    }

    /// One more header line, sent as given (the server must see repeats and
    /// odd spellings as a client sent them).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// A body, sent with its `Content-Length` (also when it is empty: a
    /// `POST` without a body still says so).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// The bytes sent for this request to `addr`.
    pub fn bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_deref().unwrap_or_default());
        bytes
    }

    /// Sends the request to `addr`; fails the test if no whole response comes.
    #[track_caller]
    pub fn send(&self, addr: SocketAddr) -> Response {
        send_raw(addr, self.bytes(addr))
    }

    /// Sends the request to `addr`: the response, or why there is none (the
    /// listener refused the connection, or closed it without an answer).
    pub fn try_send(&self, addr: SocketAddr) -> io::Result<Response> {
        try_send_raw(addr, self.bytes(addr))
    }

    /// Sends the request on `stream`, a connection the test made itself (from
    /// a chosen source address, say); fails the test if no whole response comes.
    #[track_caller]
    pub fn send_on(&self, stream: TcpStream) -> Response {
        let addr = stream.peer_addr().expect("a connected stream");
        match exchange(stream, &self.bytes(addr)) {
            Ok(response) => response,
            Err(e) => panic!("{} {} to {addr}: {e}", self.method, self.path),
        }
    }

    /// As [`Request::send_on`]: the response, or why there is none.
    pub fn try_send_on(&self, stream: TcpStream) -> io::Result<Response> {
        let addr = stream.peer_addr()?;
        exchange(stream, &self.bytes(addr))
    }
}

/// Sends `request` to `addr` exactly as given (request line, headers, blank
/// line, body; anything before it, such as a PROXY header, goes first), on a
/// connection of its own; fails the test if no whole response comes.
#[track_caller]
pub fn send_raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> Response {
    let request = request.as_ref();
    match try_send_raw(addr, request) {
        Ok(response) => response,
        Err(e) => {
            // The first line: the request line, or a PROXY header before it.
            let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
            panic!("\"{}\" to {addr}: {e}", line.trim_ascii().escape_ascii())
        }
    }
}

/// As [`send_raw`]: the response, or why there is none.
pub fn try_send_raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)?;
    exchange(stream, request.as_ref())
}

/// Writes `request` on `stream` and reads the response. A server may answer
/// before it has read all of a request it refuses (413, 431) and close the
/// connection, so a failed write is reported only if no response came.
fn exchange(mut stream: TcpStream, request: &[u8]) -> io::Result<Response> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    // A server that stops reading a body it refuses must not hang the test.
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let written = stream.write_all(request);
    match (read_response(&mut stream), written) {
        (Ok(response), _) => Ok(response),
        (Err(read), Err(write)) => Err(io::Error::new(
            write.kind(),
            format!("sending the request: {write}; then reading: {read}"),
        )),
        (Err(read), Ok(())) => Err(read),
    }
}

/// Reads until the response is whole by its own framing, or the server ends
/// the connection.
fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(response) = Response::whole(&raw)? {
            return Ok(response);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Response::parse(&raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let waited = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                let why = if waited {
                    format!("no whole response within {REPLY_TIMEOUT:?}")
                } else {
                    e.to_string()
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!("{why}; got \"{}\"", shown(&raw)),
                ));
            }
        }
    }
}

/// One HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    /// The header lines in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, with a chunked transfer coding undone.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Every value of the header `name` (any case), such as each `Set-Cookie`.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced), for assertions on it.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON of type `T`; fails the test if it is not.
    #[track_caller]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not the expected JSON ({e}): {self}"))
    }

    /// A whole response, received up to the end of its connection (as read
    /// from a TLS stream, say).
    pub fn parse(raw: &[u8]) -> io::Result<Response> {
        if let Some(response) = Response::whole(raw)? {
            return Ok(response);
        }
        let cut_off = |what: &str| {
            Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("the connection ended {what}: \"{}\"", shown(raw)),
            ))
        };
        let Some(head) = Head::parse(raw)? else {
            return cut_off(if raw.is_empty() {
                "without a response"
            } else {
                "in the response's head"
            });
        };
        match head.framing {
            Framing::ToEnd => {
                let body = raw[head.len..].to_vec();
                Ok(head.response(body))
            }
            _ => cut_off("before the response's body was whole"),
        }
    }

    /// The response in `raw` if its framing says it is whole.
    fn whole(raw: &[u8]) -> io::Result<Option<Response>> {
        let Some(head) = Head::parse(raw)? else {
            return Ok(None);
        };
        let rest = &raw[head.len..];
        let body = match head.framing {
            Framing::Empty => Some(Vec::new()),
            Framing::Length(n) => rest.get(..n).map(<[u8]>::to_vec),
            Framing::Chunked => dechunk(rest)?,
            Framing::ToEnd => None,
        };
        Ok(body.map(|body| head.response(body)))
    }
}

impl fmt::Display for Response {
    /// As it came, more or less: status, header lines, body as text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP/1.1 {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        write!(f, "\n{}", self.text())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How the body after a head ends.
enum Framing {
    /// 1xx, 204 and 304 answers have none.
    Empty,
    Length(usize),
    Chunked,
    /// When the server closes the connection.
    ToEnd,
}

/// A parsed status line and headers.
struct Head {
    /// Bytes up to and including the blank line.
    len: usize,
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
}

impl Head {
    /// The head at the start of `raw`, once it is all there (httparse reads
    /// it, as hyper does on the server's side).
    fn parse(raw: &[u8]) -> io::Result<Option<Head>> {
        let invalid = |what: String| {
            io::Error::new(
                ErrorKind::InvalidData,
                format!("{what}: \"{}\"", shown(raw)),
            )
        };
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut slots);
        let len = match parsed.parse(raw) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(invalid(format!("not an HTTP/1 response head ({e})"))),
        };
        let status = parsed.code.expect("a complete head has a status");
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).trim().to_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            Framing::Chunked
        } else if let Some(length) = value("content-length") {
            Framing::Length(
                length
                    .parse()
                    .map_err(|_| invalid("a bad Content-Length".to_owned()))?,
            )
        } else {
            Framing::ToEnd
        };
        Ok(Some(Head {
            len,
            status,
            headers,
            framing,
        }))
    }

    fn response(self, body: Vec<u8>) -> Response {
        Response {
            status: self.status,
            headers: self.headers,
            body,
        }
    }
}

/// The body of a chunked response, once its last chunk (and any trailer)
/// has come.
fn dechunk(mut raw: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let (line_len, size) = match httparse::parse_chunk_size(raw) {
            Ok(httparse::Status::Complete((len, size))) => (len, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a bad chunk size line: \"{}\"", shown(raw)),
                ))
            }
        };
        let size = usize::try_from(size).expect("a chunk that fits in memory");
        raw = &raw[line_len..];
        if size == 0 {
            // Trailer lines, if any, then a blank line.
            while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
                if line_end == 0 {
                    return Ok(Some(body));
                }
                raw = &raw[line_end + 2..];
            }
            return Ok(None);
        }
        let Some(chunk) = raw.get(..size + 2) else {
            return Ok(None);
        };
        body.extend_from_slice(&chunk[..size]);
        raw = &raw[size + 2..];
    }
}

/// `raw` for a failure message: escaped, and the start of it only.
fn shown(raw: &[u8]) -> String {
    const SHOWN: usize = 600;
    let more = if raw.len() > SHOWN { "..." } else { "" };
    format!("{}{more}", raw[..raw.len().min(SHOWN)].escape_ascii())
}
