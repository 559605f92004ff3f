//! Log lines to standard error, where systemd's journal collects them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Sets up logging at the level of `$NSS_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_env("NSS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd the journal stamps each line; elsewhere the time helps.
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: the journal and log files would keep
        // the escape codes as text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if under_systemd {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
