//! The page's files, embedded in the binary at build time (one file to deploy,
//! works offline). Every response carries a strong ETag and `no-cache`, so a
//! browser revalidates on each load and gets a 304 until the binary changes:
//! an upgrade can never be served from a stale cache.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "../web/dist/"]
struct Dist;

const NOT_BUILT: &str = "<!doctype html><title>timecho</title>\
<h1>The web page is not built into this binary</h1>\
<p>Build and run with <code>cargo xtask run</code>, which compiles the page to wasm first.\
 The TCP service and <code>/ws</code> work without it.</p>";

pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    let Some(file) = Dist::get(path) else {
        if path == "index.html" {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                NOT_BUILT,
            )
                .into_response();
        }
        // The path is not echoed: a reflected path is a reflected-content risk.
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if headers
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(file.data));
        if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r
    };
    let h = response.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    response
}

fn etag(hash: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(2 + 32);
    s.push('"');
    // Half the hash is plenty to tell builds apart.
    for b in &hash[..16] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    s
}
