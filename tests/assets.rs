//! The page's files as a browser and a cache see them, over raw HTTP/1.1 to a
//! real `timecho serve`: `/` and every file it loads, in brotli, gzip and
//! plain bytes. Needs the page built in (`cargo xtask web`, then build).

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;

use crate::support::http::{self, Response};
use crate::support::Server;
use sha2::{Digest, Sha256};

const FOREVER: &str = "public, max-age=31536000, immutable";
/// The three ways a client asks, and the `Content-Encoding` each gets.
const ENCODINGS: [(Option<&str>, Option<&str>); 3] = [
    (Some("br"), Some("br")),
    (Some("gzip"), Some("gzip")),
    (None, None),
];

/// The body of `reply` with its `Content-Encoding` undone.
fn decoded(reply: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    match reply.header("content-encoding") {
        None => out.clone_from(&reply.body),
        Some("br") => {
            brotli::Decompressor::new(&reply.body[..], 4096)
                .read_to_end(&mut out)
                .expect("a brotli body decodes");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(&reply.body[..])
                .read_to_end(&mut out)
                .expect("a gzip body decodes");
        }
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

/// One GET on its own connection. A body shorter than its `Content-Length`,
/// or a chunked one cut off, fails the read.
fn get(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> Response {
    extra_headers
        .iter()
        .fold(http::get(path), |request, (name, value)| {
            request.header(name, *value)
        })
        .send(addr)
}

fn get_encoded(addr: SocketAddr, path: &str, accept: Option<&str>) -> Response {
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
            let bytes = decoded(&reply);
            match &plain {
                None => plain = Some(bytes),
                Some(first) => assert!(*first == bytes, "{shown}: other bytes"),
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
    assert!(String::from_utf8_lossy(&decoded(&reply)).contains("timecho_"));
}
