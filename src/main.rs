use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The config file fills in settings the environment does not set, before clap reads both.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = chatsink::config_file::apply(&args) {
        eprintln!("chatsink: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let cli = chatsink::config::Cli::parse_from(args);
    chatsink::telemetry::init(cli.log_format);
    chatsink::cli::run(cli.command)
}
