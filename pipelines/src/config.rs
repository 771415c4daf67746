//! `run --config FILE.toml` and `ORDERFLOW_*` environment variables: every
//! `run` flag can come from either, under the same name. The command line
//! wins over the environment, which wins over the file. Both are turned
//! into the flags they stand for and parsed by clap with the rest, so each
//! value is checked exactly as on the command line.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The environment variable for a flag: `--checkpoint-interval` →
/// `ORDERFLOW_CHECKPOINT_INTERVAL`.
fn variable(long: &str) -> String {
    format!("ORDERFLOW_{}", long.to_uppercase().replace('-', "_"))
}

/// The command line, with the flags the config file and the environment
/// add for the settings it leaves out. Clap's own errors (and `--help`)
/// come back as [`clap::Error`], for the caller to print and exit with.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(&args)?;
    let Some((name, given)) = matches
        .subcommand()
        .filter(|(n, _)| matches!(*n, "run" | "replay"))
    else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let file = given
        .get_one::<PathBuf>("config")
        .cloned()
        .or_else(|| std::env::var_os(variable("config")).map(PathBuf::from));
    let mut table = match &file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --config {}", path.display()))?
            .parse::<toml::Table>()
            .with_context(|| format!("--config {}", path.display()))?,
        None => toml::Table::new(),
    };
    let subcommand = command
        .find_subcommand(name)
        .context("the subcommand clap just matched")?;
    let mut added: Vec<OsString> = Vec::new();
    for arg in subcommand.get_arguments() {
        let Some(long) = arg.get_long().filter(|l| *l != "config") else {
            continue;
        };
        // In the file, `sink` is `sinks` (a list) and `-` may be `_`.
        let keys = [long.to_string(), long.replace('-', "_"), format!("{long}s")];
        let from_file = keys
            .iter()
            .find_map(|k| table.remove(k).map(|v| (k.clone(), v)));
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let values: Vec<String> = match (std::env::var(variable(long)), from_file) {
            // A list in a variable is separated by spaces.
            (Ok(text), _) if repeatable => text.split_whitespace().map(String::from).collect(),
            (Ok(text), _) => vec![text],
            (Err(_), Some((key, value))) => values(&key, value, repeatable)?,
            (Err(_), None) => continue,
        };
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match values.as_slice() {
                [v] if v == "true" || v == "1" => added.push(format!("--{long}").into()),
                [v] if v == "false" || v == "0" => {}
                _ => bail!("{long}: expected true or false"),
            }
            continue;
        }
        for value in values {
            added.push(format!("--{long}").into());
            added.push(value.into());
        }
    }
    if let Some(key) = table.keys().next() {
        let path = file.map(|p| p.display().to_string()).unwrap_or_default();
        bail!("--config {path}: `{key}` is not a flag of `orderflow {name}`");
    }
    let mut args = args;
    args.extend(added);
    // Clap's own errors (and `--help`) exit as usual.
    Ok(Cli::from_arg_matches(
        &Cli::command().get_matches_from(args),
    )?)
}

/// A TOML value as the flag values it stands for.
fn values(key: &str, value: toml::Value, repeatable: bool) -> anyhow::Result<Vec<String>> {
    let scalar = |value: toml::Value| match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => bail!(
            "{key}: expected a string, number or boolean, found {}",
            other.type_str()
        ),
    };
    match value {
        toml::Value::Array(items) if repeatable => items.into_iter().map(scalar).collect(),
        toml::Value::Array(_) => bail!("{key}: takes one value, not a list"),
        value => Ok(vec![scalar(value)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn run(args: &[&str]) -> anyhow::Result<crate::cli::RunArgs> {
        let args = ["orderflow", "run"].into_iter().chain(args.iter().copied());
        match parse(args.map(OsString::from).collect())?.command {
            Command::Run(run) => Ok(run),
            other => bail!("not run: {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_fills_the_rest() {
        let dir = std::env::temp_dir().join(format!("orderflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(
            &path,
            r#"
            source = "gen"
            sinks = ["dir:./a", "dir:./b"]
            orders = 5000
            hot_share = 0.5
            intervals = ["1s", "1m"]
            quiet = true
            "#,
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let args = run(&["--config", config, "--orders", "7"]).unwrap();
        assert_eq!(args.gen.orders, 7);
        assert_eq!(args.gen.hot_share, 0.5);
        assert_eq!(args.sinks.len(), 2);
        assert_eq!(args.intervals.len(), 2);
        assert!(args.quiet);
        let args = run(&["--config", config, "--sink", "dir:./c"]).unwrap();
        assert_eq!(args.sinks.len(), 1);
        std::fs::write(&path, "ordrs = 5\n").unwrap();
        let error = run(&["--config", config]).unwrap_err().to_string();
        assert!(error.contains("`ordrs` is not a flag"), "{error}");
        std::fs::write(&path, "orders = [1, 2]\n").unwrap();
        let error = run(&["--config", config]).unwrap_err().to_string();
        assert!(error.contains("orders: takes one value"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
