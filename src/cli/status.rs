//! `nss status`: what the daemon is doing, as a checklist for a person or one JSON object
//! for monitoring. Works, saying so, when the daemon is not running.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::rfc3339;
use crate::config::Settings;
use crate::mcas::counters::McasCounters;
use crate::mcas::data_source::silence_warning;
use crate::memory::{self, MemoryBudget};
use crate::memory::{meets_ram_floor, MemoryReport};
use crate::spool;
use crate::spool::counters::SpoolCounters;
use crate::status_report::{self, McasReport, StatusReport, UploadReport};
use crate::untrusted;
use crate::upload::PauseKind;

/// A status file older than this, from a daemon that is gone, is not a running daemon.
const STALE: Duration = Duration::from_secs(10);

/// Prints the status.
///
/// The report is read from a file the daemon's account writes: every text of it reaches
/// the terminal with its control characters escaped.
pub fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let (report, unreadable) = current(settings);
    let mut warnings = settings.warnings();
    warnings.extend(unreadable);
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["warnings"] = serde_json::json!(warnings);
        let text = serde_json::to_string_pretty(&value)?;
        println!("{}", untrusted::json_for_terminal(&text));
    } else {
        print!("{}", untrusted::escaped_lines(&human(settings, &report)));
        for warning in &warnings {
            println!("  WARNING: {}", untrusted::escaped(warning));
        }
    }
    Ok(())
}

/// The running daemon's report; without one, what can be known from the configuration,
/// the spool on disk and the daemon's last report. With it, why the status file could not
/// be read, when it exists and could not.
pub fn current(settings: &Settings) -> (StatusReport, Option<String>) {
    let dir = &settings.paths.runtime_dir;
    let (last, unreadable) = match status_report::read(dir) {
        Ok(report) => (Some(report), None),
        Err(e) if e.is_missing() => (None, None),
        Err(e) => (
            None,
            Some(format!("the daemon's status file was not read: {e}")),
        ),
    };
    if let Some(report) = &last {
        let fresh = std::fs::metadata(dir.join(status_report::STATUS_FILE))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < STALE);
        if report.running && fresh && report.pid.is_some_and(alive) {
            return (report.clone(), unreadable);
        }
    }
    (offline(settings, last), unreadable)
}

/// A size for people: "22.1 MiB".
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// The report of a daemon that is not running: counts since start are zero, the last
/// upload and sync outcomes are kept, the spool and memory are read afresh.
fn offline(settings: &Settings, last: Option<StatusReport>) -> StatusReport {
    let last = last.unwrap_or_else(StatusReport::stopped);
    // What MCAS said last, while it was the same data source.
    let seen = if last.mcas.data_source == settings.mcas.data_source {
        last.mcas.seen.as_ref().clone()
    } else {
        Default::default()
    };
    let sync = last.sync.outcome();
    // What is configured now; what ZIA last saw, as the daemon last reported.
    sync.zia.enabled.set(settings.zia.base_url.is_some());
    let mut report = StatusReport {
        mcas: McasReport {
            domain: settings.mcas.domain.clone(),
            data_source: settings.mcas.data_source.clone(),
            token: settings.mcas_target().ok().map(|t| t.credential.masked()),
            auth: Some(settings.mcas.auth.as_str().to_string()),
            seen: Arc::new(seen),
        },
        upload: UploadReport {
            stage: Arc::new(last.upload.stage.outcome()),
            calls: Default::default(),
        },
        sync: Arc::new(sync),
        ..StatusReport::stopped()
    };
    // Only read: `nss status` (often run as root) creates, moves and deletes nothing.
    let view = spool::SpoolView::peek(&settings.spool_dir());
    let on_disk = SpoolCounters::default();
    on_disk.batches.set(view.batches());
    on_disk.bytes.set(view.bytes());
    on_disk.oldest.set_opt(view.oldest());
    on_disk.quarantined.set(view.quarantined);
    report.spool = Arc::new(on_disk);
    let ram = memory::ram_total().unwrap_or(0);
    report.memory = MemoryReport::new(
        ram,
        MemoryBudget::resolve(settings.memory.limit, Some(ram)),
        0,
    );
    report
}

/// The data source's line: whether MCAS lists it, and whether MCAS receives data.
fn data_source_line(r: &StatusReport) -> (&'static str, String) {
    let name = &r.mcas.data_source;
    let started = r
        .started
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(SystemTime::now);
    let seen = &r.mcas.seen;
    let silence = silence_warning(
        r.upload.stage.last_success.get(),
        seen.last_data_received.get(),
        started,
        SystemTime::now(),
    );
    let received = match seen.last_data_received.text() {
        Some(at) => format!("MCAS last received data at {at}"),
        None => "MCAS has received no data for it yet".to_string(),
    };
    match (seen.found.get(), seen.problem.get(), silence) {
        (Some(false), problem, _) => (
            "FAIL",
            problem.unwrap_or_else(|| format!("MCAS has no data source \"{name}\"")),
        ),
        (Some(true), Some(problem), _) => ("WARN", format!("\"{name}\" exists; {problem}")),
        (Some(true), None, Some(warning)) => ("WARN", format!("\"{name}\" exists; {warning}")),
        (Some(true), None, None) => ("ok", format!("\"{name}\" exists in MCAS; {received}")),
        (None, Some(problem), _) => ("--", format!("not known: {problem}")),
        (None, None, _) => (
            "--",
            "not known yet: MCAS's data sources list not read (`nss troubleshoot mcas` reads it)"
                .to_string(),
        ),
    }
}

/// The status as a person reads it: the preconditions of the integration first.
fn human(settings: &Settings, r: &StatusReport) -> String {
    let mut out = String::new();
    let mut line = |mark: &str, what: &str, detail: String| {
        // One line each: a line end in a text of the report is shown escaped too.
        let detail = untrusted::escaped(&detail);
        out.push_str(&format!("  [{mark:^4}] {what:<20} {detail}\n"));
    };
    let configured = r.mcas.domain.is_some() && r.mcas.token.is_some();
    line(
        if configured { "ok" } else { "FAIL" },
        "configuration",
        if configured {
            format!(
                "{}: domain {}, data source {}, token {}",
                settings.path.display(),
                r.mcas.domain.as_deref().unwrap_or(""),
                r.mcas.data_source,
                r.mcas.token.as_deref().unwrap_or("")
            )
        } else {
            format!(
                "{}: no MCAS domain or token: run `sudo nss configure-mcas`",
                settings.path.display()
            )
        },
    );
    let upload = &r.upload.stage;
    let last_upload = upload.last_success.text();
    let refused = upload
        .pause_reason()
        .filter(|p| p.kind == PauseKind::CredentialRefused);
    line(
        match (&refused, &last_upload) {
            (Some(_), _) => "FAIL",
            (None, Some(_)) => "ok",
            (None, None) => "--",
        },
        "token accepted",
        match (&refused, &last_upload) {
            (Some(reason), _) => format!("refused: {}", reason.message),
            (None, Some(at)) => format!("MCAS accepted an upload at {at}"),
            (None, None) => {
                "not known yet: no upload so far (`nss troubleshoot mcas` checks it now)".into()
            }
        },
    );
    let (mark, detail) = data_source_line(r);
    line(mark, "data source", detail);
    let seen = &r.mcas.seen;
    line(
        if seen.source.is_some() { "ok" } else { "--" },
        "log format",
        match (seen.source.get(), seen.source_why.get()) {
            (Some(name), Some(why)) => format!("{name} ({why})"),
            (Some(name), None) => name,
            (None, _) => format!(
                "mcas.source = \"{}\"; not decided yet (the daemon decides when it reads MCAS's data sources list)",
                settings.mcas.source
            ),
        },
    );
    line(
        if r.running { "ok" } else { "FAIL" },
        "service running",
        match (r.running, r.pid, &r.started) {
            (true, Some(pid), Some(since)) => format!("pid {pid}, since {since}"),
            _ => "not running: `sudo nss start`".into(),
        },
    );
    let receiving = r.feed.last_record.get();
    let recent =
        receiving.is_some_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(300));
    line(
        if recent {
            "ok"
        } else if r.running {
            "WARN"
        } else {
            "--"
        },
        "feed receiving",
        format!(
            "{} records ({}) since start, {} connection(s){}{}",
            r.feed.records,
            human_size(r.feed.bytes.get()),
            r.feed.connections,
            r.feed
                .last_record
                .text()
                .map(|t| format!(", last at {t}"))
                .unwrap_or_else(|| ", none yet".into()),
            if r.feed.oversize_dropped.get() > 0 {
                format!(", {} oversize dropped", r.feed.oversize_dropped)
            } else {
                String::new()
            }
        ),
    );
    let last_error = upload.last_error();
    let gb = r.memory.ram_total as f64 / 1e9;
    line(
        if meets_ram_floor(r.memory.ram_total) {
            "ok"
        } else {
            "WARN"
        },
        "RAM >= 8 GB",
        if meets_ram_floor(r.memory.ram_total) {
            format!("{gb:.1} GB")
        } else {
            format!("{gb:.1} GB: the NSS MCAS feed needs at least 8 GB; give the VM more memory")
        },
    );
    line(
        match (&last_error, &last_upload) {
            (Some(_), _) => "FAIL",
            (None, Some(_)) => "ok",
            (None, None) => "--",
        },
        "uploads succeeding",
        match (upload.pause_reason(), &last_error) {
            (Some(why), _) => format!("PAUSED (the batches stay in the spool): {}", why.message),
            (None, Some(error)) if upload.outage.get() => format!(
                "last error: {error}; MCAS fails for every batch: one attempt every {}s, the whole backlog goes up once one succeeds",
                upload.outage_retry.get()
            ),
            (None, Some(error)) => format!("last error: {error}"),
            (None, None) => {
                format!(
                    "{} batches, {} records, {} raw as {} gzip since start{}",
                    upload.batches,
                    upload.records,
                    human_size(upload.bytes_raw.get()),
                    human_size(upload.bytes_gzip.get()),
                    last_upload
                        .as_ref()
                        .map(|t| format!("; last at {t}"))
                        .unwrap_or_default()
                ) + &api_rate(&r.upload.calls)
            }
        },
    );
    let (sync_error, last_sync) = (r.sync.last_error.get(), r.sync.last_success.text());
    line(
        match (&sync_error, &last_sync) {
            (Some(_), _) => "FAIL",
            (None, Some(_)) => "ok",
            (None, None) => "--",
        },
        "last sync",
        match (&sync_error, &last_sync) {
            (Some(error), _) => format!("failed: {error}"),
            (None, Some(at)) => format!(
                "{at}: {} URLs in \"{}\" (+{} -{}){}",
                r.sync.urls,
                settings.sync.category,
                r.sync.added,
                r.sync.removed,
                r.sync
                    .next
                    .text()
                    .map(|n| format!("; next {n}"))
                    .unwrap_or_default()
            ),
            (None, None) => "not yet".into(),
        },
    );
    let zia = &r.sync.zia;
    let (zia_error, last_push) = (zia.last_error.get(), zia.last_push.text());
    line(
        match (zia.enabled.get(), &zia_error, &last_push) {
            (false, _, _) => "--",
            (true, Some(_), _) => "FAIL",
            (true, None, Some(_)) => "ok",
            (true, None, None) => "--",
        },
        "category in ZIA",
        match (zia.enabled.get(), &zia_error, &last_push) {
            (false, _, _) => {
                "not configured: the category stays on the appliance; `sudo nss configure-zia` pushes it into the tenant's ZIA".into()
            }
            (true, Some(error), _) => format!("push failed: {error}"),
            (true, None, Some(at)) => format!(
                "{at}: {} URLs in {} ({}); quota left {}; last activation {}",
                zia.urls,
                zia.category_id.get().as_deref().unwrap_or("?"),
                settings.sync.category,
                zia.quota_remaining
                    .get()
                    .map_or_else(|| "unknown".to_string(), |q| q.to_string()),
                match (zia.last_activation.text(), zia.activation_state.get()) {
                    (Some(at), Some(state)) => format!("{at} ({state})"),
                    _ => "none since start".to_string(),
                }
            ),
            (true, None, None) => "not pushed yet (after the next successful sync)".into(),
        },
    );
    if let Some(other) = zia.defender_category.get().filter(|_| zia.enabled.get()) {
        line(
            "WARN",
            "one category in ZIA",
            crate::category_sync::publish::defender_note(&other.name, &other.id, other.urls),
        );
    }
    let state = if r.running { "running" } else { "not running" };
    let mut text = format!("nss-agent: {state}\n{out}");
    text.push_str(&format!(
        "  spool: {} batches, {} waiting{}{}; {} in quarantine\n",
        r.spool.batches,
        human_size(r.spool.bytes.get()),
        r.spool
            .oldest
            .text()
            .map(|t| format!(", oldest sealed {t}"))
            .unwrap_or_default(),
        if r.spool.full.get() {
            " (FULL: reading is paused until uploads make room)"
        } else {
            ""
        },
        r.spool.quarantined
    ));
    if let Some(error) = r.spool.write_refused.get() {
        // One line: the error's own line ends are shown escaped.
        text.push_str(&format!(
            "  spool: the disk refuses writes ({}): reading is stopped until it accepts them\n",
            error.replace('\n', "\\n")
        ));
    }
    text.push_str(&format!(
        "  memory: budget {}, {} in use; machine {}\n",
        human_size(r.memory.limit),
        human_size(r.memory.in_use),
        human_size(r.memory.ram_total)
    ));
    text.push_str(&format!("  as of {}\n", rfc3339(SystemTime::now())));
    text
}

/// This agent's share of the tenant's API calls, when the daemon runs: its rate now, and
/// the 429s that lowered it.
fn api_rate(calls: &McasCounters) -> String {
    if calls.api_rate.get() <= 0.0 {
        return String::new();
    }
    let throttled = match calls.throttled.get() {
        0 => String::new(),
        n => format!(", {n} answered 429"),
    };
    format!(
        "; API calls: {} at up to {:.1} a minute{throttled}",
        calls.api_calls,
        calls.api_rate.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(23_223_181), "22.1 MiB");
        assert_eq!(human_size(25_276_502_016), "23.5 GiB");
    }
}
