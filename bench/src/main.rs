//! `timecho-bench`: load-test a timestamp server over TCP or WebSocket; see
//! the library (`timecho_bench`) for what it measures and how.

use std::process::ExitCode;

use clap::Parser as _;
use timecho_bench::BenchArgs;

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match timecho_bench::run(&args) {
        Ok(code) => code,
        // The reader of our output went away (`timecho-bench ... | head -1`):
        // done, quietly, as other Unix tools are.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timecho-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is, or was caused by, writing into a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
