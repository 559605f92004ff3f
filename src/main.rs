use std::process::ExitCode;

use clap::Parser;
use nss_agent::cli::{self, Cli};
use nss_agent::config::ConfigError;
use nss_agent::exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            // Causes may carry a daemon's answer or a server's text: escaped for the terminal.
            let line = format!("nss: {}", nss_agent::untrusted::escaped(&one_line(&error)));
            eprintln!("{}", nss_agent::logging::fatal_line(&line));
            ExitCode::from(cli::exit_code_for(&error))
        }
    }
}

/// The error and its causes, as one line; configuration errors say so.
fn one_line(error: &anyhow::Error) -> String {
    nss_agent::error_text::labelled(error.as_ref(), |cause| {
        cause.is::<ConfigError>().then_some("configuration error: ")
    })
}
