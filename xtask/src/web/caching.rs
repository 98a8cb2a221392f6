//! Makes the staged page safe to cache for a year and cheap to serve: every
//! file `index.html` loads gets a name derived from its content, and every
//! file gets brotli and gzip copies, compressed once here instead of on each
//! request.
//!
//! A file's name changes whenever its bytes do, so the server can tell
//! browsers to keep it forever (`immutable`); only `index.html` keeps its name
//! and is revalidated. A file is renamed after the references in it are
//! rewritten, so a new wasm renames `boot.js` too, and `index.html` changes.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// What the server keeps forever is told apart by this many hex digits of
/// SHA-256 before the extension: `timecho_web_bg.0123456789abcdef.wasm`.
pub const HASH_HEX_DIGITS: usize = 16;

/// The page's files, leaves first, with the quoted absolute paths each one
/// refers to. Only `index.html` keeps its name: it is the page's address.
const PAGE: [PageFile; 6] = [
    PageFile::hashed("timecho_web_bg.wasm", &[]),
    PageFile::hashed("timecho_web.js", &[]),
    PageFile::hashed("style.css", &[]),
    PageFile::hashed("favicon.svg", &[]),
    PageFile::hashed("boot.js", &["timecho_web.js", "timecho_web_bg.wasm"]),
    PageFile {
        name: "index.html",
        refers_to: &["style.css", "boot.js", "favicon.svg"],
        renamed: false,
    },
];

struct PageFile {
    name: &'static str,
    refers_to: &'static [&'static str],
    renamed: bool,
}

impl PageFile {
    const fn hashed(name: &'static str, refers_to: &'static [&'static str]) -> PageFile {
        PageFile {
            name,
            refers_to,
            renamed: true,
        }
    }
}

/// Renames the page's files in `staging` to content-hashed names and points
/// `boot.js` and `index.html` at the new names.
pub fn hash_names(staging: &Path) -> Result<()> {
    let mut renamed: Vec<(&str, String)> = Vec::new();
    for file in &PAGE {
        let path = staging.join(file.name);
        let mut bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for &target in file.refers_to {
            let new_name = renamed
                .iter()
                .find(|(old, _)| *old == target)
                .map(|(_, new)| new.as_str())
                .context("PAGE lists a file before the files it refers to")?;
            bytes = replace_reference(&bytes, target, new_name)
                .with_context(|| format!("rewriting web/{}", file.name))?;
        }
        if file.renamed {
            let new_name = hashed_name(file.name, &bytes);
            fs::write(staging.join(&new_name), &bytes)?;
            fs::remove_file(&path)?;
            renamed.push((file.name, new_name));
        } else {
            fs::write(&path, &bytes)?;
        }
    }
    Ok(())
}

/// `style.css` -> `style.<first 16 hex digits of SHA-256>.css`.
fn hashed_name(name: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hex: String = digest
        .iter()
        .take(HASH_HEX_DIGITS / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hex}.{ext}"),
        None => format!("{name}.{hex}"),
    }
}

/// Replaces the one `"/old"` in `text` with `"/new"`. Anything but exactly one
/// is an error: a reference the build cannot find would ship a page that
/// loads a file the server no longer has.
fn replace_reference(text: &[u8], old: &str, new: &str) -> Result<Vec<u8>> {
    let needle = format!("\"/{old}\"");
    let needle = needle.as_bytes();
    let found: Vec<usize> = text
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    let [at] = found[..] else {
        bail!(
            "expected exactly one reference \"/{old}\" (double-quoted, from the root), found {}",
            found.len()
        );
    };
    let mut out = Vec::with_capacity(text.len() + new.len());
    out.extend_from_slice(&text[..at]);
    out.extend_from_slice(format!("\"/{new}\"").as_bytes());
    out.extend_from_slice(&text[at + needle.len()..]);
    Ok(out)
}

/// Writes `NAME.br` and `NAME.gz` beside every file in `dir`, at the
/// strongest settings: this runs once per build, the savings on every load.
pub fn precompress(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    for path in files {
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        fs::write(dir.join(format!("{name}.br")), brotli(&bytes)?)?;
        fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)?)?;
    }
    Ok(())
}

/// Quality 11 with the largest window every browser decodes (2^24 bytes).
/// Brotli's "large window" extension is not used: browsers reject it.
pub fn brotli(bytes: &[u8]) -> Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 24,
        size_hint: bytes.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).context("brotli failed")?;
    Ok(out)
}

/// Level 9. The header carries no time stamp, so equal input gives equal output.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn a_hashed_name_keeps_stem_and_extension_around_16_hex_digits() {
        let name = hashed_name("timecho_web_bg.wasm", b"abc");
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(name, "timecho_web_bg.ba7816bf8f01cfea.wasm");
        assert_ne!(
            hashed_name("style.css", b"a"),
            hashed_name("style.css", b"b")
        );
    }

    #[test]
    fn a_reference_is_rewritten_only_when_it_appears_exactly_once() {
        let html = br#"<link href="/style.css"><script src="/boot.js"></script>"#;
        let out = replace_reference(html, "style.css", "style.0123.css").expect("one reference");
        assert_eq!(
            out,
            br#"<link href="/style.0123.css"><script src="/boot.js"></script>"#
        );
        assert!(replace_reference(html, "missing.css", "x").is_err());
        let twice = br#""/boot.js" "/boot.js""#;
        assert!(replace_reference(twice, "boot.js", "x").is_err());
        // A bare or relative mention is not a reference to rewrite.
        assert!(replace_reference(b"boot.js \"boot.js\"", "boot.js", "x").is_err());
    }

    #[test]
    fn the_page_is_renamed_and_rewritten_leaves_first() {
        let dir = std::env::temp_dir().join(format!("xtask-caching-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temporary directory");
        let files: [(&str, &str); 6] = [
            ("timecho_web_bg.wasm", "wasm"),
            ("timecho_web.js", "glue"),
            ("style.css", "body{}"),
            ("favicon.svg", "<svg/>"),
            (
                "boot.js",
                r#"import init from "/timecho_web.js"; init("/timecho_web_bg.wasm");"#,
            ),
            (
                "index.html",
                r#"<link href="/style.css"><link href="/favicon.svg"><script src="/boot.js"></script>"#,
            ),
        ];
        for (name, text) in files {
            fs::write(dir.join(name), text).expect("write a page file");
        }
        hash_names(&dir).expect("hash the names");

        let wasm = hashed_name("timecho_web_bg.wasm", b"wasm");
        let glue = hashed_name("timecho_web.js", b"glue");
        let css = hashed_name("style.css", b"body{}");
        let icon = hashed_name("favicon.svg", b"<svg/>");
        let boot_text = format!(r#"import init from "/{glue}"; init("/{wasm}");"#);
        let boot = hashed_name("boot.js", boot_text.as_bytes());
        let index = fs::read_to_string(dir.join("index.html")).expect("index.html stays");
        assert_eq!(
            index,
            format!(r#"<link href="/{css}"><link href="/{icon}"><script src="/{boot}"></script>"#)
        );
        let boot_on_disk = fs::read_to_string(dir.join(&boot)).expect("boot.js, hashed");
        assert_eq!(boot_on_disk, boot_text);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected = vec![wasm, glue, css, icon, boot, "index.html".to_owned()];
        expected.sort();
        assert_eq!(names, expected);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn both_compressed_copies_decode_to_the_original() {
        let original = "a page of text that repeats, ".repeat(200).into_bytes();
        let br = brotli(&original).expect("brotli");
        let gz = gzip(&original).expect("gzip");
        assert!(br.len() < original.len() / 10 && gz.len() < original.len() / 10);

        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut decoded)
            .expect("brotli decodes");
        assert_eq!(decoded, original);
        decoded.clear();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut decoded)
            .expect("gzip decodes");
        assert_eq!(decoded, original);
        assert_eq!(
            gzip(&original).expect("gzip again"),
            gz,
            "gzip is reproducible"
        );
    }
}
