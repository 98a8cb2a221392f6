//! `cargo xtask test`: every check, in the order a fresh machine needs them,
//! stopping at the first failure and naming it.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::{exec, tools, web, workspace_root};

const STEPS: usize = 8;

pub fn all(test_args: &[String]) -> Result<ExitCode> {
    let mut steps = Steps { started: 0 };
    let tools_dir = workspace_root().join("target/tools");
    steps.run("browser and test tools", || {
        tools::ensure_test_packages()?;
        tools::ensure_interop_clients(&tools_dir)
    })?;
    steps.run("page build (cargo xtask web)", || {
        web::build(&web::Options::default())
    })?;
    steps.run("cargo fmt --check", || {
        exec::run(&mut cargo(&["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("cargo clippy (native, whole workspace)", || {
        exec::run(&mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.run("cargo clippy (the page, for wasm32)", || {
        exec::run(&mut cargo(&[
            "clippy",
            "-p",
            "timecho-web",
            "--target",
            tools::WASM_TARGET,
            "--target-dir",
            "target/wasm",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.run("cargo deny check bans licenses sources", || {
        let deny = tools::cargo_deny(&tools_dir)?;
        exec::run(
            Command::new(deny)
                .args([
                    "check",
                    "--hide-inclusion-graph",
                    "bans",
                    "licenses",
                    "sources",
                ])
                .current_dir(workspace_root()),
        )
    })?;
    steps.run(
        "tests (cargo nextest run --workspace, then doctests)",
        || {
            // Every test in a process of its own, many at once: they mostly wait
            // on sockets, child processes, browsers and timers, not on the CPU.
            // The settings are in .config/nextest.toml. The interop tests find
            // their clients in the tools folder (tests/interop_support).
            exec::run(
                tools::cargo_nextest(&tools_dir)?
                    .args(["run", "--workspace"])
                    .env("TIMECHO_TOOLS", &tools_dir)
                    .current_dir(workspace_root())
                    .args(test_args),
            )?;
            // nextest does not run doctests.
            exec::run(&mut cargo(&["test", "--workspace", "--doc"]))
        },
    )?;
    // After the ordinary tests, so that their failures show first: every
    // mutant of `shared` must fail its tests. Settings and the few exclusions
    // are in .cargo/mutants.toml; about 2 to 5 minutes on two cores.
    steps.run("cargo mutants --package timecho-shared", || {
        let mutants = tools::cargo_mutants(&tools_dir)?;
        exec::run(
            Command::new(mutants)
                .args(["mutants", "--package", "timecho-shared", "--jobs", "2"])
                .current_dir(workspace_root()),
        )
        .context(
            "a mutant of shared survived its tests or timed out (listed above and in \
             target/mutants/mutants.out/); add a test that catches it",
        )
    })?;
    println!("\nxtask: all {STEPS} steps passed");
    Ok(ExitCode::SUCCESS)
}

struct Steps {
    started: usize,
}

impl Steps {
    /// Runs one step, and says how long it took: the test step's time is a
    /// figure the project keeps an eye on (docs/testing.md).
    fn run(&mut self, name: &str, step: impl FnOnce() -> Result<()>) -> Result<()> {
        self.started += 1;
        let n = self.started;
        println!("\n==> [{n}/{STEPS}] {name}");
        let started = std::time::Instant::now();
        let result = step().with_context(|| format!("step {n}/{STEPS} ({name}) failed"));
        println!(
            "<== [{n}/{STEPS}] {name}: {:.0} s",
            started.elapsed().as_secs_f64()
        );
        result
    }
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = exec::cargo();
    cmd.args(args).current_dir(workspace_root());
    cmd
}
