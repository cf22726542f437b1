use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = chatsink::config::Cli::parse();
    chatsink::telemetry::init(cli.log_format);
    chatsink::cli::run(cli.command)
}
