//! Options from a TOML file (`connect-trace run --config FILE`).
//!
//! Every key is the long name of a `run` option (`ring-buffer-size`,
//! `failures-only`, ...). The file's values become the options' defaults, so
//! clap's own order decides what wins: the command line, then the
//! `CONNECT_TRACE_*` environment variables, then the file, then the built-in
//! defaults.

use std::{ffi::OsString, path::PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Command;

/// The variable that names a config file, like `--config`.
const CONFIG_VARIABLE: &str = "CONNECT_TRACE_CONFIG";

/// Returns `command` with the `run` options' defaults taken from the config
/// file named in `args` or the environment, if any.
pub fn apply(command: Command, args: &[OsString]) -> Result<Command> {
    let Some(path) = config_path(args) else {
        return Ok(command);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
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
        defaults.push((key.replace('-', "_"), value));
    }
    Ok(command.mut_subcommand("run", |mut run| {
        for (id, value) in defaults {
            run = run.mut_arg(id, |arg| arg.default_value(value));
        }
        run
    }))
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
}
