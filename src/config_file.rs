//! The optional TOML configuration file, and `chatsink config check`.
//!
//! Precedence, highest first: command-line flags, `CHATSINK_*` environment variables, the config
//! file (`--config FILE` or `CHATSINK_CONFIG`), built-in defaults. The file's keys are the flags'
//! names in snake case (`listen`, `hmac_secrets`, `download_allow_hosts`, ...); each key fills its
//! `CHATSINK_*` variable when that is not already set, so clap applies the usual rules after.

use crate::config::{RsaKeySource, ServeArgs, Settings};
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
    for (variable, value) in read(&path)? {
        if std::env::var_os(&variable).is_none() {
            std::env::set_var(variable, value);
        }
    }
    Ok(())
}

/// `chatsink config check`: validates like `serve` and prints the effective configuration with
/// every secret redacted.
pub fn check(args: &ServeArgs) -> anyhow::Result<String> {
    let settings = args.settings()?;
    Ok(render(&settings))
}

fn render(s: &Settings) -> String {
    let redacted = |n: usize, what: &str| match n {
        0 => "none".to_owned(),
        1 => format!("1 {what} (redacted)"),
        n => format!("{n} {what}s (redacted)"),
    };
    let rsa = match &s.verify.rsa_key {
        RsaKeySource::Pem(_) => "given (PEM, public)".to_owned(),
        RsaKeySource::Url(url) => format!("fetched from {url}"),
    };
    let replay = match &s.download.replay_api {
        Some(crate::config::ReplayApiCredentials::Cloudflare {
            base,
            account_id,
            app_id,
            ..
        }) => format!("Cloudflare {base} account {account_id} app {app_id}, token (redacted)"),
        Some(crate::config::ReplayApiCredentials::Dyte { base, org_id, .. }) => {
            format!("Dyte {base} organization {org_id}, API key (redacted)")
        }
        None => "not configured (expired links cannot be refreshed)".to_owned(),
    };
    let lines = [
        ("listen", s.listen.to_string()),
        ("database", s.database.display().to_string()),
        ("data_dir", s.data_dir.display().to_string()),
        ("rtk_public_key", rsa),
        ("hmac_secrets", redacted(s.verify.hmac_keys.len(), "secret")),
        (
            "insecure_skip_verify",
            s.verify.insecure_skip_verify.to_string(),
        ),
        (
            "read_tokens",
            if s.read_tokens.is_empty() {
                "generated in the data dir on first start".to_owned()
            } else {
                redacted(s.read_tokens.len(), "token")
            },
        ),
        ("max_body_bytes", s.max_body_bytes.to_string()),
        ("workers", s.workers.to_string()),
        ("download_allow_hosts", s.download.allow_hosts.join(",")),
        ("download_allow_http", s.download.allow_http.to_string()),
        ("download_max_bytes", s.download.max_bytes.to_string()),
        ("chat_replay_api", replay),
        ("job_max_attempts", s.jobs.max_attempts.to_string()),
        ("job_lease_secs", s.jobs.lease.as_secs().to_string()),
    ];
    let mut out = String::from("configuration is valid; effective settings:\n");
    for (key, value) in lines {
        out.push_str(&format!("  {key:<22} {value}\n"));
    }
    out
}
