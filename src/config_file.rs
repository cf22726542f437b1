//! The optional TOML configuration file, and `chatsink config check`.
//!
//! Precedence, highest first: command-line flags, `CHATSINK_*` environment variables, the config
//! file (`--config FILE` or `CHATSINK_CONFIG`), built-in defaults. The file's keys are the flags'
//! names in snake case (`listen`, `hmac_secrets`, `download_allow_hosts`, ...); each key fills its
//! `CHATSINK_*` variable when that is not already set, so clap applies the usual rules after.

use crate::config::ServeArgs;
use anyhow::{bail, Context};
use clap::CommandFactory;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The config file named on the command line (`--config F`, `--config=F`) or in `CHATSINK_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if text == "--" {
            break;
        }
    }
    std::env::var_os("CHATSINK_CONFIG").map(PathBuf::from)
}

/// Every `CHATSINK_*` variable any subcommand reads.
fn known_variables() -> BTreeSet<String> {
    fn walk(command: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&crate::config::Cli::command(), &mut out);
    out
}

/// Reads the file and returns `(variable, value)` for each key, validated against the known
/// settings. Arrays become comma-separated lists.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let known = known_variables();
    let mut out = Vec::new();
    for (key, value) in table {
        let variable = format!("CHATSINK_{}", key.to_ascii_uppercase().replace('-', "_"));
        if !known.contains(&variable) || variable == "CHATSINK_CONFIG" {
            bail!(
                "config file {}: unknown setting '{key}' (settings are the flags' names in snake case, e.g. listen, hmac_secrets)",
                path.display()
            );
        }
        let scalar = |v: &toml::Value| -> anyhow::Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!(
                    "config file {}: '{key}' must be a string, number, boolean or a list of them, not {}",
                    path.display(),
                    other.type_str()
                ),
            })
        };
        let value = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => scalar(other)?,
        };
        out.push((variable, value));
    }
    Ok(out)
}

/// Loads the config file, if any, into the environment under whatever is already set there.
/// Call before any thread starts (it sets process environment variables).
pub fn apply(args: &[OsString]) -> anyhow::Result<()> {
    let Some(path) = config_path(args) else {
        return Ok(());
    };
    let mut applied = std::collections::BTreeMap::new();
    for (variable, value) in read(&path)? {
        if std::env::var_os(&variable).is_none() {
            std::env::set_var(&variable, &value);
            applied.insert(variable, value);
        }
    }
    crate::config_source::record_file(path, applied);
    Ok(())
}

/// `chatsink config check`: validates like `serve` and prints every setting `serve` takes, with
/// its effective value (secrets redacted) and where that value came from.
pub fn check(args: &ServeArgs) -> anyhow::Result<String> {
    args.settings()?;
    let argv: Vec<OsString> = std::env::args_os().collect();
    let top = crate::config::Cli::command().try_get_matches_from(&argv)?;
    let matches = top
        .subcommand_matches("config")
        .and_then(|m| m.subcommand_matches("check"))
        .context("config check: the arguments are not a config check")?;
    let command = crate::config::Cli::command();
    let check = command
        .find_subcommand("config")
        .and_then(|c| c.find_subcommand("check"))
        .expect("config check is defined");
    let mut out = String::from("configuration is valid; effective settings:\n");
    render(&mut out, &command, &top);
    render(&mut out, check, matches);
    Ok(out)
}

/// A line per setting of `command` (those with an environment variable).
fn render(out: &mut String, command: &clap::Command, matches: &clap::ArgMatches) {
    use clap::parser::ValueSource;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(variable) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            continue; // --help and friends
        };
        if variable == "CHATSINK_CONFIG" {
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.trim().is_empty())
            .collect();
        let secret = arg.is_hide_env_values_set()
            || ["secret", "token", "api_key"]
                .iter()
                .any(|w| id.contains(w));
        let value = match (values.len(), secret) {
            // Unset is not `none` (which keeps no dumps): it is the data dir's `dumps`.
            (0, _) if id == "dump_store" => "dumps under CHATSINK_DATA_DIR".to_owned(),
            (0, _) => "none".to_owned(),
            (n, true) => {
                let what = if id.contains("secret") {
                    "secret"
                } else if id.contains("token") {
                    "token"
                } else {
                    "key"
                };
                format!("{n} {what}{} (redacted)", if n == 1 { "" } else { "s" })
            }
            // A PostgreSQL URL may hold a password: shown redacted.
            (_, false) if id == "database" => values
                .iter()
                .map(|v| {
                    crate::store::DatabaseLocation::parse(v)
                        .map_or_else(|_| "invalid".to_owned(), |l| l.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            (_, false) if id == "rtk_public_key" => {
                format!("given (PEM, {} bytes)", values[0].len())
            }
            (_, false) => values.join(","),
        };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => format!("--{}", arg.get_long().unwrap_or(id)),
            Some(ValueSource::EnvVariable) => {
                crate::config_source::source_in(&[], &variable).to_string()
            }
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            _ => "not set".to_owned(),
        };
        out.push_str(&format!("  {id:<36} {value}  [{source}]\n"));
    }
}
