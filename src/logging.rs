//! Log lines to standard error, where systemd's journal collects them. Under systemd each
//! line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
//! debug), which the journal reads, so that `journalctl -p warning -u nss-agent` finds the
//! warnings and errors; the fields of an event (seq, file, peer, ...) follow its message as
//! `key=value`. On a terminal or in a file the lines are the plain format with times.

use std::fmt;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Sets up logging at the level of `$NSS_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_env("NSS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: the journal and log files would keep
        // the escape codes as text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if stderr_is_the_journal() {
        builder.event_format(JournalLine).init();
    } else {
        builder.init();
    }
}

/// Whether standard error is the journal's stream: systemd sets `JOURNAL_STREAM` to the
/// device and inode of that stream, which a redirected stderr (`nss run 2>file` in a unit
/// shell) no longer matches.
pub fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stderr.dev(), stderr.ino())
}

/// The line a command's fatal error is printed as: under the journal with the error
/// priority (`<3>`), so that `journalctl -p err -u nss-agent` shows why the service is
/// down; elsewhere as it is.
pub fn fatal_line(text: &str) -> String {
    if stderr_is_the_journal() {
        format!("<{}>{text}", priority(&Level::ERROR))
    } else {
        text.to_string()
    }
}

/// The syslog priority of a level, as the journal files it.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One line per event: `<priority>message key=value ...`. No time (the journal stamps each
/// line) and no level word (the priority is the level).
struct JournalLine;

impl<S, N> FormatEvent<S, N> for JournalLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_the_journals_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }
}
