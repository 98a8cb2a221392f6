//! Tools that come from package registries, installed on first use so that a
//! fresh machine (or CI) needs nothing but the Rust toolchain, apt and npm.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::exec;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Pinned so every machine optimises the page the same way. Debian's
/// wasm-opt (108) is too old to read what current rustc emits.
const BINARYEN_NPM: &str = "binaryen@132.0.0";

/// Adds the wasm target with rustup unless it is already installed.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = exec::output(Command::new("rustup").args(["target", "list", "--installed"]));
    if installed.is_some_and(|list| list.lines().any(|l| l.trim() == WASM_TARGET)) {
        return Ok(());
    }
    println!("xtask: adding the {WASM_TARGET} target with rustup");
    exec::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// `wasm-opt` from the npm package `binaryen`, installed under `tools_dir`.
pub fn wasm_opt(tools_dir: &Path) -> Result<PathBuf> {
    let prefix = tools_dir.join("binaryen");
    let bin = prefix.join("node_modules/.bin/wasm-opt");
    if bin.exists() {
        return Ok(bin);
    }
    if !exec::on_path("npm") {
        bail!("npm is not installed (apt-get install npm), so wasm-opt cannot be fetched");
    }
    println!("xtask: installing {BINARYEN_NPM} into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    exec::run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(BINARYEN_NPM),
    )?;
    if !bin.exists() {
        bail!(
            "npm installed {BINARYEN_NPM} but {} is missing",
            bin.display()
        );
    }
    Ok(bin)
}

/// libfaketime, which the clock-step test preloads into the server.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// What the end-to-end tests need from Debian: Chromium with its driver, `nc`,
/// `python3`, `openssl` (TLS interop), `haproxy` (the scale-out test) and
/// libfaketime (the clock-step test).
/// Installs whatever is missing.
pub fn ensure_test_packages() -> Result<()> {
    let mut missing = Vec::new();
    if !exec::on_path("openssl") {
        missing.push("openssl");
    }
    if !exec::on_path("haproxy") && !Path::new("/usr/sbin/haproxy").exists() {
        missing.push("haproxy");
    }
    if !Path::new("/usr/bin/chromium").exists() || !Path::new("/usr/bin/chromedriver").exists() {
        missing.extend(["chromium", "chromium-driver"]);
    }
    if !exec::on_path("nc") {
        missing.push("netcat-openbsd");
    }
    if !exec::on_path("python3") {
        missing.push("python3");
    }
    if !Path::new(LIBFAKETIME).exists() {
        missing.push("faketime");
    }
    if missing.is_empty() {
        println!(
            "xtask: chromium, chromedriver, nc, python3, openssl, haproxy and faketime are installed"
        );
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let sudo = if is_root() {
        false
    } else if exec::on_path("sudo") {
        true
    } else {
        bail!(
            "not root and no sudo: install these by hand: apt-get install {}",
            packages.join(" ")
        );
    };
    println!("xtask: installing with apt: {}", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut c = Command::new("sudo");
            c.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        } else {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        // Wait for another apt (unattended upgrades, a parallel install)
        // instead of failing on its lock.
        cmd.args(["-o", "DPkg::Lock::Timeout=600"]).args(args);
        cmd
    };
    exec::run(&mut apt(&["update"]))?;
    let mut install = apt(&["install", "-y"]);
    install.args(packages);
    exec::run(&mut install)
}

fn is_root() -> bool {
    exec::output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// Pinned so the supply-chain check behaves the same everywhere.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// `cargo-deny`, built from crates.io into `tools_dir` on first use.
pub fn cargo_deny(tools_dir: &Path) -> Result<PathBuf> {
    cargo_install(tools_dir, "cargo-deny", CARGO_DENY_VERSION)
}

/// Pinned so the mutation run makes the same mutants everywhere.
const CARGO_MUTANTS_VERSION: &str = "25.3.1";

/// `cargo-mutants`, built from crates.io into `tools_dir` on first use.
pub fn cargo_mutants(tools_dir: &Path) -> Result<PathBuf> {
    cargo_install(tools_dir, "cargo-mutants", CARGO_MUTANTS_VERSION)
}

/// Builds crate `krate` at `version`, whose binary has the same name, into
/// `tools_dir/<krate>` unless it is there already.
fn cargo_install(tools_dir: &Path, krate: &str, version: &str) -> Result<PathBuf> {
    let root = tools_dir.join(krate);
    let bin = root.join("bin").join(krate);
    if bin.exists() {
        return Ok(bin);
    }
    println!(
        "xtask: building {krate} {version} into {} (once)",
        root.display()
    );
    exec::run(
        exec::cargo()
            .args([
                "install",
                "--locked",
                "--quiet",
                krate,
                "--version",
                version,
                "--root",
            ])
            .arg(&root),
    )?;
    Ok(bin)
}
