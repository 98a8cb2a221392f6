//! The load generator's end-to-end tests: this crate's `timecho-bench`
//! (`CARGO_BIN_EXE_timecho-bench`) run as its own process against the
//! server's real `timecho serve`. One test binary, on the server's support
//! tree (`tests/support/`), so that there is one way to start a server and
//! run a program in this workspace.

// Shared with the server's end-to-end tests, of which these use a part.
#[path = "../../../tests/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod bench_rate;
mod fresh_server;
mod soak;

use std::path::Path;
use std::process::Command;

/// `timecho-bench`, in the same clean environment as the server, told to
/// start (`--fresh-server`) the very server binary the tests run.
fn timecho_bench() -> Command {
    let mut cmd = support::process::clean_command(Path::new(env!("CARGO_BIN_EXE_timecho-bench")));
    cmd.env("TIMECHO_BIN", support::bin());
    cmd
}
