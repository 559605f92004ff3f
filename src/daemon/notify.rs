//! What the daemon tells about itself while it runs: systemd's STATUS= lines and watchdog
//! pings, and the status file that `nss status` reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::batch::Heartbeats;
use crate::memory::MemoryBudget;
use crate::memory::MemoryReport;
use crate::status_report::{self, Counters, McasReport, StatusReport};

use super::STATUS_INTERVAL;

/// How often systemd gets a STATUS= line.
const SYSTEMD_STATUS_EVERY: Duration = Duration::from_secs(5);

/// Tells systemd how the agent is doing: a STATUS= line every few seconds and, when the
/// unit has a watchdog, WATCHDOG=1 at half its period (as sd_watchdog_enabled(3)
/// advises: one late ping is not yet a timeout), but only while every batch writer keeps
/// going round: a pipeline stuck in a write or an fsync stops the pings, and systemd
/// restarts the agent (what was read is in the spool or salvaged).
pub(super) async fn notify_systemd(
    heartbeats: Heartbeats,
    reports: Reports,
    stop: CancellationToken,
) {
    let ping_every = watchdog_period().map(|period| period / 2);
    let tick = ping_every.map_or(SYSTEMD_STATUS_EVERY, |every| {
        every.min(SYSTEMD_STATUS_EVERY)
    });
    // Writers beat every second or so; one silent for this long is stuck.
    let stuck_after = ping_every.map_or(Duration::MAX, |every| every.max(Duration::from_secs(3)));
    let mut last_ping: Option<Instant> = None;
    let mut last_status: Option<Instant> = None;
    let mut stall_logged = false;
    loop {
        if let Some(every) = ping_every {
            // Half a tick early rather than a tick late: ticks and pings do not line up.
            if last_ping.is_none_or(|t| t.elapsed() + tick / 2 >= every) {
                if heartbeats.all_within(stuck_after) {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                    last_ping = Some(Instant::now());
                    stall_logged = false;
                } else if !stall_logged {
                    tracing::error!("a batch writer has not moved for {}s: the pipeline is stalled; watchdog pings stop so that systemd restarts the agent", stuck_after.as_secs());
                    stall_logged = true;
                }
            }
        }
        if last_status.is_none_or(|t| t.elapsed() >= SYSTEMD_STATUS_EVERY) {
            let line = status_line(&reports.report());
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
            last_status = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The unit's watchdog period, as sd_watchdog_enabled(3) reads it: WATCHDOG_USEC, for
/// this process when WATCHDOG_PID is set.
pub(super) fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|&u| u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse() != Ok(std::process::id()) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// The one-line summary `systemctl status` shows.
pub(super) fn status_line(r: &StatusReport) -> String {
    let problem = match (r.upload.stage.last_error(), r.spool.full.get()) {
        (_, true) => "; SPOOL FULL, reading paused".to_string(),
        (Some(error), _) => format!(
            "; upload failing: {}",
            error.chars().take(120).collect::<String>()
        ),
        (None, false) => String::new(),
    };
    format!(
        "{} records read, {} connection(s); {} batches waiting ({} KiB); {} batches ({} records) uploaded{problem}",
        r.feed.records,
        r.feed.connections,
        r.spool.batches,
        r.spool.bytes.get() >> 10,
        r.upload.stage.batches,
        r.upload.stage.records
    )
}

/// Makes the status report from the daemon's counters: for the status file and metrics.
#[derive(Clone)]
pub(super) struct Reports {
    pub(super) counters: Arc<Counters>,
    pub(super) mcas: McasReport,
    pub(super) budget: MemoryBudget,
    pub(super) ram_total: u64,
}

impl Reports {
    pub(super) fn report(&self) -> StatusReport {
        let memory = MemoryReport::new(self.ram_total, self.budget.limit(), self.budget.in_use());
        self.counters.report(self.mcas.clone(), memory)
    }
}

/// Rewrites the status file every second until stopped, then once more, saying the
/// daemon is no longer running.
pub(super) async fn publish_status(
    dir: std::path::PathBuf,
    reports: Reports,
    stop: CancellationToken,
) {
    let write = |report: StatusReport| {
        if let Err(error) = status_report::publish(&dir, &report) {
            tracing::debug!(%error, "cannot write the status file");
        }
    };
    loop {
        write(reports.report());
        tokio::select! {
            _ = tokio::time::sleep(STATUS_INTERVAL) => {}
            _ = stop.cancelled() => break,
        }
    }
    let mut last = reports.report();
    last.running = false;
    write(last);
}
