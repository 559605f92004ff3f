use std::process::ExitCode;

use clap::Parser;
use nss_agent::cli::{self, exit, Cli};
use nss_agent::config::ConfigError;
use nss_agent::mcas::ApiError;
use nss_agent::zia::ZiaError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            // Causes may carry a daemon's answer or a server's text: escaped for the terminal.
            let line = format!("nss: {}", nss_agent::untrusted::escaped(&one_line(&error)));
            eprintln!("{}", nss_agent::logging::fatal_line(&line));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The error and its causes, as one line; configuration errors say so.
fn one_line(error: &anyhow::Error) -> String {
    nss_agent::error_text::labelled(error.as_ref(), |cause| {
        cause.is::<ConfigError>().then_some("configuration error: ")
    })
}

fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<ConfigError>() || cause.is::<cli::ConfigRefused>() {
            return exit::CONFIG;
        }
        if let Some(zia) = cause.downcast_ref::<ZiaError>() {
            return match zia {
                ZiaError::Setup(_) | ZiaError::PrivateKey(_) => exit::CONFIG,
                _ => exit::UNAVAILABLE,
            };
        }
        if cause.is::<ApiError>() || cause.is::<cli::Unavailable>() {
            return exit::UNAVAILABLE;
        }
    }
    exit::FAILURE
}
