//! `timecho bench`: a load generator for timecho and its peers.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Address of the server under test.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8899")]
    pub addr: String,
}

pub fn run(_args: &BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the load generator is being written")
}
