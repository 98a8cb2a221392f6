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

/// Largest config file read: a real one is a few hundred bytes, and a path
/// such as /dev/zero must not be read until memory runs out.
const MAX_FILE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("config file {0} is larger than {MAX_FILE} bytes")]
    TooLarge(PathBuf),
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
    #[error("environment variable {var}={value:?}: {reason}")]
    BadEnv {
        var: String,
        value: String,
        reason: String,
    },
}

/// The command line with the file's settings in it, and which settings came
/// from the file (clap sees them as flags).
#[derive(Debug, Default)]
pub struct Expanded {
    pub argv: Vec<OsString>,
    /// Argument ids (`max_line`) whose value is the file's.
    pub from_file: Vec<String>,
}

/// Reads a regular file of at most [`MAX_FILE`] bytes. A FIFO or a device is
/// refused before it is opened for reading, so it cannot block start-up.
fn read_bounded(path: &Path) -> Result<String, ConfigFileError> {
    use std::io::Read as _;
    let read = |e| ConfigFileError::Read(path.to_owned(), e);
    if !std::fs::metadata(path).map_err(read)?.is_file() {
        return Err(ConfigFileError::NotAFile(path.to_owned()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE {
        return Err(ConfigFileError::TooLarge(path.to_owned()));
    }
    Ok(text)
}

/// Returns `argv` with the settings of the `--config` file inserted as flags,
/// leaving out those the environment or the command line already set.
pub fn expand(argv: Vec<OsString>) -> Result<Expanded, ConfigFileError> {
    let unchanged = |argv| Expanded {
        argv,
        from_file: Vec::new(),
    };
    if argv.get(1).is_some_and(|a| a == "serve") {
        check_environment()?;
    }
    // Anything clap would reject is left for the real parse to report.
    let Ok(matches) = Cli::command().try_get_matches_from(&argv) else {
        return Ok(unchanged(argv));
    };
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(unchanged(argv));
    };
    let Some(path) = serve.get_one::<PathBuf>("config").cloned() else {
        return Ok(unchanged(argv));
    };
    let text = read_bounded(&path)?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigFileError::Toml(path.clone(), e))?;
    let settings = file_flags(&path, &table, serve)?;

    // Check each of the file's values on its own, so an error names its key.
    for (key, _, flags) in &settings {
        let mut alone: Vec<OsString> = vec!["timecho".into(), "serve".into()];
        alone.extend(flags.iter().cloned());
        if let Err(e) = Cli::command().try_get_matches_from(&alone) {
            return Err(ConfigFileError::BadValue {
                path,
                key: key.clone(),
                reason: reason(&e),
            });
        }
    }
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .map_or(argv.len(), |i| i + 1);
    let mut out = argv;
    let from_file = settings.iter().map(|(_, id, _)| id.clone()).collect();
    out.splice(at..at, settings.into_iter().flat_map(|(_, _, flags)| flags));
    Ok(Expanded {
        argv: out,
        from_file,
    })
}

/// Checks each `TIMECHO_*` variable that `serve` reads on its own, so that a
/// bad value is reported with the variable's name, not a flag nobody typed.
fn check_environment() -> Result<(), ConfigFileError> {
    let command = Cli::command();
    let Some(serve) = command.find_subcommand("serve") else {
        return Ok(());
    };
    for arg in serve.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let Some(value) = std::env::var_os(var) else {
            continue;
        };
        let bad = |reason: String| ConfigFileError::BadEnv {
            var: var.to_string_lossy().into_owned(),
            value: value.to_string_lossy().into_owned(),
            reason,
        };
        if !arg.get_action().takes_values() {
            // Booleans: clap's boolish words (true/false, yes/no, on/off, 1/0).
            let text = value.to_string_lossy().to_ascii_lowercase();
            let words = [
                "true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "",
            ];
            if !words.contains(&text.as_str()) {
                return Err(bad("use true or false (yes/no, on/off, 1/0)".to_owned()));
            }
            continue;
        }
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(&value);
        let alone: Vec<OsString> = vec!["timecho".into(), "serve".into(), flag];
        if let Err(e) = Cli::command().try_get_matches_from(&alone) {
            return Err(bad(reason(&e)));
        }
    }
    Ok(())
}

/// Why clap refused a value, without the flag it names: the value parser's
/// own words, or the values allowed; else clap's first line.
fn reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(allowed)) = e.get(ContextKind::ValidValue) {
        return format!("use one of: {}", allowed.join(", "));
    }
    first_line(&e.to_string())
}

/// Clap's message without its `error: ` prefix, usage and tips.
fn first_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// A boolean as people write it in a file: true/false, yes/no, on/off, 1/0.
fn boolean(value: &toml::Value) -> Option<bool> {
    let text = match value {
        toml::Value::Boolean(b) => return Some(*b),
        toml::Value::Integer(1) => return Some(true),
        toml::Value::Integer(0) => return Some(false),
        toml::Value::String(s) => s.to_ascii_lowercase(),
        _ => return None,
    };
    match text.as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Each of the file's keys with its argument id and the flags it stands for.
type Settings = Vec<(String, String, Vec<OsString>)>;

fn file_flags(
    path: &Path,
    table: &toml::Table,
    serve: &ArgMatches,
) -> Result<Settings, ConfigFileError> {
    let command = Cli::command();
    let serve_cmd = command
        .find_subcommand("serve")
        .expect("the serve subcommand is defined");
    let settings: Vec<_> = serve_cmd
        .get_arguments()
        .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()) && a.get_long().is_some())
        .collect();
    let mut from_file: Settings = Vec::new();
    for (key, value) in table {
        let mut flags: Vec<OsString> = Vec::new();
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
        let id = arg.get_id().as_str().to_owned();
        if !arg.get_action().takes_values() {
            match boolean(value) {
                Some(true) => flags.push(flag.into()),
                Some(false) => {}
                None => return Err(bad("must be true or false (or yes/no, on/off, 1/0)")),
            }
            from_file.push((key.clone(), id, flags));
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
            // One token, so that a value such as `-1` is not taken for a flag.
            flags.push(format!("{flag}={text}").into());
        }
        from_file.push((key.clone(), id, flags));
    }
    Ok(from_file)
}

/// The effective settings of `timecho serve`, as a config file.
pub fn render(serve: &ArgMatches, from_file: &[String]) -> String {
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
            Some(ValueSource::CommandLine) if from_file.iter().any(|f| f == id) => "file",
            Some(ValueSource::CommandLine) => "flag",
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

    /// `timecho serve --config FILE` with `text` in the file.
    fn expand_file(name: &str, text: &str) -> Result<Expanded, ConfigFileError> {
        let path = write_config(name, text);
        expand(argv(&[
            "timecho",
            "serve",
            "--config",
            path.to_str().unwrap(),
        ]))
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
        let m = Cli::command().get_matches_from(&out.argv);
        let serve = m.subcommand_matches("serve").unwrap();
        assert_eq!(serve.get_one::<usize>("max_line"), Some(&7));
        assert!(serve.get_flag("utc"));
        assert_eq!(
            serve
                .get_many::<timecho_shared::host_port::HostPort>("tcp")
                .unwrap()
                .count(),
            2
        );
        let printed = render(serve, &out.from_file);
        assert!(printed.contains("max-line = 7  # flag"), "{printed}");
        assert!(printed.contains("utc = true  # file"), "{printed}");
        assert!(
            printed.contains("idle-timeout = \"5m\"  # default"),
            "{printed}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        let err = expand_file("unknown", "max-lines = 100\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key \"max-lines\"") && msg.contains("max-line"),
            "{msg}"
        );

        let err = expand_file("bad", "max-line = \"lots\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("key \"max-line\"") && msg.contains("lots"),
            "{msg}"
        );
        assert!(!msg.contains("Usage"), "{msg}");

        let err = expand_file("negative", "max-line = -1\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("key \"max-line\"") && msg.contains("-1"),
            "{msg}"
        );
        assert!(!msg.contains("Usage"), "{msg}");
    }

    #[test]
    fn booleans_read_as_people_write_them() {
        let out = expand_file("booleans", "utc = \"yes\"\nproxy-protocol = 0\n").unwrap();
        let m = Cli::command().get_matches_from(&out.argv);
        let serve = m.subcommand_matches("serve").unwrap();
        assert!(serve.get_flag("utc"));
        assert!(!serve.get_flag("proxy_protocol"));
        let err = expand_file("not-boolean", "utc = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("key \"utc\""), "{err}");
    }

    #[test]
    fn printed_config_reads_back_as_a_config_file() {
        let m = Cli::command().get_matches_from([
            "timecho",
            "serve",
            "--utc",
            "--tcp",
            "localhost:5",
            "--http",
            "[::1]:6",
        ]);
        let printed = render(m.subcommand_matches("serve").unwrap(), &[]);
        let out = expand_file("roundtrip", &printed).unwrap();
        let m2 = Cli::command().get_matches_from(&out.argv);
        let source = |text: &str| text.replace("# default", "#").replace("# flag", "#");
        let reread = render(m2.subcommand_matches("serve").unwrap(), &out.from_file);
        assert_eq!(source(&reread.replace("# file", "#")), source(&printed));
    }
}
