//! The data source as MCAS itself sees it (the portal's "Data sources" tab, read from
//! `GET /api/discovery/streams/`): does `mcas.data_source` exist, does its log type match
//! `mcas.source`, when did MCAS last receive data. One verdict for `nss troubleshoot
//! mcas`, `nss configure-mcas` and the daemon, which reads it at start and then hourly.
//! Also what to fix when MCAS refuses uploads for the whole tenant.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::client::{DataSource, DataSourcesError, McasClient};
use super::counters::DataSourceCounters;
use super::error::{ApiError, Step};
use super::log_format::{self, Choice, Chooser};
use crate::clock::rfc3339;
use crate::counter::WallTime;

/// Where the data sources are in the portal.
pub const PORTAL_PATH: &str =
    "Settings > Cloud Apps > Cloud Discovery > Automatic log upload > Data sources";

/// How often the daemon reads the data sources list.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// How long MCAS may receive nothing while uploads succeed before `nss status` warns (the
/// portal flags a data source after 24 hours without data).
pub const SILENCE: Duration = Duration::from_secs(24 * 3600);

/// The log formats MCAS takes for Zscaler's logs, with their log type numbers.
pub const LOG_TYPES: [(&str, u32); 6] = [
    ("ZSCALER", 120),
    ("ZSCALER_SYSLOG", 143),
    ("ZSCALER_QRADAR", 170),
    ("ZSCALER_QRADAR_SYSLOG", 171),
    ("ZSCALER_CEF", 196),
    ("ZSCALER_CEF_SYSLOG", 197),
];

/// The log type number of a log format name.
pub fn log_type_number(name: &str) -> Option<u32> {
    LOG_TYPES.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

/// The log format name of a log type number, if it is one of Zscaler's.
pub fn log_type_name(number: u32) -> Option<&'static str> {
    LOG_TYPES
        .iter()
        .find(|&&(_, t)| t == number)
        .map(|&(n, _)| n)
}

/// A log type number with its name when it is one of Zscaler's: `170 (ZSCALER_QRADAR)`.
fn log_type_text(number: u32) -> String {
    match LOG_TYPES.iter().find(|&&(_, t)| t == number) {
        Some((name, _)) => format!("{number} ({name})"),
        None => number.to_string(),
    }
}

/// What the data sources list says of the configured data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// MCAS lists it; `mismatch` says so when its log type is not `mcas.source`'s.
    Found {
        source: DataSource,
        mismatch: Option<String>,
    },
    /// MCAS does not list it: the text names it, the ones that exist and the fix.
    Missing(String),
    /// The credential may not read the list (no Discovery.read): not a failure.
    Unreadable(String),
    /// The list could not be read for another reason (network, 5xx, ...).
    Failed(String),
}

impl Verdict {
    /// Whether the data source is known to exist (`Some`), or not known.
    pub fn found(&self) -> Option<bool> {
        match self {
            Verdict::Found { .. } => Some(true),
            Verdict::Missing(_) => Some(false),
            Verdict::Unreadable(_) | Verdict::Failed(_) => None,
        }
    }

    /// What is wrong, in words; `None` when all is well.
    pub fn problem(&self) -> Option<String> {
        match self {
            Verdict::Found { mismatch, .. } => mismatch.clone(),
            Verdict::Missing(text) | Verdict::Unreadable(text) | Verdict::Failed(text) => {
                Some(text.clone())
            }
        }
    }
}

/// Sorts the data sources list (or why it could not be read) for `data_source`, whose
/// files are uploaded as log format `source`.
pub fn judge(
    listed: Result<Vec<DataSource>, DataSourcesError>,
    data_source: &str,
    source: &str,
) -> Verdict {
    let sources = match listed {
        Ok(sources) => sources,
        Err(DataSourcesError::NotPermitted) => {
            return Verdict::Unreadable(format!(
                "{}; whether \"{data_source}\" exists is not known (uploads do not need this permission)",
                DataSourcesError::NotPermitted
            ))
        }
        Err(DataSourcesError::Api(error)) => {
            return Verdict::Failed(format!("the data sources list could not be read: {error}"))
        }
    };
    let Some(found) = sources.iter().find(|s| s.display_name == data_source) else {
        let names: Vec<String> = sources
            .iter()
            .map(|s| format!("\"{}\"", s.display_name))
            .collect();
        let existing = if names.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has {}", names.join(", "))
        };
        return Verdict::Missing(format!(
            "MCAS has no data source \"{data_source}\" ({existing}): create it in the portal ({PORTAL_PATH}; log type {}), or set mcas.data_source to an existing one (`sudo nss configure-mcas --data-source NAME`)",
            source_text(source)
        ));
    };
    // With `auto` the files are sent as the data source's own type: only a type that is
    // none of Zscaler's is a mismatch.
    let expected = match source {
        log_format::AUTO => log_type_name(found.log_type).and_then(log_type_number),
        _ => log_type_number(source),
    };
    let mismatch = (expected != Some(found.log_type)).then(|| {
        format!(
            "the data source \"{data_source}\" has log type {} in MCAS, but mcas.source is {}: MCAS parses the files as the data source's type; set mcas.source to match, or change the data source's log type in the portal",
            log_type_text(found.log_type),
            source_text(source)
        )
    });
    Verdict::Found {
        source: found.clone(),
        mismatch,
    }
}

/// `ZSCALER_QRADAR (170)`; for `auto`, the fallback's.
fn source_text(source: &str) -> String {
    let source = match source {
        log_format::AUTO => log_format::FALLBACK,
        _ => source,
    };
    match log_type_number(source) {
        Some(number) => format!("{source} ({number})"),
        None => source.to_string(),
    }
}

/// The log format `setting` (`mcas.source`) comes to under `verdict`; `last`, the one
/// chosen before, is kept while the list cannot be read.
pub fn choose(setting: &str, verdict: &Verdict, last: Option<&Choice>) -> Choice {
    if setting != log_format::AUTO {
        return Choice::configured(setting);
    }
    match verdict {
        Verdict::Found { source, .. } => Choice::auto(Ok(source)),
        Verdict::Missing(_) => Choice::auto(Err("MCAS does not list the data source".into())),
        // Said in a few words: the verdict's own line says the rest.
        Verdict::Unreadable(_) | Verdict::Failed(_) => match last {
            Some(last) => last.clone(),
            None => Choice::auto(Err(match verdict {
                Verdict::Unreadable(_) => {
                    "the credential may not read the data sources list".into()
                }
                _ => "the data sources list could not be read".into(),
            })),
        },
    }
}

/// Reads the data sources list and judges it.
pub async fn check(client: &McasClient, data_source: &str, source: &str) -> Verdict {
    judge(client.data_sources().await, data_source, source)
}

/// The verdict's lines for a person: what MCAS lists, and what to do.
pub fn describe(verdict: &Verdict, data_source: &str) -> Vec<String> {
    match verdict {
        Verdict::Found { source, mismatch } => {
            let mut lines = vec![format!(
                "Data source: OK. \"{data_source}\" exists in MCAS, log type {}; {}.",
                log_type_text(source.log_type),
                match source.last_data_received {
                    Some(at) => format!("MCAS last received data at {}", rfc3339(at)),
                    None => "MCAS has received no data for it yet".to_string(),
                }
            )];
            if let Some(text) = mismatch {
                lines.push(format!("Warning: {text}."));
            }
            lines
        }
        Verdict::Missing(text) => vec![format!("Verdict: {text}.")],
        Verdict::Unreadable(text) | Verdict::Failed(text) => {
            vec![format!("Data source: not checked: {text}.")]
        }
    }
}

/// What to do about a refusal that pauses uploads for the whole tenant
/// ([`ApiError::is_tenant_wide`]), given the names the agent sent: `data_source` to
/// done_upload, `source` to upload_url.
pub fn refusal_fix(error: &ApiError, data_source: &str, source: &str) -> String {
    let ApiError::Rejected { step, body, .. } = error else {
        return "check the configuration with `sudo nss troubleshoot mcas`".to_string();
    };
    let body = body.to_ascii_lowercase();
    let format_fix = log_format::refused_fix(source);
    let data_source_fix = format!(
        "create the data source \"{data_source}\" in the portal ({PORTAL_PATH}), or set mcas.data_source to an existing one (`sudo nss configure-mcas --data-source NAME`)"
    );
    let about_format = body.contains("format") || body.contains(&source.to_ascii_lowercase());
    let about_data_source = body.contains("data source")
        || body.contains("inputstreamname")
        || body.contains(&data_source.to_ascii_lowercase());
    let fix = match (step, about_format, about_data_source) {
        (Step::UploadUrl, _, _) | (_, true, false) => format_fix,
        (_, false, true) => data_source_fix,
        _ => format!("{data_source_fix}; if it exists, check mcas.source (\"{source}\")"),
    };
    format!("{fix}; then `sudo systemctl reload nss-agent` (SIGHUP) retries at once, else uploads are tried again every upload.auth_retry")
}

/// Records a verdict in the daemon's status, and logs what changed.
fn record(
    status: &DataSourceCounters,
    verdict: &Verdict,
    data_source: &str,
    last: Option<&Verdict>,
) {
    match verdict {
        Verdict::Found { source, .. } => match source.last_data_received {
            Some(at) => status.last_data_received.set(at),
            None => status.last_data_received.clear(),
        },
        Verdict::Missing(_) => status.last_data_received.clear(),
        Verdict::Unreadable(_) | Verdict::Failed(_) => {}
    }
    // An unreadable list keeps what was known; the first reading says unknown.
    if verdict.found().is_some() || last.is_none() {
        status.found.set(verdict.found());
    }
    status.problem.set(verdict.problem());
    if last.map(std::mem::discriminant) == Some(std::mem::discriminant(verdict))
        && last.and_then(Verdict::problem) == verdict.problem()
    {
        return;
    }
    match verdict {
        Verdict::Found { mismatch: None, .. } => {
            tracing::info!(data_source, "MCAS lists the data source")
        }
        Verdict::Found {
            mismatch: Some(text),
            ..
        } => tracing::warn!(data_source, "{text}"),
        Verdict::Missing(text) => tracing::error!(data_source, "{text}"),
        // Said once: a credential without Discovery.read stays so.
        Verdict::Unreadable(text) => tracing::warn!(data_source, "{text}"),
        Verdict::Failed(text) => tracing::warn!(data_source, "{text}"),
    }
}

/// What the data-source watch records and reads: its own counters, and for the warning
/// that MCAS receives nothing, the uploads' last success and the daemon's start.
pub struct WatchCounters {
    pub seen: Arc<DataSourceCounters>,
    pub last_upload: Arc<WallTime>,
    pub started: SystemTime,
}

/// Reads the data sources list at start and then every hour (every `retry` while the data
/// source is missing, so that its creation shows soon), keeping the status up to date and
/// warning when MCAS has received nothing for a day although uploads succeed.
pub async fn watch(
    client: McasClient,
    data_source: String,
    source: String,
    chooser: Chooser,
    retry: Duration,
    counters: WatchCounters,
    cancel: CancellationToken,
) {
    let mut last: Option<Verdict> = None;
    loop {
        let verdict = tokio::select! {
            verdict = check(&client, &data_source, &source) => verdict,
            _ = cancel.cancelled() => return,
        };
        record(&counters.seen, &verdict, &data_source, last.as_ref());
        let choice = choose(&source, &verdict, chooser.borrow().as_ref());
        if chooser.borrow().as_ref() != Some(&choice) {
            tracing::info!(
                source = choice.name,
                "log format for uploads: {} ({})",
                choice.name,
                choice.why
            );
        }
        counters.seen.source.set(Some(choice.name.clone()));
        counters.seen.source_why.set(Some(choice.why.to_string()));
        chooser.send_replace(Some(choice));
        if let Some(warning) = silence_warning(
            counters.last_upload.get(),
            counters.seen.last_data_received.get(),
            counters.started,
            SystemTime::now(),
        ) {
            tracing::warn!(data_source, "{warning}");
        }
        let wait = match verdict {
            Verdict::Missing(_) | Verdict::Failed(_) => retry.min(CHECK_EVERY),
            Verdict::Found { .. } | Verdict::Unreadable(_) => CHECK_EVERY,
        };
        last = Some(verdict);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// A warning when uploads succeed but MCAS has received nothing for [`SILENCE`]: since
/// its last data (or, when it never received any, since the agent started) until the
/// last upload MCAS accepted.
pub fn silence_warning(
    last_success: Option<SystemTime>,
    last_data_received: Option<SystemTime>,
    started: SystemTime,
    now: SystemTime,
) -> Option<String> {
    let success = last_success?;
    let since = last_data_received.unwrap_or(started);
    let silent = success.duration_since(since).ok()?;
    if silent < SILENCE {
        return None;
    }
    let hours = now.duration_since(since).unwrap_or(silent).as_secs() / 3600;
    Some(format!(
        "MCAS has received no data for this data source for {hours} hours although it accepted uploads (last at {}): check the data source's log type against mcas.source, and the portal's Cloud Discovery governance log for files that failed to parse",
        rfc3339(success)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nss(log_type: u32) -> DataSource {
        DataSource {
            display_name: "NSS".into(),
            log_type,
            last_data_received: None,
        }
    }

    #[test]
    fn every_accepted_log_format_has_a_number() {
        for name in crate::config::MCAS_SOURCES {
            assert!(log_type_number(name).is_some(), "{name}");
        }
    }

    #[test]
    fn verdicts() {
        let found = judge(Ok(vec![nss(170)]), "NSS", "ZSCALER_QRADAR");
        assert_eq!(found.found(), Some(true));
        assert_eq!(found.problem(), None);

        let mismatch = judge(Ok(vec![nss(196)]), "NSS", "ZSCALER_QRADAR");
        assert_eq!(mismatch.found(), Some(true));
        let text = mismatch.problem().unwrap();
        assert!(
            text.contains("196 (ZSCALER_CEF)") && text.contains("ZSCALER_QRADAR (170)"),
            "{text}"
        );

        let missing = judge(Ok(vec![nss(170)]), "NSS-east", "ZSCALER_QRADAR");
        assert_eq!(missing.found(), Some(false));
        let text = missing.problem().unwrap();
        assert!(
            text.contains("\"NSS-east\"") && text.contains("it has \"NSS\""),
            "{text}"
        );
        assert!(judge(Ok(vec![]), "NSS", "ZSCALER_QRADAR")
            .problem()
            .unwrap()
            .contains("it has none"));

        let unreadable = judge(Err(DataSourcesError::NotPermitted), "NSS", "ZSCALER");
        assert_eq!(unreadable.found(), None);
        assert!(unreadable.problem().unwrap().contains("Discovery.read"));
    }

    #[test]
    fn refusals_name_the_fix() {
        let refused = |step, body: &str| ApiError::Rejected {
            step,
            status: 400,
            body: body.to_string(),
        };
        let fix = refusal_fix(
            &refused(
                Step::DoneUpload,
                "Data source \"NSS-x\" does not exist: create it",
            ),
            "NSS-x",
            "ZSCALER_QRADAR",
        );
        assert!(fix.contains("create the data source \"NSS-x\""), "{fix}");
        assert!(fix.contains("mcas.data_source"), "{fix}");
        let fix = refusal_fix(
            &refused(Step::DoneUpload, "Unknown log format \"ZSCALER_CEF\""),
            "NSS",
            "ZSCALER_CEF",
        );
        assert!(fix.contains("mcas.source"), "{fix}");
        assert!(!fix.contains("create the data source"), "{fix}");
        let fix = refusal_fix(&refused(Step::DoneUpload, "Bad Request"), "NSS", "ZSCALER");
        assert!(
            fix.contains("create the data source") && fix.contains("mcas.source"),
            "{fix}"
        );
        let fix = refusal_fix(&refused(Step::UploadUrl, ""), "NSS", "ZSCALER");
        assert!(fix.contains("mcas.source"), "{fix}");
        assert!(fix.contains("ZSCALER_QRADAR_SYSLOG"), "{fix}");
    }

    #[test]
    fn auto_follows_the_data_source() {
        let found = judge(Ok(vec![nss(171)]), "NSS", "auto");
        assert_eq!(found.problem(), None);
        let choice = choose("auto", &found, None);
        assert_eq!(choice.name, "ZSCALER_QRADAR_SYSLOG");
        // An unreadable list keeps the choice made before.
        let failed = Verdict::Failed("down".into());
        assert_eq!(choose("auto", &failed, Some(&choice)), choice);
        assert_eq!(choose("auto", &failed, None).name, "ZSCALER_QRADAR");
        assert_eq!(choose("ZSCALER_CEF", &found, None).name, "ZSCALER_CEF");
        assert!(judge(Ok(vec![nss(5)]), "NSS", "auto").problem().is_some());
    }

    #[test]
    fn silence_is_a_day_without_data_while_uploads_succeed() {
        let t = |h: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + h * 3600);
        // No upload accepted: nothing to say.
        assert_eq!(silence_warning(None, None, t(0), t(48)), None);
        // Data an hour before the last upload.
        assert_eq!(silence_warning(Some(t(30)), Some(t(29)), t(0), t(30)), None);
        // Started an hour ago, nothing received yet: too early.
        assert_eq!(silence_warning(Some(t(1)), None, t(0), t(1)), None);
        // Nothing received in the 25 hours before the last upload.
        let text = silence_warning(Some(t(30)), Some(t(5)), t(0), t(30)).unwrap();
        assert!(text.contains("25 hours"), "{text}");
        assert!(silence_warning(Some(t(25)), None, t(0), t(25)).is_some());
    }
}
