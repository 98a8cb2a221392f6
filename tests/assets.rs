//! The page's files as a browser and a cache see them, over raw HTTP/1.1 to a
//! real `timecho serve`: `/` and every file it loads, in brotli, gzip and
//! plain bytes. Needs the page built in (`cargo xtask web`, then build).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::Server;
use sha2::{Digest, Sha256};

const FOREVER: &str = "public, max-age=31536000, immutable";
/// The three ways a client asks, and the `Content-Encoding` each gets.
const ENCODINGS: [(Option<&str>, Option<&str>); 3] = [
    (Some("br"), Some("br")),
    (Some("gzip"), Some("gzip")),
    (None, None),
];

struct Reply {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body with its `Content-Encoding` undone.
    fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.header("content-encoding") {
            None => out.clone_from(&self.body),
            Some("br") => {
                brotli::Decompressor::new(&self.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("a brotli body decodes");
            }
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("a gzip body decodes");
            }
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
        out
    }
}

/// One GET on its own connection, read until the server closes it.
fn get(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> Reply {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");

    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no end of headers"));
    let head = String::from_utf8(raw[..end].to_vec()).expect("headers are text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = dechunk(&reply.body);
    } else if let Some(length) = reply.header("content-length") {
        assert_eq!(length, reply.body.len().to_string(), "GET {path}: length");
    }
    reply
}

/// The body of a chunked response (what runtime compression sends).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&raw[..line_end]).expect("hex size");
        let size = usize::from_str_radix(size.split(';').next().unwrap_or(size).trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            return body;
        }
        let data = line_end + 2;
        body.extend_from_slice(&raw[data..data + size]);
        raw = &raw[data + size + 2..];
    }
}

fn get_encoded(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    match accept {
        Some(coding) => get(addr, path, &[("Accept-Encoding", coding)]),
        None => get(addr, path, &[]),
    }
}

/// Every `"/..."` in `text` that names a file of the page.
fn references(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') && s.len() > 1 && !s.contains(' '))
        .map(|s| s.to_owned())
        .collect()
}

/// `/`, then what `index.html` loads, then what `boot.js` loads. Fails the
/// test when the binary has no page in it.
fn page_paths(addr: SocketAddr) -> Vec<String> {
    let index = get(addr, "/", &[]);
    assert!(
        index.status != 503,
        "the timecho binary has no page built in: run `cargo xtask web`, then the tests again"
    );
    assert_eq!(index.status, 200);
    let mut paths = vec!["/".to_owned()];
    for path in references(&String::from_utf8_lossy(&index.body)) {
        if path.ends_with(".js") {
            let script = get(addr, &path, &[]);
            assert_eq!(script.status, 200, "GET {path}");
            paths.extend(references(&String::from_utf8_lossy(&script.body)));
        }
        paths.push(path);
    }
    for ending in [".css", ".js", ".wasm"] {
        assert!(
            paths.iter().filter(|p| p.ends_with(ending)).count() >= 1,
            "the page loads no {ending} file: {paths:?}"
        );
    }
    paths
}

#[test]
fn index_is_revalidated_and_every_file_it_loads_is_kept_for_a_year() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    for path in page_paths(addr) {
        for (accept, _) in ENCODINGS {
            let reply = get_encoded(addr, &path, accept);
            assert_eq!(reply.status, 200, "GET {path}");
            let expected = if path == "/" { "no-cache" } else { FOREVER };
            assert_eq!(reply.header("cache-control"), Some(expected), "GET {path}");
        }
    }
}

#[test]
fn each_file_decodes_to_the_same_bytes_in_every_encoding_under_its_own_etag() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    for path in page_paths(addr) {
        let mut etags = BTreeSet::new();
        let mut plain: Option<Vec<u8>> = None;
        for (accept, content_encoding) in ENCODINGS {
            let reply = get_encoded(addr, &path, accept);
            let shown = format!("GET {path} (Accept-Encoding: {accept:?})");
            assert_eq!(reply.status, 200, "{shown}");
            assert_eq!(
                reply.header("content-encoding"),
                content_encoding,
                "{shown}"
            );
            assert_eq!(reply.header("vary"), Some("accept-encoding"), "{shown}");
            assert!(
                reply.header("content-length").is_some(),
                "{shown}: no length"
            );
            let etag = reply.header("etag").expect("an ETag").to_owned();
            assert!(
                etag.starts_with('"') && !etag.starts_with("W/"),
                "{shown}: {etag}"
            );
            assert!(etags.insert(etag), "{shown}: the ETag of another encoding");
            let decoded = reply.decoded();
            match &plain {
                None => plain = Some(decoded),
                Some(first) => assert!(*first == decoded, "{shown}: other bytes"),
            }
        }
        // A hashed name is the SHA-256 of the plain bytes, so it can be kept forever.
        if let [.., hash, _ext] = path.split('.').collect::<Vec<_>>()[..] {
            let digest = Sha256::digest(plain.as_deref().unwrap_or_default());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hash, hex, "{path}: the name's hash is not its content's");
        }
    }
}

#[test]
fn a_matching_if_none_match_gets_304_for_that_encoding_only() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    for path in page_paths(addr) {
        let tags: Vec<String> = ENCODINGS
            .iter()
            .map(|(accept, _)| {
                let reply = get_encoded(addr, &path, *accept);
                reply.header("etag").expect("an ETag").to_owned()
            })
            .collect();
        for (i, (accept, _)) in ENCODINGS.iter().enumerate() {
            let mut headers = vec![("If-None-Match", tags[i].as_str())];
            headers.extend(accept.map(|a| ("Accept-Encoding", a)));
            let same = get(addr, &path, &headers);
            let shown = format!("GET {path} (Accept-Encoding: {accept:?})");
            assert_eq!(same.status, 304, "{shown}");
            assert!(same.body.is_empty(), "{shown}: a 304 has no body");
            assert_eq!(same.header("etag"), Some(tags[i].as_str()), "{shown}");
            assert!(same.header("cache-control").is_some(), "{shown}");

            let other = &tags[(i + 1) % tags.len()];
            headers[0] = ("If-None-Match", other);
            assert_eq!(get(addr, &path, &headers).status, 200, "{shown}, other tag");
        }
    }
}

#[test]
fn the_compressed_copies_have_no_address_of_their_own() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    for path in page_paths(addr) {
        let file = if path == "/" { "/index.html" } else { &path };
        for suffix in [".br", ".gz"] {
            let copy = format!("{file}{suffix}");
            let reply = get(addr, &copy, &[("Accept-Encoding", "br, gzip")]);
            assert_eq!(reply.status, 404, "GET {copy}");
            let body = String::from_utf8_lossy(&reply.body);
            assert!(
                !body.contains(&copy[1..]),
                "the 404 echoes the path: {body}"
            );
        }
    }
}

#[test]
fn other_responses_are_still_compressed_on_the_fly() {
    let server = Server::start(&[]);
    let reply = get(
        server.http_addr(),
        "/metrics",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert!(String::from_utf8_lossy(&reply.decoded()).contains("timecho_"));
}
