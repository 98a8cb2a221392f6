//! Who may open `/ws`: pages this gateway served (same origin), origins the
//! operator allowed, and clients that send no `Origin` at all (CLI tools, which
//! are not subject to the browser's same-origin rules anyway).

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

use crate::config::ANY_ORIGIN;

/// `Ok` when the handshake may proceed, else the reason for the 403. The same
/// origin means the same scheme (`https` when `secure`), host and port.
pub fn check(headers: &HeaderMap, allowed: &[String], secure: bool) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let Ok(origin) = origin.to_str() else {
        return Err("the Origin header is not valid text".to_owned());
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let scheme = if secure { "https://" } else { "http://" };
    let origin_host = origin.strip_prefix(scheme);
    let same_origin =
        matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h));
    let listed = |a: &String| a == ANY_ORIGIN || a.eq_ignore_ascii_case(origin);
    if same_origin || allowed.iter().any(listed) {
        return Ok(());
    }
    Err(format!(
        "origin {origin} may not open /ws: only pages served by this gateway may \
         (start timecho with --allow-origin {origin} to allow it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_no_origin_are_allowed() {
        assert!(check(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            &[],
            false
        )
        .is_ok());
        assert!(check(&headers(None, "127.0.0.1:8080"), &[], false).is_ok());
    }

    #[test]
    fn foreign_origin_is_refused_unless_allowed() {
        let h = headers(Some("http://evil.example"), "127.0.0.1:8080");
        let err = check(&h, &[], false).unwrap_err();
        assert!(err.contains("--allow-origin http://evil.example"), "{err}");
        assert!(check(&h, &["http://evil.example".to_owned()], false).is_ok());
    }

    #[test]
    fn a_file_page_is_allowed_as_null_and_any_origin_by_star() {
        let h = headers(Some("null"), "127.0.0.1:8080");
        let err = check(&h, &[], false).unwrap_err();
        assert!(err.contains("--allow-origin null"), "{err}");
        assert!(check(&h, &["null".to_owned()], false).is_ok());
        let h = headers(Some("http://localhost:3000"), "127.0.0.1:8080");
        assert!(check(&h, &["*".to_owned()], false).is_ok());
        assert!(check(&h, &["null".to_owned()], false).is_err());
    }

    #[test]
    fn origin_on_another_port_is_another_origin() {
        let h = headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080");
        assert!(check(&h, &[], false).is_err());
    }

    #[test]
    fn another_scheme_is_another_origin() {
        let h = headers(Some("http://127.0.0.1:8443"), "127.0.0.1:8443");
        assert!(check(&h, &[], true).is_err());
        let h = headers(Some("https://127.0.0.1:8443"), "127.0.0.1:8443");
        assert!(check(&h, &[], true).is_ok());
        assert!(check(&h, &[], false).is_err());
    }
}
