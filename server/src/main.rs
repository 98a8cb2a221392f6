//! `timecho`: the timestamp echo server, its web gateway and its client, in one binary.

mod access;
mod admission;
#[cfg(test)]
mod alloc_count;
mod bench;
mod bind;
mod cli;
mod client;
mod clock_check;
mod config;
mod config_file;
mod connection;
mod duration_arg;
mod gateway;
mod heap_trim;
mod host_port;
mod line_service;
mod log_text;
mod metrics;
mod proxy_protocol;
mod server;
mod shutdown;
mod signin;
mod tls;
mod udp;
mod unix_socket;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat, ServeArgs};
use crate::config::ServeConfig;

fn main() -> ExitCode {
    let expanded = match config_file::expand(std::env::args_os().collect()) {
        Ok(expanded) => expanded,
        Err(e) => {
            eprintln!("timecho: {e}");
            return ExitCode::FAILURE;
        }
    };
    let matches = Cli::command().get_matches_from(&expanded.argv);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(args) if args.print_config => {
            if let Some(serve) = matches.subcommand_matches("serve") {
                print!("{}", config_file::render(serve, &expanded.from_file));
            }
            ServeConfig::from_args(&args)
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Command::Serve(args) => serve(*args),
        Command::Client(args) => client::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Clock(args) => Ok(clock_check::run(&args)),
        Command::HashPassword { user } => hash_password(&user),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("timecho: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log))
        .with_context(|| format!("--log {:?} is not a valid log filter", args.log))?;
    // Colour codes are noise in a file or a journal; NO_COLOR (no-color.org)
    // turns them off on a terminal too.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let config = ServeConfig::from_args(&args)?;
    // Each client is a descriptor: take all the kernel allows this process.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("file descriptor limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(server::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn hash_password(user: &str) -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("password for {user}: "))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let line = signin::hash_password(user, &password).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
