//! Build facts the binary reports: the git commit for `--version`. Also makes
//! sure `web/dist` exists: the page is embedded from it, `cargo xtask web` fills
//! it, and a plain `cargo build` gets an empty one (the server then says how to
//! build the page instead of serving one).

use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = root.join("web/dist");
    if let Err(e) = std::fs::create_dir_all(&dist) {
        println!("cargo::warning=cannot create {}: {e}", dist.display());
    }
    println!("cargo::rerun-if-changed=../web/dist");
    println!("cargo::rerun-if-changed=build.rs");

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=TIMECHO_COMMIT={commit}");
    // Only watch files that exist: a missing one would rerun this script on every build.
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if root.join(watched).exists() {
            println!("cargo::rerun-if-changed=../{watched}");
        }
    }
}
