//! Where each setting's value came from, so errors and `config check` name the place an
//! operator must fix: a flag (`--listen`), an environment variable (`CHATSINK_LISTEN`), a key of
//! the config file (`listen in chatsink.toml`), or the default.

use clap::CommandFactory;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The variables the config file supplied (and the file), recorded once by `config_file::apply`.
static FROM_FILE: OnceLock<(PathBuf, BTreeMap<String, String>)> = OnceLock::new();

pub fn record_file(path: PathBuf, variables: BTreeMap<String, String>) {
    let _ = FROM_FILE.set((path, variables));
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    File { key: String, path: PathBuf },
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "{flag}"),
            Self::Env(var) => write!(f, "{var}"),
            Self::File { key, path } => write!(f, "{key} in {}", path.display()),
            Self::Default => f.write_str("the default"),
        }
    }
}

/// The long flag of the argument read from `variable`, from the command definitions.
fn flag_of(variable: &str) -> Option<String> {
    fn walk(command: &clap::Command, variable: &str) -> Option<String> {
        for arg in command.get_arguments() {
            if arg.get_env().is_some_and(|e| e == variable) {
                return arg.get_long().map(|l| format!("--{l}"));
            }
        }
        command
            .get_subcommands()
            .find_map(|sub| walk(sub, variable))
    }
    walk(&crate::config::Cli::command(), variable)
}

/// The environment variable of a long flag (`--listen` -> `CHATSINK_LISTEN`).
pub fn variable_of(flag: &str) -> Option<String> {
    fn walk(command: &clap::Command, long: &str) -> Option<String> {
        for arg in command.get_arguments() {
            if arg.get_long() == Some(long) {
                return arg.get_env().map(|e| e.to_string_lossy().into_owned());
            }
        }
        command.get_subcommands().find_map(|sub| walk(sub, long))
    }
    walk(&crate::config::Cli::command(), flag.trim_start_matches('-'))
}

fn flag_given(args: &[OsString], flag: &str) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    })
}

/// How to name the setting read from `variable` in an error: by where its value came from (the
/// variable itself when nothing set it).
pub fn describe(variable: &str) -> String {
    // Settings that go together are named as `A/B/C`.
    if variable.contains('/') {
        return variable
            .split('/')
            .map(describe)
            .collect::<Vec<_>>()
            .join(" / ");
    }
    match source_of(variable) {
        Source::Default => variable.to_owned(),
        source => source.to_string(),
    }
}

/// Rewrites clap's error for a value that came from the environment or the config file: clap
/// names the flag (`'--listen <LISTEN>'`) even when no flag was given.
pub fn clap_error_text(error: &clap::Error, args: &[OsString]) -> String {
    let text = error.render().to_string();
    let Some(clap::error::ContextValue::String(arg)) =
        error.get(clap::error::ContextKind::InvalidArg)
    else {
        return text;
    };
    let flag = arg.split_whitespace().next().unwrap_or_default();
    let Some(variable) = variable_of(flag) else {
        return text;
    };
    match source_in(args, &variable) {
        Source::Flag(_) | Source::Default => text,
        source => text.replace(&format!("'{arg}'"), &source.to_string()),
    }
}

/// Where the setting read from `variable` got its value, judged from the process's arguments.
pub fn source_of(variable: &str) -> Source {
    let args: Vec<OsString> = std::env::args_os().collect();
    source_in(&args, variable)
}

pub fn source_in(args: &[OsString], variable: &str) -> Source {
    if let Some(flag) = flag_of(variable).filter(|f| flag_given(args, f)) {
        return Source::Flag(flag);
    }
    if let Some((path, vars)) = FROM_FILE.get() {
        if let Some(_value) = vars.get(variable) {
            // The file's value is used only when the environment did not set it first.
            if std::env::var(variable).ok().as_ref() == vars.get(variable) {
                return Source::File {
                    key: variable
                        .trim_start_matches("CHATSINK_")
                        .to_ascii_lowercase(),
                    path: path.clone(),
                };
            }
        }
    }
    if std::env::var_os(variable).is_some() {
        return Source::Env(variable.to_owned());
    }
    Source::Default
}
