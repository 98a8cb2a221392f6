//! Build facts the binary reports: the git commit for `--version`. Also checks
//! that the page is built: the binary embeds `web/dist`, which `cargo xtask web`
//! (or `cargo xtask run`, or `cargo xtask test`) fills, and a binary without its
//! page would answer every visitor with an error. So a plain `cargo build` or
//! `cargo install --path server` on a tree without it fails here, naming the
//! command to run. This script writes nothing outside cargo's own output.

use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = root.join("web/dist");
    println!("cargo::rerun-if-changed=../web/dist");
    if !dist.join("index.html").is_file() {
        eprintln!(
            "\nerror: the web page is not built ({} has no index.html).\n\
             Run `cargo xtask web` in {} once (it needs only the Rust toolchain and npm),\n\
             then build again; `cargo xtask run` builds the page and starts the service.\n",
            dist.display(),
            root.display()
        );
        std::process::exit(1);
    }
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
