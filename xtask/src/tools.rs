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

/// `npm install PACKAGE@VERSION` into `prefix` (its own node_modules).
fn npm_install(prefix: &Path, package: &str) -> Result<()> {
    println!("xtask: installing {package} into {}", prefix.display());
    std::fs::create_dir_all(prefix)?;
    exec::run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(prefix)
            .arg(package),
    )
}

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
    npm_install(&prefix, BINARYEN_NPM)?;
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

/// Where Debian's `redis-server` package puts the server (tests/session_store.rs looks there).
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// What the end-to-end tests need from Debian: Chromium with its driver, `nc`,
/// `socat`, `python3` with pip, node with npm (the interop test), `openssl`
/// (TLS interop), `haproxy` (the scale-out and session-store tests),
/// libfaketime (the clock-step test), `redis-server` (the session-store
/// test), `systemd-analyze` (the unit file's test) and Python's
/// prometheus_client (the metrics scrape test). Installs whatever is missing.
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
    if !exec::on_path("socat") {
        missing.push("socat");
    }
    // The interactive client is driven on a real terminal (tests/client.rs).
    if !exec::on_path("tmux") {
        missing.push("tmux");
    }
    if !exec::on_path("python3") {
        missing.extend(["python3", "python3-pip"]);
    } else if exec::output(Command::new("python3").args(["-m", "pip", "--version"])).is_none() {
        missing.push("python3-pip");
    }
    if !exec::on_path("node") {
        missing.push("nodejs");
    }
    if !exec::on_path("npm") {
        missing.push("npm");
    }
    if !Path::new(LIBFAKETIME).exists() {
        missing.push("faketime");
    }
    // tests/session_store.rs starts its own on a free port; the system
    // service the package sets up is not used.
    if !Path::new(REDIS_SERVER).exists() {
        missing.push("redis-server");
    }
    // A Prometheus client library's own parsers read /metrics in both formats
    // (tests/deployed.rs), with Debian's python3.
    if !Path::new("/usr/lib/python3/dist-packages/prometheus_client").exists() {
        missing.push("python3-prometheus-client");
    }
    // systemd-analyze checks the shipped unit; the package is never booted.
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        missing.push("systemd");
    }
    if missing.is_empty() {
        println!(
            "xtask: chromium, chromedriver, nc, socat, tmux, python3, pip, node, npm, openssl, \
             haproxy, faketime, redis-server, systemd-analyze and python3-prometheus-client \
             are installed"
        );
        return Ok(());
    }
    apt_install(&missing)
}

/// The interop suite's WebSocket clients (tests/interop.rs), pinned so every
/// machine checks the gateway against the same ones: (PyPI name, version).
const PIP_CLIENTS: [(&str, &str); 2] = [("websockets", "15.0.1"), ("websocket-client", "1.8.0")];
/// node's `ws`, the interop suite's node client.
const WS_NPM: (&str, &str) = ("ws", "8.18.3");
/// websocat 1.x, the interop suite's command-line client (and bench/compare.sh's).
const WEBSOCAT_VERSION: &str = "1.14.1";

/// Installs the interop suite's clients under `tools_dir`, where the tests
/// look for them (`TIMECHO_TOOLS`): the Python libraries into `python/`
/// (for `PYTHONPATH`), node's `ws` into `node/` (for `NODE_PATH`), websocat
/// into `websocat/bin/`. Each is skipped when its pinned version is there.
pub fn ensure_interop_clients(tools_dir: &Path) -> Result<()> {
    python_clients(&tools_dir.join("python"))?;
    node_ws(&tools_dir.join("node"))?;
    cargo_install(tools_dir, "websocat", WEBSOCAT_VERSION)?;
    Ok(())
}

fn python_clients(target: &Path) -> Result<()> {
    // pip names a package's metadata folder `<name with _>-<version>.dist-info`.
    let installed = |(name, version): &(&str, &str)| {
        let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
        target.join(dist_info).is_dir()
    };
    if PIP_CLIENTS.iter().all(installed) {
        return Ok(());
    }
    let pins: Vec<String> = PIP_CLIENTS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    println!(
        "xtask: installing {} into {}",
        pins.join(" "),
        target.display()
    );
    // --target is a plain folder, outside any Python's own packages, so it
    // needs no virtualenv and is not refused as an externally managed one.
    exec::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--upgrade",
                "--target",
            ])
            .arg(target)
            .args(&pins),
    )
}

fn node_ws(prefix: &Path) -> Result<()> {
    let (name, version) = WS_NPM;
    let manifest = prefix.join("node_modules").join(name).join("package.json");
    let pinned = format!("\"version\": \"{version}\"");
    if std::fs::read_to_string(&manifest).is_ok_and(|m| m.contains(&pinned)) {
        return Ok(());
    }
    npm_install(prefix, &format!("{name}@{version}"))
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

/// Pinned for machines that lack it, so the runner behaves the same everywhere.
const CARGO_NEXTEST_VERSION: &str = "0.9.143";

/// `cargo nextest`, the test runner: the one on this machine (the project's
/// machines come with it), or else built from crates.io into `tools_dir` on
/// first use.
pub fn cargo_nextest(tools_dir: &Path) -> Result<Command> {
    let mut cmd = if exec::output(exec::cargo().args(["nextest", "--version"])).is_some() {
        exec::cargo()
    } else {
        Command::new(cargo_install(
            tools_dir,
            "cargo-nextest",
            CARGO_NEXTEST_VERSION,
        )?)
    };
    cmd.arg("nextest");
    Ok(cmd)
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
