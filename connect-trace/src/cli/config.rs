//! Options from a TOML file (`connect-trace run --config FILE`), and where
//! each option's value came from.
//!
//! Every key is the long name of a `run` option (`ring-buffer-size`,
//! `failures-only`, ...). The file's values become the options' defaults, so
//! clap's own order decides what wins: the command line, then the
//! `CONNECT_TRACE_*` environment variables, then the file, then the built-in
//! defaults. Every value in the file and in the environment is checked with
//! the option's own parser even when another source wins, so a mistyped
//! one is never silently ignored, and an error names where the value came
//! from.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    io::Read as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use clap::{ArgMatches, Command, parser::ValueSource};

/// The variable that names a config file, like `--config`.
const CONFIG_VARIABLE: &str = "CONNECT_TRACE_CONFIG";

/// A config file is a few lines; anything larger is not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where the `run` options' values came from.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    by_id: HashMap<String, String>,
}

impl Origins {
    /// Where the value of option `id` (its field name) came from, as a
    /// person would name it: `--ring-buffer-size`, `CONNECT_TRACE_...`,
    /// `config file /etc/... (ring-buffer-size)`, or `the default`.
    pub fn of(&self, id: &str) -> &str {
        self.by_id.get(id).map_or("the default", String::as_str)
    }

    /// Works out the origins from the parsed `run` options, given the keys
    /// `applied` from the config file.
    pub fn from_matches(matches: &ArgMatches, command: &Command, applied: &Applied) -> Self {
        let mut by_id = HashMap::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else {
                continue;
            };
            let origin = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => format!("--{long}"),
                Some(ValueSource::EnvVariable) => arg.get_env().map_or_else(
                    || "the environment".to_owned(),
                    |env| env.to_string_lossy().into_owned(),
                ),
                Some(ValueSource::DefaultValue) if applied.keys.iter().any(|key| key == long) => {
                    format!("config file {} ({long})", applied.path.display())
                }
                _ => continue,
            };
            by_id.insert(id.to_owned(), origin);
        }
        Self { by_id }
    }
}

/// The keys a config file set.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The file.
    pub path: PathBuf,
    /// The long option names it set.
    pub keys: Vec<String>,
}

/// Returns `command` with the `run` options' defaults taken from the config
/// file named in `args` or the environment, if any, after checking every
/// value from the file and the environment.
pub fn apply(command: Command, args: &[OsString]) -> Result<(Command, Applied)> {
    check_environment(&command)?;
    let Some(path) = config_path(args) else {
        return Ok((command, Applied::default()));
    };
    let text = read_config(&path)?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing config file {}", path.display()))?;
    let run = command
        .find_subcommand("run")
        .context("the command line has no `run` subcommand")?;
    let known: Vec<String> = run
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|long| !matches!(*long, "config" | "help"))
        .map(str::to_owned)
        .collect();
    let mut defaults = Vec::new();
    let mut applied = Applied {
        path: path.clone(),
        keys: Vec::new(),
    };
    for (key, value) in table {
        if !known.contains(&key) {
            bail!(
                "unknown key `{key}` in config file {}; the keys are: {}",
                path.display(),
                known.join(", ")
            );
        }
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => bail!(
                "config file {}: `{key}` must be a string, an integer or a boolean, not {}",
                path.display(),
                other.type_str()
            ),
        };
        check_value(run, &key, OsStr::new(&value))
            .with_context(|| format!("config file {}: `{key} = {value}`", path.display()))?;
        applied.keys.push(key.clone());
        defaults.push((key.replace('-', "_"), value));
    }
    let command = command.mut_subcommand("run", |mut run| {
        for (id, value) in defaults {
            run = run.mut_arg(id, |arg| arg.default_value(value));
        }
        run
    });
    Ok((command, applied))
}

/// Reads the config file: a regular file of at most [`MAX_CONFIG_BYTES`].
/// A FIFO or a device would block or never end.
fn read_config(path: &Path) -> Result<String> {
    let context = || format!("reading config file {}", path.display());
    let meta = std::fs::metadata(path).with_context(context)?;
    if !meta.is_file() {
        bail!("reading config file {}: not a regular file", path.display());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(context)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(context)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!(
            "reading config file {}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        );
    }
    Ok(text)
}

/// Checks every `CONNECT_TRACE_*` value of a `run` option with the
/// option's parser, so an error names the variable.
fn check_environment(command: &Command) -> Result<()> {
    let Some(run) = command.find_subcommand("run") else {
        return Ok(());
    };
    for arg in run.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if let Some(value) = std::env::var_os(env) {
            check_value(run, long, &value).with_context(|| {
                format!("{}={}", env.to_string_lossy(), value.to_string_lossy())
            })?;
        }
    }
    Ok(())
}

/// Parses `value` as option `--long` of `run` would.
fn check_value(run: &Command, long: &str, value: &OsStr) -> Result<()> {
    let Some(arg) = run.get_arguments().find(|arg| arg.get_long() == Some(long)) else {
        return Ok(());
    };
    if !arg.get_action().takes_values() {
        // A flag: clap reads `true`/`false` (and 1/0, yes/no) from the
        // environment and the defaults.
        let text = value.to_string_lossy().to_ascii_lowercase();
        if !["true", "false", "1", "0", "yes", "no", "on", "off"].contains(&text.as_str()) {
            bail!("`{}` is not true or false", value.to_string_lossy());
        }
        return Ok(());
    }
    // The option alone, without its environment variable or default, in a
    // command of its own: clap parses the value exactly as `run` would.
    let alone = arg.clone().env(None).default_value(None).required(false);
    Command::new(run.get_name().to_owned())
        .no_binary_name(true)
        .arg(alone)
        .try_get_matches_from([OsString::from(format!("--{long}")), value.to_owned()])
        .map(drop)
        .map_err(|error| {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            anyhow::anyhow!("{}", first.trim_start_matches("error: "))
        })
}

/// `--config FILE` or `--config=FILE` after `run`, else the environment.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip_while(|arg| *arg != "run").skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|arg| arg.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_VARIABLE).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_the_config_option() {
        let found = config_path(&args(&[
            "ct",
            "run",
            "--pid",
            "1",
            "--config",
            "/etc/ct.toml",
        ]));
        assert_eq!(found, Some(PathBuf::from("/etc/ct.toml")));
        let found = config_path(&args(&["ct", "run", "--config=/x.toml"]));
        assert_eq!(found, Some(PathBuf::from("/x.toml")));
        let found = config_path(&args(&["ct", "run", "--", "--config", "/no"]));
        assert_ne!(found, Some(PathBuf::from("/no")));
    }

    #[test]
    fn devices_and_fifos_are_not_config_files() {
        let error = read_config(Path::new("/dev/zero")).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let error = read_config(Path::new("/")).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn a_huge_file_is_refused() {
        let path = std::env::temp_dir().join(format!("ct-config-huge-{}", std::process::id()));
        std::fs::write(&path, vec![b'#'; 2 * 1024 * 1024]).unwrap();
        let error = read_config(&path).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
        let _ = std::fs::remove_file(path);
    }
}
