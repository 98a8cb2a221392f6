//! Which of a file's stored codings to send: `Accept-Encoding`, read with
//! its q-values, against the copies that exist.

use axum::http::HeaderValue;

/// The content codings a file may be stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    /// What `cargo xtask web` appends to a file's name for its copy.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
            Coding::Identity => "",
        }
    }

    /// The `Content-Encoding` that says so; none for the plain bytes.
    pub(super) fn header(self) -> Option<&'static str> {
        match self {
            Coding::Brotli => Some("br"),
            Coding::Gzip => Some("gzip"),
            Coding::Identity => None,
        }
    }

    /// The coding of a precompressed copy, from its name.
    pub(super) fn of_copy(path: &str) -> Option<Coding> {
        [Coding::Brotli, Coding::Gzip]
            .into_iter()
            .find(|c| path.ends_with(c.suffix()))
    }
}

/// Which representation to send, given the request's `Accept-Encoding` and
/// the compressed copies `stored`. The highest q-value wins; on a tie brotli
/// (smallest), then gzip, then the plain bytes. A coding the client does not
/// name is not acceptable, except the plain bytes, which are acceptable (at
/// the lowest preference) unless `identity;q=0` or `*;q=0` excludes them.
///
/// Without the header the plain bytes are sent: the client may not decode
/// anything (RFC 9110 allows any coding, but `curl` without `--compressed`
/// would save brotli). When nothing is acceptable the plain bytes are sent
/// too, rather than a 406 the browser would show as a broken page.
pub(super) fn negotiate<'a>(
    accept_encoding: impl Iterator<Item = &'a HeaderValue>,
    stored: &[Coding],
) -> Coding {
    let mut prefs = Preferences::default();
    let mut present = false;
    for value in accept_encoding {
        present = true;
        prefs.read(value.as_bytes());
    }
    if !present {
        return Coding::Identity;
    }
    let q = |coding: Coding| match coding {
        Coding::Brotli => prefs.brotli.or(prefs.any).unwrap_or(0),
        Coding::Gzip => prefs.gzip.or(prefs.any).unwrap_or(0),
        Coding::Identity => prefs.identity.or(prefs.any).unwrap_or(1),
    };
    // Listed in the order that wins a tie; `max_by_key` keeps the last maximum.
    [Coding::Identity, Coding::Gzip, Coding::Brotli]
        .into_iter()
        .filter(|c| *c == Coding::Identity || stored.contains(c))
        .filter(|c| q(*c) > 0)
        .max_by_key(|c| q(*c))
        .unwrap_or(Coding::Identity)
}

/// The q-values (in thousandths) an `Accept-Encoding` gives each coding.
#[derive(Default, Debug)]
struct Preferences {
    brotli: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    /// `*`: any coding not named.
    any: Option<u16>,
}

impl Preferences {
    /// Reads one header value: `gzip, br;q=0.8, identity;q=0`. An entry with a
    /// q-value that is no number is skipped, as if not sent.
    fn read(&mut self, value: &[u8]) {
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let mut q = Some(1000);
            for param in parts {
                if let Some((key, v)) = param.split_once('=') {
                    if key.trim().eq_ignore_ascii_case("q") {
                        q = parse_q(v.trim());
                    }
                }
            }
            let Some(q) = q else { continue };
            let slot = if name.eq_ignore_ascii_case("br") {
                &mut self.brotli
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut self.gzip
            } else if name.eq_ignore_ascii_case("identity") {
                &mut self.identity
            } else if name == "*" {
                &mut self.any
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
}

/// `0.5` -> 500; a q-value is between 0 and 1 with at most 3 decimals.
fn parse_q(text: &str) -> Option<u16> {
    let q: f32 = text.parse().ok()?;
    // Rounded and clamped, the cast is exact.
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Coding] = &[Coding::Brotli, Coding::Gzip];

    /// The coding chosen for these `Accept-Encoding` lines.
    fn pick(lines: &[&'static str], stored: &[Coding]) -> Coding {
        let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
        negotiate(values.iter(), stored)
    }

    #[test]
    fn a_browser_gets_brotli() {
        assert_eq!(pick(&["gzip, deflate, br, zstd"], BOTH), Coding::Brotli);
        assert_eq!(pick(&["br"], BOTH), Coding::Brotli);
        assert_eq!(pick(&["BR"], BOTH), Coding::Brotli);
    }

    #[test]
    fn gzip_is_the_fallback_when_brotli_is_not_accepted_or_not_stored() {
        assert_eq!(pick(&["gzip, deflate"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["x-gzip"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["gzip, br"], &[Coding::Gzip]), Coding::Gzip);
    }

    #[test]
    fn plain_bytes_without_the_header_or_an_acceptable_copy() {
        assert_eq!(pick(&[], BOTH), Coding::Identity);
        assert_eq!(pick(&[""], BOTH), Coding::Identity);
        assert_eq!(pick(&["deflate, zstd"], BOTH), Coding::Identity);
        assert_eq!(pick(&["br"], &[Coding::Gzip]), Coding::Identity);
        assert_eq!(pick(&["gzip, br"], &[]), Coding::Identity);
    }

    #[test]
    fn q_zero_refuses_a_coding() {
        assert_eq!(pick(&["br;q=0, gzip"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["br; q=0.0, gzip;q=0"], BOTH), Coding::Identity);
        assert_eq!(pick(&["*;q=0, gzip"], BOTH), Coding::Gzip);
        // Everything refused, the plain bytes included: still the plain bytes, not a 406.
        assert_eq!(pick(&["*;q=0"], BOTH), Coding::Identity);
        assert_eq!(pick(&["identity;q=0, br;q=0"], BOTH), Coding::Identity);
    }

    #[test]
    fn the_highest_q_value_wins_and_ties_go_to_the_smaller_coding() {
        assert_eq!(pick(&["br;q=0.5, gzip;q=0.8"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["gzip;q=0.8, br;q=0.8"], BOTH), Coding::Brotli);
        assert_eq!(pick(&["identity, br;q=0.5"], BOTH), Coding::Identity);
        // Unnamed, the plain bytes rank below any coding the client names.
        assert_eq!(pick(&["gzip;q=0.1"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["*"], BOTH), Coding::Brotli);
        assert_eq!(pick(&["*;q=0.5, br;q=0.2"], BOTH), Coding::Gzip);
    }

    #[test]
    fn every_header_line_counts_and_a_broken_entry_is_skipped() {
        assert_eq!(pick(&["br;q=0", "gzip"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["br;q=high, gzip"], BOTH), Coding::Gzip);
        assert_eq!(pick(&["br;q=2"], BOTH), Coding::Identity);
        let not_utf8 = HeaderValue::from_bytes(b"br\xff").expect("obs-text is allowed");
        assert_eq!(negotiate([not_utf8].iter(), BOTH), Coding::Identity);
    }

    #[test]
    fn a_copy_is_told_by_its_suffix() {
        assert_eq!(Coding::of_copy("style.0123.css.br"), Some(Coding::Brotli));
        assert_eq!(Coding::of_copy("index.html.gz"), Some(Coding::Gzip));
        assert_eq!(Coding::of_copy("index.html"), None);
    }
}
