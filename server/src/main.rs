//! `timecho`: the timestamp echo server, its web gateway and its client, in one binary.
//!
//! No `unsafe` outside tests but the two calls that tune glibc's allocator
//! (`heap_trim`); the load generator, with the socket options and process
//! calls it needs, is its own crate (`timecho-bench`, in `bench/`).

#![deny(unsafe_code)]

mod access;
mod admission;
#[cfg(test)]
mod alloc_count;
mod bind;
mod cli;
mod client;
mod client_key;
mod clock_check;
mod config;
mod config_file;
mod connection;
mod descriptors;
mod doors;
mod forwarded;
mod gateway;
mod health;
mod heap_trim;
mod line_service;
mod log_text;
mod log_throttle;
mod metrics;
mod ping;
mod process_metrics;
mod proxy_protocol;
mod readiness;
mod refusal_log;
mod reload;
mod secret_files;
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

use crate::cli::{Cli, ClientArgs, ClockArgs, Command, LogFormat, PingArgs, ServeArgs};

fn main() -> ExitCode {
    let expanded = match config_file::expand(std::env::args_os().collect()) {
        Ok(expanded) => expanded,
        Err(e) => {
            eprintln!("timecho: {e}");
            // A value the user wrote is wrong: a usage error, as clap's are.
            return ExitCode::from(2);
        }
    };
    let matches = Cli::command().get_matches_from(&expanded.argv);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Client(ClientArgs { server, .. })
    | Command::Clock(ClockArgs { server, .. })
    | Command::Ping(PingArgs { server, .. }) = &cli.command
    {
        if let Some(message) = server.usage_error() {
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
    }
    let result = match cli.command {
        Command::Serve(args) if args.print_config => {
            if let Some(serve) = matches.subcommand_matches("serve") {
                print!("{}", config_file::render(serve, &expanded.from_file));
            }
            args.config().map(|_| ExitCode::SUCCESS).map_err(Into::into)
        }
        Command::Serve(args) => serve(*args),
        Command::Client(args) => client::run(&args),
        Command::Clock(args) => Ok(clock_check::run(&args)),
        Command::Ping(args) => Ok(ping::run(&args)),
        Command::HashPassword { user } => hash_password(&user),
        Command::Health(args) => Ok(health::run(&args)),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`timecho client ... | head -1`):
        // done, quietly, as other Unix tools are.
        Err(e) if client::is_broken_pipe(&e) => ExitCode::SUCCESS,
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
    // Each client is a descriptor: take all the kernel allows this process,
    // then fit the limits to it.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("file descriptor limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let config = args.config()?;
    heap_trim::configure();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(server::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn hash_password(user: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    // The users file is `user:hash` per line: a colon would end the name early.
    anyhow::ensure!(
        !user.is_empty() && !user.contains([':', '\n', '\r']),
        "a user name cannot be empty or contain ':' or a line break"
    );
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {user}: "))?;
        let again = rpassword::prompt_password("the same password again: ")?;
        anyhow::ensure!(
            first == again,
            "the two passwords differ; nothing was written"
        );
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let line = signin::hash_password(user, &password).map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(std::io::stdout(), "{line}")?;
    Ok(ExitCode::SUCCESS)
}
