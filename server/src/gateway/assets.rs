//! The page's files, embedded in the binary at build time (one file to deploy,
//! works offline), with the brotli and gzip copies `cargo xtask web` made of
//! each: compressed once at the strongest settings rather than per request.
//!
//! Caching: a file whose name carries its content hash (`NAME.<16 hex>.EXT`)
//! can never change, so browsers keep it for a year without asking again;
//! `index.html`, the page's fixed address, is `no-cache` and revalidated on
//! every load, so an upgrade is seen at once and brings its new names along.
//! The brotli, gzip and plain bytes of a file are three representations: each
//! has its own strong ETag (the hash of the bytes sent), so a cached one is
//! never confirmed for a request that would get another.
//!
//! The copies are not addresses of their own: `/style.<hash>.css.br` is a 404,
//! so there is one URL per file and no second cache entry for the same bytes.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::body::Body;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use tower_http::compression::predicate::{DefaultPredicate, Predicate};

use negotiation::{negotiate, Coding};

mod negotiation;

#[derive(rust_embed::Embed)]
#[folder = "../web/dist/"]
struct Dist;

const NOT_BUILT: &str = "<!doctype html><title>timecho</title>\
<h1>The web page is not built into this binary</h1>\
<p>Build and run with <code>cargo xtask run</code>, which compiles the page to wasm first. \
The TCP service and <code>/ws</code> work without it.</p>";

/// For a file whose name changes with its content: a year, the longest
/// lifetime caches honour, and no revalidation on reload.
const FOREVER: &str = "public, max-age=31536000, immutable";
/// For `index.html`: stored, but confirmed with the server before each use.
const REVALIDATE: &str = "no-cache";

pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    let file = match Dist::get(path) {
        Some(file) if Coding::of_copy(path).is_none() => file,
        _ if path == "index.html" => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                NOT_BUILT,
            )
                .into_response();
        }
        // The path is not echoed: a reflected path is a reflected-content risk.
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    let copies: Vec<(Coding, rust_embed::EmbeddedFile)> = [Coding::Brotli, Coding::Gzip]
        .into_iter()
        .filter_map(|c| Dist::get(&format!("{path}{}", c.suffix())).map(|f| (c, f)))
        .collect();
    let stored: Vec<Coding> = copies.iter().map(|(c, _)| *c).collect();
    let coding = negotiate(headers.get_all(ACCEPT_ENCODING).iter(), &stored);
    let content_type = HeaderValue::from_str(file.metadata.mimetype()).ok();
    let chosen = match copies.into_iter().find(|(c, _)| *c == coding) {
        Some((_, copy)) => copy,
        None => file,
    };
    let representation = Representation {
        etag: etag(&chosen.metadata.sha256_hash()),
        body: chosen.data,
        coding,
        content_type,
        cache_control: if is_content_hashed(path) {
            FOREVER
        } else {
            REVALIDATE
        },
        varies: !stored.is_empty(),
    };
    representation.respond(&headers)
}

/// Which responses the router's runtime compression may compress: those
/// tower-http would by default, except ours. An ETag names the exact bytes
/// sent; compressing them again would give other bytes the same tag.
pub(super) fn without_etag() -> impl Predicate {
    DefaultPredicate::new()
        .and(|_: StatusCode, _: Version, h: &HeaderMap, _: &Extensions| !h.contains_key(ETAG))
}

/// Whether the file's name carries its content hash, as `cargo xtask web`
/// writes it: `NAME.<16 hex digits>.EXT`.
fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut parts = name.rsplit('.');
    let (Some(_ext), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !stem.is_empty() && hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak comparison, as the
/// header asks: `W/"x"` matches `"x"`.
fn if_none_match(values: &[&[u8]], etag: &str) -> bool {
    values.iter().any(|value| {
        let mut rest = value.trim_ascii();
        if rest == b"*" {
            return true;
        }
        // Entity tags are quoted and may contain commas, so this walks the
        // quotes rather than splitting on commas.
        loop {
            rest = rest.trim_ascii_start();
            rest = rest.strip_prefix(b",").unwrap_or(rest).trim_ascii_start();
            rest = rest.strip_prefix(b"W/").unwrap_or(rest);
            let Some(after_quote) = rest.strip_prefix(b"\"") else {
                return false;
            };
            let Some(end) = after_quote.iter().position(|&b| b == b'"') else {
                return false;
            };
            let tag = &rest[..end + 2];
            if tag == etag.as_bytes() {
                return true;
            }
            rest = &after_quote[end + 1..];
        }
    })
}

/// One file in one coding, with what its headers say about it.
struct Representation {
    body: Cow<'static, [u8]>,
    coding: Coding,
    etag: String,
    /// The file's type, whatever the coding.
    content_type: Option<HeaderValue>,
    cache_control: &'static str,
    /// Other codings of the file exist, so caches must key on `Accept-Encoding`.
    varies: bool,
}

impl Representation {
    /// 200 with the bytes, or 304 when the request's `If-None-Match` names
    /// this representation; both carry the caching headers (RFC 9110 15.4.5).
    fn respond(self, request: &HeaderMap) -> Response {
        let tags: Vec<&[u8]> = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let mut response = if if_none_match(&tags, &self.etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = Response::new(Body::from(self.body));
            let h = r.headers_mut();
            if let Some(content_type) = self.content_type {
                h.insert(CONTENT_TYPE, content_type);
            }
            if let Some(coding) = self.coding.header() {
                h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
            }
            r
        };
        let h = response.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static(self.cache_control));
        if self.varies {
            h.insert(VARY, HeaderValue::from_static("accept-encoding"));
        }
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            h.insert(ETAG, v);
        }
        response
    }
}

/// A strong ETag from the SHA-256 of the bytes sent.
fn etag(hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(2 + 32);
    s.push('"');
    // Half the hash is plenty to tell builds apart.
    for b in &hash[..16] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use axum::body::to_bytes;

    use super::*;

    fn representation(bytes: &'static [u8], coding: Coding) -> Representation {
        use sha2::{Digest, Sha256};
        Representation {
            body: Cow::Borrowed(bytes),
            coding,
            etag: etag(&Sha256::digest(bytes).into()),
            content_type: Some(HeaderValue::from_static("text/css")),
            cache_control: FOREVER,
            varies: true,
        }
    }

    fn request(if_none_match: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_str(if_none_match).expect("a header value");
        h.insert(IF_NONE_MATCH, value);
        h
    }

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or("(not text)"))
    }

    #[test]
    fn each_representation_has_its_own_etag_and_says_how_it_is_encoded() {
        let plain = representation(b"body{}", Coding::Identity).respond(&HeaderMap::new());
        let br = representation(b"br bytes", Coding::Brotli).respond(&HeaderMap::new());
        let gz = representation(b"gz bytes", Coding::Gzip).respond(&HeaderMap::new());
        assert_eq!(header(&plain, "content-encoding"), "");
        assert_eq!(header(&br, "content-encoding"), "br");
        assert_eq!(header(&gz, "content-encoding"), "gzip");
        let tags = [&plain, &br, &gz].map(|r| header(r, "etag"));
        assert!(tags.iter().all(|t| t.len() == 34 && t.starts_with('"')));
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
        for r in [&plain, &br, &gz] {
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header(r, "vary"), "accept-encoding");
            assert_eq!(header(r, "content-type"), "text/css");
            assert_eq!(header(r, "cache-control"), FOREVER);
        }
    }

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304_with_the_caching_headers_and_no_body() {
        let tag = representation(b"br bytes", Coding::Brotli).etag;
        for sent in [tag.clone(), format!("\"other\", W/{tag}"), "*".to_owned()] {
            let r = representation(b"br bytes", Coding::Brotli).respond(&request(&sent));
            assert_eq!(
                r.status(),
                StatusCode::NOT_MODIFIED,
                "If-None-Match: {sent}"
            );
            assert_eq!(header(&r, "etag"), tag);
            assert_eq!(header(&r, "cache-control"), FOREVER);
            assert_eq!(header(&r, "vary"), "accept-encoding");
            let body = to_bytes(r.into_body(), 1024).await.expect("body");
            assert!(body.is_empty());
        }
    }

    #[test]
    fn another_representations_etag_gets_the_full_response() {
        let gz_tag = representation(b"gz bytes", Coding::Gzip).etag;
        let r = representation(b"br bytes", Coding::Brotli).respond(&request(&gz_tag));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-encoding"), "br");
    }

    #[test]
    fn if_none_match_lists_are_read_quote_by_quote() {
        let tag = "\"abc\"";
        assert!(if_none_match(&[b"\"abc\""], tag));
        assert!(if_none_match(&[b" W/\"abc\" "], tag));
        assert!(if_none_match(&[b"\"a,b\", \"abc\""], tag));
        assert!(if_none_match(&[b"\"x\"", b"\"abc\""], tag));
        assert!(if_none_match(&[b"*"], tag));
        assert!(!if_none_match(&[b"\"abcd\""], tag));
        assert!(!if_none_match(&[b"abc"], tag));
        assert!(!if_none_match(&[b"\"abc"], tag));
        assert!(!if_none_match(&[], tag));
    }

    #[test]
    fn only_names_with_a_content_hash_are_kept_forever() {
        assert!(is_content_hashed("timecho_web_bg.0123456789abcdef.wasm"));
        assert!(is_content_hashed("style.e6954291aecfa187.css"));
        assert!(!is_content_hashed("index.html"));
        assert!(!is_content_hashed("style.css"));
        assert!(!is_content_hashed("style.e6954291aecfa18.css"));
        assert!(!is_content_hashed("style.e6954291aecfa18g.css"));
        assert!(!is_content_hashed(".e6954291aecfa187.css"));
    }

    #[test]
    fn runtime_compression_leaves_tagged_responses_alone() {
        let big = "a compressible line of text\n".repeat(100);
        let untagged = Response::new(Body::from(big.clone()));
        assert!(without_etag().should_compress(&untagged));
        let mut tagged = Response::new(Body::from(big));
        tagged
            .headers_mut()
            .insert(ETAG, HeaderValue::from_static("\"abc\""));
        assert!(!without_etag().should_compress(&tagged));
    }

    async fn get(path: &str, accept_encoding: Option<&'static str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(ae) = accept_encoding {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(ae));
        }
        serve(path.parse().expect("a path"), headers).await
    }

    #[tokio::test]
    async fn copies_are_no_addresses_and_a_404_does_not_echo_the_path() {
        for path in ["/index.html.br", "/index.html.gz", "/echo-me%3Cb%3E.css"] {
            let r = get(path, Some("br")).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            let body = to_bytes(r.into_body(), 1024).await.expect("body");
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains("echo-me") && !body.contains("index"),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn the_page_or_the_not_built_notice_is_served() {
        let r = get("/", Some("gzip")).await;
        if Dist::get("index.html").is_none() {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = to_bytes(r.into_body(), 4096).await.expect("body");
            assert!(String::from_utf8_lossy(&body).contains("not built"));
            return;
        }
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "cache-control"), REVALIDATE);
        let gzipped = Dist::get("index.html.gz").is_some();
        assert_eq!(
            header(&r, "content-encoding"),
            if gzipped { "gzip" } else { "" }
        );
    }

    /// With a page built in, every copy decodes to its file and every file
    /// `index.html` loads has a content-hashed name.
    #[test]
    fn every_embedded_copy_decodes_to_its_file() {
        for name in Dist::iter() {
            let Some(coding) = Coding::of_copy(&name) else {
                continue;
            };
            let original_name = &name[..name.len() - coding.suffix().len()];
            let original = Dist::get(original_name).expect("a copy has its file");
            let copy = Dist::get(&name).expect("listed");
            let mut decoded = Vec::new();
            match coding {
                Coding::Brotli => brotli::Decompressor::new(&copy.data[..], 4096)
                    .read_to_end(&mut decoded)
                    .expect("brotli decodes"),
                Coding::Gzip => flate2::read::GzDecoder::new(&copy.data[..])
                    .read_to_end(&mut decoded)
                    .expect("gzip decodes"),
                Coding::Identity => unreachable!("of_copy names only compressed codings"),
            };
            assert!(
                decoded[..] == original.data[..],
                "{name} is not {original_name}"
            );
        }
        for name in Dist::iter() {
            let is_file = Coding::of_copy(&name).is_none() && name != "index.html";
            assert!(!is_file || is_content_hashed(&name), "{name} has no hash");
        }
    }
}
