//! `cargo xtask`: the project's build, run and check driver.
//!
//! One binary instead of shell scripts, so the steps are the same on every
//! machine and in CI, and the wasm toolchain (wasm-bindgen) is a pinned library
//! rather than something to install.

mod exec;
mod test;
mod tools;
mod web;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  web [--dev] [--force]  build the page into web/dist (skipped when nothing changed)
  run [-- ARGS...]       build the page, then `cargo run --release -p timecho -- serve ARGS...`
  test [ARGS...]         every check: browser tools, page build, fmt, clippy, tests
                         (ARGS go to `cargo nextest run --workspace`)
  ci [ARGS...]           the same as test
  help                   this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    match command {
        "web" => {
            let options = web::Options::parse(rest)?;
            web::build(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        "run" => run(rest),
        "test" | "ci" => test::all(rest),
        "help" | "-h" | "--help" => {
            // A closed pipe (`cargo xtask help | head`) is no error worth a panic.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// Builds the page (the server embeds it), then hands over to the server.
fn run(args: &[String]) -> Result<ExitCode> {
    web::build(&web::Options::default())?;
    let serve_args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    let mut cargo = exec::cargo();
    cargo
        .args(["run", "--release", "-p", "timecho", "--", "serve"])
        .args(serve_args)
        .current_dir(workspace_root());
    exec::hand_over(cargo)
}

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
