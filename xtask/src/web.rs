//! `cargo xtask web`: the page, from Rust to the files the server embeds.
//!
//! cargo (wasm32, its own target dir) -> wasm-bindgen (as a library, so its
//! version is the page's pinned one) -> wasm-opt (optional) -> content-hashed
//! names and brotli/gzip copies ([`caching`]) -> `web/dist/`.

mod caching;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use wasm_bindgen_cli_support::Bindgen;

use crate::{exec, tools, workspace_root};

/// The name wasm-bindgen gives the outputs: `timecho_web.js`, `timecho_web_bg.wasm`.
const OUT_NAME: &str = "timecho_web";
/// Copied next to the generated files; [`caching`] rewrites the references in
/// `index.html` and `boot.js` to the hashed names.
const STATIC_FILES: [&str; 4] = ["index.html", "boot.js", "style.css", "favicon.svg"];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    /// Debug build with function names and wasm-bindgen's JS checks, no
    /// wasm-opt: for reading panics and stack traces.
    pub dev: bool,
    /// Rebuild even when nothing changed.
    pub force: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--dev" => options.dev = true,
                "--force" => options.force = true,
                other => bail!("unknown option {other:?} for `web` (expected --dev or --force)"),
            }
        }
        Ok(options)
    }

    fn mode(&self) -> &'static str {
        if self.dev {
            "dev"
        } else {
            "release"
        }
    }
}

/// What [`is_up_to_date`] requires of a stamp besides the sources: bump it
/// when the shape of `web/dist` changes, so an old dist is rebuilt.
const DIST_LAYOUT: &str = "hashed names, .br and .gz copies";

/// Where everything is; all under the workspace root.
struct Layout {
    root: PathBuf,
    web: PathBuf,
    dist: PathBuf,
    /// The page's own cargo target dir: a nested `cargo build` on the shared
    /// one would wait forever for the lock an outer cargo holds.
    target: PathBuf,
    tools: PathBuf,
    /// Records what `web/dist` was built from and the files it holds; outside
    /// dist, so it is not embedded.
    stamp: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let root = workspace_root();
        Layout {
            web: root.join("web"),
            dist: root.join("web/dist"),
            target: root.join("target/wasm"),
            tools: root.join("target/tools"),
            stamp: root.join("target/wasm/web-dist.stamp"),
            root,
        }
    }
}

pub fn build(options: &Options) -> Result<()> {
    let layout = Layout::new();
    let sources = Sources::scan(&layout)?;
    let stamp = format!(
        "{} {}, {DIST_LAYOUT}",
        options.mode(),
        sources.fingerprint()
    );
    if !options.force && is_up_to_date(&layout, &stamp) {
        println!("xtask: web/dist is up to date (nothing under web/ or shared/src changed)");
        return report_size(&layout);
    }

    tools::ensure_wasm_target()?;
    let wasm = compile(&layout, options)?;

    let staging = layout.target.join("dist-staging");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    bindgen(&wasm, &staging, options)?;
    if !options.dev {
        optimise(&staging.join(format!("{OUT_NAME}_bg.wasm")), &layout.tools);
    }
    for name in STATIC_FILES {
        fs::copy(layout.web.join(name), staging.join(name))
            .with_context(|| format!("copying web/{name}"))?;
    }
    caching::hash_names(&staging)?;
    caching::precompress(&staging)?;
    let published = publish(&staging, &layout.dist)?;
    fs::write(
        &layout.stamp,
        format!("{stamp}\n{}\n", published.join("\n")),
    )?;
    println!("xtask: built web/dist ({} build)", options.mode());
    report_size(&layout)
}

/// The stamp's first line says what dist was built from, the others name the
/// files it holds (their names change with their content, so they are listed
/// rather than known).
fn is_up_to_date(layout: &Layout, stamp: &str) -> bool {
    let recorded = fs::read_to_string(&layout.stamp).unwrap_or_default();
    let mut lines = recorded.lines();
    let mut files = lines.clone().skip(1).peekable();
    lines.next() == Some(stamp)
        && files.peek().is_some()
        && files.all(|name| layout.dist.join(name).is_file())
}

fn compile(layout: &Layout, options: &Options) -> Result<PathBuf> {
    let profile = if options.dev { "dev" } else { "wasm-release" };
    println!(
        "xtask: compiling timecho-web for {} ({profile})",
        tools::WASM_TARGET
    );
    exec::run(
        exec::cargo()
            .args(["build", "-p", "timecho-web", "--target", tools::WASM_TARGET])
            .args(["--profile", profile, "--target-dir"])
            .arg(&layout.target)
            .current_dir(&layout.root),
    )?;
    // cargo names the dev profile's directory `debug`.
    let dir = if options.dev { "debug" } else { profile };
    Ok(layout
        .target
        .join(tools::WASM_TARGET)
        .join(dir)
        .join("timecho_web.wasm"))
}

fn bindgen(wasm: &Path, out_dir: &Path, options: &Options) -> Result<()> {
    println!("xtask: wasm-bindgen {}", wasm.display());
    Bindgen::new()
        .input_path(wasm)
        .out_name(OUT_NAME)
        .web(true)?
        .typescript(false)
        // boot.js names the wasm: a default path beside the script would name
        // `timecho_web_bg.wasm`, which hashed names leave nowhere.
        .omit_default_module_path(true)
        .debug(options.dev)
        .remove_name_section(!options.dev)
        .remove_producers_section(!options.dev)
        .generate(out_dir)
        .context("wasm-bindgen failed")
}

/// Shrinks the wasm in place with wasm-opt. Never fails the build: without the
/// optimiser the page is bigger, not broken.
fn optimise(wasm: &Path, tools_dir: &Path) {
    if let Err(err) = try_optimise(wasm, tools_dir) {
        eprintln!("xtask: warning: wasm-opt skipped, keeping the unoptimised wasm: {err:#}");
    }
}

fn try_optimise(wasm: &Path, tools_dir: &Path) -> Result<()> {
    let wasm_opt = tools::wasm_opt(tools_dir)?;
    let optimised = wasm.with_extension("opt.wasm");
    println!("xtask: wasm-opt -Oz");
    exec::run(
        Command::new(&wasm_opt)
            .arg("-Oz")
            // What rustc's wasm32 output uses (LLVM's generic CPU) and
            // wasm-bindgen keeps; every current browser supports them.
            .args([
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "--enable-reference-types",
                "--enable-multivalue",
            ])
            .arg(wasm)
            .arg("-o")
            .arg(&optimised),
    )?;
    fs::rename(&optimised, wasm)?;
    Ok(())
}

/// Moves the new files into `dist` one rename at a time, so a server reading
/// `dist` from disk never sees a half-written file, then drops stale files.
/// Returns the names of the files now in `dist`.
fn publish(staging: &Path, dist: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dist)?;
    let mut fresh = Vec::new();
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        let name = entry.file_name();
        fs::rename(entry.path(), dist.join(&name)).with_context(|| {
            format!("moving {} into {}", name.to_string_lossy(), dist.display())
        })?;
        fresh.push(name);
    }
    for entry in fs::read_dir(dist)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && !fresh.contains(&entry.file_name()) {
            fs::remove_file(entry.path())?;
        }
    }
    let mut names: Vec<String> = fresh
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The wasm's size as shipped: raw, and the brotli and gzip copies served.
fn report_size(layout: &Layout) -> Result<()> {
    let prefix = format!("{OUT_NAME}_bg.");
    let mut wasm = None;
    for entry in fs::read_dir(&layout.dist)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".wasm") {
            wasm = Some(name);
        }
    }
    let Some(wasm) = wasm else {
        bail!("web/dist holds no {prefix}*.wasm: run `cargo xtask web --force`");
    };
    let size = |name: &str| -> Result<String> {
        let path = layout.dist.join(name);
        let meta = fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(kib(usize::try_from(meta.len()).unwrap_or(usize::MAX)))
    };
    println!(
        "xtask: web/dist/{wasm}: {} raw, {} brotli, {} gzip",
        size(&wasm)?,
        size(&format!("{wasm}.br"))?,
        size(&format!("{wasm}.gz"))?,
    );
    Ok(())
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The files the page is built from, summarised so that any edit, addition
/// or removal changes the summary.
struct Sources {
    count: usize,
    newest: SystemTime,
}

impl Sources {
    fn scan(layout: &Layout) -> Result<Sources> {
        let mut files = Vec::new();
        collect_files(&layout.web.join("src"), &mut files)?;
        collect_files(&layout.root.join("shared/src"), &mut files)?;
        files.push(layout.web.join("Cargo.toml"));
        files.push(layout.root.join("shared/Cargo.toml"));
        for entry in fs::read_dir(&layout.web)? {
            let path = entry?.path();
            let is_page_file = path
                .extension()
                .is_some_and(|ext| ext == "html" || ext == "css" || ext == "js");
            if is_page_file && path.is_file() {
                files.push(path);
            }
        }
        let mut newest = UNIX_EPOCH;
        for file in &files {
            let modified = fs::metadata(file)
                .and_then(|m| m.modified())
                .with_context(|| format!("reading the time of {}", file.display()))?;
            newest = newest.max(modified);
        }
        Ok(Sources {
            count: files.len(),
            newest,
        })
    }

    fn fingerprint(&self) -> String {
        let since_epoch = self.newest.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{} files, newest {}", self.count, since_epoch.as_nanos())
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_accept_dev_and_force_and_refuse_the_rest() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Options::parse(&args(&[])).ok(), Some(Options::default()));
        let both = Options::parse(&args(&["--force", "--dev"])).ok();
        assert_eq!(
            both,
            Some(Options {
                dev: true,
                force: true
            })
        );
        assert!(Options::parse(&args(&["--release"])).is_err());
    }
}
