//! Configuration layers: built-in defaults < TOML file (`--config`) < `TIMECHO_*`
//! environment variables < flags.
//!
//! The file's keys are the flags' names (`max-line = 1024`). Each key is turned
//! back into its flag and parsed by the same clap definitions, so a file value
//! is validated exactly like the flag, and defaults, env and flags keep clap's
//! own precedence. `--print-config` writes the result in the same format.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;

/// Keys that are about the file itself, not settings in it.
const NOT_SETTINGS: [&str; 3] = ["config", "print_config", "help"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not valid TOML: {1}")]
    Toml(PathBuf, toml::de::Error),
    #[error("config file {path}: unknown key {key:?}; allowed keys: {allowed}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        allowed: String,
    },
    #[error("config file {path}: key {key:?}: {reason}")]
    BadValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// Returns `argv` with the settings of the `--config` file inserted as flags,
/// leaving out those the environment or the command line already set.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    // Anything clap would reject is left for the real parse to report.
    let Ok(matches) = Cli::command().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(argv);
    };
    let Some(path) = serve.get_one::<PathBuf>("config").cloned() else {
        return Ok(argv);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| ConfigFileError::Read(path.clone(), e))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigFileError::Toml(path.clone(), e))?;
    let flags = file_flags(&path, &table, serve)?;

    // Check the file's values on their own, so an error names the file.
    let mut alone: Vec<OsString> = vec!["timecho".into(), "serve".into()];
    alone.extend(flags.iter().cloned());
    if let Err(e) = Cli::command().try_get_matches_from(&alone) {
        return Err(ConfigFileError::BadValue {
            path,
            key: "(a value)".into(),
            reason: e
                .to_string()
                .trim()
                .trim_start_matches("error: ")
                .to_owned(),
        });
    }
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .map_or(argv.len(), |i| i + 1);
    let mut out = argv;
    out.splice(at..at, flags);
    Ok(out)
}

fn file_flags(
    path: &Path,
    table: &toml::Table,
    serve: &ArgMatches,
) -> Result<Vec<OsString>, ConfigFileError> {
    let command = Cli::command();
    let serve_cmd = command
        .find_subcommand("serve")
        .expect("the serve subcommand is defined");
    let settings: Vec<_> = serve_cmd
        .get_arguments()
        .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()) && a.get_long().is_some())
        .collect();
    let mut flags = Vec::new();
    for (key, value) in table {
        let bad = |reason: &str| ConfigFileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let Some(arg) = settings.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                allowed: settings
                    .iter()
                    .filter_map(|a| a.get_long())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if matches!(
            serve.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{key}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => flags.push(flag.into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("must be true or false")),
            }
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for v in values {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad("must be a string, a number, or a list of them")),
            };
            flags.push(flag.clone().into());
            flags.push(text.into());
        }
    }
    Ok(flags)
}

/// The effective settings of `timecho serve`, as a config file.
pub fn render(serve: &ArgMatches) -> String {
    let command = Cli::command();
    let serve_cmd = command
        .find_subcommand("serve")
        .expect("the serve subcommand is defined");
    let mut out = String::from("# timecho serve: effective configuration\n");
    for arg in serve_cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let (Some(long), false) = (arg.get_long(), NOT_SETTINGS.contains(&id)) else {
            continue;
        };
        let source = match serve.value_source(id) {
            Some(ValueSource::DefaultValue) => "default",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::CommandLine) => "flag or file",
            _ => "",
        };
        if !arg.get_action().takes_values() {
            out += &format!("{long} = {}  # {source}\n", serve.get_flag(id));
            continue;
        }
        let values: Vec<String> = serve
            .get_raw(id)
            .map(|vs| vs.map(|v| toml_value(&v.to_string_lossy())).collect())
            .unwrap_or_default();
        let multiple = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
            || arg.get_value_delimiter().is_some();
        match (values.as_slice(), multiple) {
            ([], _) => out += &format!("# {long} is not set\n"),
            (_, true) => out += &format!("{long} = [{}]  # {source}\n", values.join(", ")),
            ([one], false) => out += &format!("{long} = {one}  # {source}\n"),
            (many, false) => out += &format!("{long} = {}  # {source}\n", many[many.len() - 1]),
        }
    }
    out
}

fn toml_value(raw: &str) -> String {
    if raw.parse::<i64>().is_ok() {
        raw.to_owned()
    } else {
        toml::Value::String(raw.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("timecho-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_settings_become_flags_and_flags_win() {
        let path = write_config(
            "layers",
            "max-line = 100\nutc = true\ntcp = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        );
        let p = path.to_str().unwrap();
        let out = expand(argv(&[
            "timecho",
            "serve",
            "--config",
            p,
            "--max-line",
            "7",
        ]))
        .unwrap();
        let m = Cli::command().get_matches_from(&out);
        let serve = m.subcommand_matches("serve").unwrap();
        assert_eq!(serve.get_one::<usize>("max_line"), Some(&7));
        assert!(serve.get_flag("utc"));
        assert_eq!(
            serve
                .get_many::<std::net::SocketAddr>("tcp")
                .unwrap()
                .count(),
            2
        );
        let printed = render(serve);
        assert!(printed.contains("max-line = 7"), "{printed}");
        assert!(printed.contains("utc = true"), "{printed}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        let path = write_config("unknown", "max-lines = 100\n");
        let err = expand(argv(&[
            "timecho",
            "serve",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key \"max-lines\"") && msg.contains("max-line"),
            "{msg}"
        );

        let path = write_config("bad", "max-line = \"lots\"\n");
        let err = expand(argv(&[
            "timecho",
            "serve",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("lots") && msg.contains("--max-line"), "{msg}");
    }

    #[test]
    fn printed_config_reads_back_as_a_config_file() {
        let m =
            Cli::command().get_matches_from(["timecho", "serve", "--utc", "--tcp", "127.0.0.1:5"]);
        let printed = render(m.subcommand_matches("serve").unwrap());
        let path = write_config("roundtrip", &printed);
        let out = expand(argv(&[
            "timecho",
            "serve",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap();
        let m2 = Cli::command().get_matches_from(&out);
        assert_eq!(
            render(m2.subcommand_matches("serve").unwrap()).replace("default", "flag or file"),
            printed.replace("default", "flag or file")
        );
    }
}
