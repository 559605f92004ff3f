//! The daemon: wires feed, batch writers, spool and uploader together, and shuts them
//! down in order so that nothing read is lost.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{BatchWriters, Heartbeats};
use crate::config::{ConfigError, Limit, Settings};
use crate::feed::checkpoint::CheckpointStore;
use crate::feed::{tail, tcp};
use crate::mcas::McasClient;
use crate::memory::{self, MemoryBudget};
use crate::metrics;
use crate::pidfile::PidLock;
use crate::spool::Spool;
use crate::status::{self, McasReport, MemoryReport, Stats, StatusReport, RAM_FLOOR};
use crate::sync::{self, CategoryStore};
use crate::upload::{MergeLimits, Uploader};

/// How often the status file is rewritten.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How the pipeline came to a stop.
enum Stopped {
    /// SIGTERM or SIGINT: the process ends.
    Exit,
    /// SIGHUP with a valid configuration: the pipeline starts again with it.
    Reload(Box<Settings>),
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration: the pipeline
/// stops as at shutdown (nothing read is lost) and starts again with the new settings; a
/// configuration that fails its checks is refused with a log line, and the agent runs on.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime_dir = settings.paths.runtime_dir.clone();
    std::fs::create_dir_all(&runtime_dir).map_err(|e| ConfigError {
        key: "paths.runtime_dir".to_string(),
        problem: format!(
            "cannot create {}: {e}; point it at a writable directory",
            runtime_dir.display()
        ),
    })?;
    // Held until the daemon exits, across reloads.
    let _pidfile = PidLock::acquire(&runtime_dir)?;
    let mut signals = Signals::new()?;
    let mut settings = settings;
    loop {
        for warning in settings.warnings() {
            tracing::warn!("configuration: {warning}");
        }
        match run_pipeline(settings, &mut signals).await? {
            Stopped::Exit => return Ok(()),
            Stopped::Reload(new) => {
                tracing::info!(config = %new.path.display(), "configuration reloaded: starting again with it");
                settings = *new;
            }
        }
    }
}

/// The signals the daemon acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    /// Waits for SIGTERM or SIGINT (then `Exit`), or SIGHUP with a configuration that
    /// passes its checks (then `Reload`).
    async fn stopped(&mut self, path: &Path) -> Stopped {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Stopped::Exit,
                _ = self.int.recv() => return Stopped::Exit,
                _ = self.hup.recv() => {
                    match Settings::load(path).and_then(|s| s.mcas_target().map(|_| s)) {
                        Ok(settings) => return Stopped::Reload(Box::new(settings)),
                        Err(error) => tracing::error!(
                            %error,
                            "SIGHUP: the configuration was not reloaded (configuration error: {error}); running on with the previous one"
                        ),
                    }
                }
            }
        }
    }
}

/// Runs the pipeline until a signal stops it, then shuts it down in order.
async fn run_pipeline(settings: Settings, signals: &mut Signals) -> anyhow::Result<Stopped> {
    let target = settings.mcas_target()?;
    for (key, dir) in [
        ("paths.state_dir", &settings.paths.state_dir),
        ("paths.runtime_dir", &settings.paths.runtime_dir),
    ] {
        std::fs::create_dir_all(dir).map_err(|e| ConfigError {
            key: key.to_string(),
            problem: format!(
                "cannot create {}: {e}; point it at a writable directory",
                dir.display()
            ),
        })?;
    }
    let spool_dir = settings.spool_dir();
    let spool = Arc::new(
        Spool::prepare(&spool_dir)
            .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?,
    );
    // Before anything is read: what a killed run left unsealed is salvaged or let go.
    let recovery = spool.recover(settings.batch.gzip_level).with_context(|| {
        format!(
            "cannot recover the unsealed batches in {}",
            spool_dir.display()
        )
    })?;
    if recovery != Default::default() {
        tracing::info!(
            salvaged_batches = recovery.salvaged_batches,
            salvaged_records = recovery.salvaged_records,
            discarded_file_batches = recovery.discarded,
            "recovered the unsealed batches of an interrupted run"
        );
    }

    let ram_total = memory::ram_total();
    let budget = MemoryBudget::new(MemoryBudget::resolve(settings.memory.limit, ram_total));
    if let Some(ram) = ram_total.filter(|&r| !status::meets_ram_floor(r)) {
        tracing::warn!(
            ram_gb = format!("{:.1}", ram as f64 / 1e9),
            "this appliance has less than the {} GB of RAM the NSS MCAS feed needs: give the VM at least 8 GB",
            RAM_FLOOR / 1_000_000_000
        );
    }

    let stats = Arc::new(Stats::default());
    let client = McasClient::from_settings(&target, &settings.upload, stats.clone())?;

    let spool_cap = spool_cap(settings.spool.max_bytes, &spool_dir);
    stats
        .spool
        .max_bytes
        .store(spool_cap, std::sync::atomic::Ordering::Relaxed);
    let (sink, writers) = BatchWriters::start(
        &settings.batch,
        spool_cap,
        budget.clone(),
        spool.clone(),
        stats.clone(),
    )
    .context("cannot start the batch writers")?;

    let inputs = TaskTracker::new();
    let stop_inputs = CancellationToken::new();
    if let Some(addr) = settings.feed.listen {
        let listener = tcp::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (feed.listen): is another receiver using the port?")
        })?;
        tracing::info!(%addr, "receiving the NSS feed");
        inputs.spawn(tcp::serve(
            listener,
            sink.clone(),
            settings.feed.max_record_bytes,
            stats.clone(),
            stop_inputs.clone(),
        ));
    }
    let checkpoints = Arc::new(
        CheckpointStore::open(&settings.paths.state_dir.join("checkpoints"))
            .context("cannot open the checkpoint directory")?,
    );
    for path in &settings.feed.files {
        let tail = tail::Tail {
            path: path.clone(),
            sink: sink.clone(),
            max_record_bytes: settings.feed.max_record_bytes,
            stats: stats.clone(),
            checkpoints: checkpoints.clone(),
        };
        inputs.spawn(tail.follow(stop_inputs.clone()));
    }
    inputs.close();
    // The inputs hold the only senders now: when they end, the writers seal and stop.
    drop(sink);

    let stop_uploads = CancellationToken::new();
    let abort_uploads = CancellationToken::new();
    let stop_sync = CancellationToken::new();
    let sync_task = tokio::spawn(sync::run(
        client.clone(),
        CategoryStore::in_state_dir(&settings.paths.state_dir),
        settings.sync.clone(),
        stats.clone(),
        stop_sync.clone(),
    ));
    let uploader = Uploader::new(
        client,
        spool.clone(),
        stats.clone(),
        settings.upload.clone(),
        &target,
    )
    .merge_up_to(MergeLimits {
        // A busy ceiling at the quiet limit keeps every upload one batch as sealed.
        max_raw_bytes: if settings.batch.busy_max_bytes > settings.batch.max_bytes {
            settings.batch.busy_max_bytes
        } else {
            0
        },
        level: settings.batch.gzip_level,
    });
    let upload_task = tokio::spawn(uploader.run(stop_uploads.clone(), abort_uploads.clone()));

    let reports = Reports {
        stats: stats.clone(),
        mcas: McasReport {
            domain: Some(target.domain.clone()),
            data_source: target.data_source.clone(),
            token: Some(target.credential.masked()),
        },
        budget: budget.clone(),
        ram_total: ram_total.unwrap_or(0),
    };
    let stop_status = CancellationToken::new();
    if let Some(addr) = settings.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr} (metrics.listen): is the port taken? \"\" disables metrics")
        })?;
        let reports = reports.clone();
        tokio::spawn(metrics::serve(
            listener,
            move || reports.report(),
            stop_status.clone(),
        ));
    }
    let reports_for_notify = reports.clone();
    let status_task = tokio::spawn(publish_status(
        settings.paths.runtime_dir.clone(),
        reports,
        stop_status.clone(),
    ));

    tokio::spawn(notify_systemd(
        writers.heartbeats(),
        reports_for_notify,
        stop_status.clone(),
    ));
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(domain = %target.domain, data_source = %target.data_source, memory_limit = budget.limit(), "nss-agent running");

    let stopped = signals.stopped(&settings.path).await;
    let state = match stopped {
        Stopped::Exit => sd_notify::NotifyState::Stopping,
        Stopped::Reload(_) => sd_notify::NotifyState::Reloading,
    };
    let _ = sd_notify::notify(false, &[state]);
    tracing::info!("stopping the pipeline: closing the feed, sealing open batches");

    stop_inputs.cancel();
    writers.stop_waiting();
    inputs.wait().await;
    tokio::task::spawn_blocking(move || writers.join())
        .await
        .context("batch writers")?;

    stop_uploads.cancel();
    if tokio::time::timeout(settings.upload.shutdown_timeout, upload_task)
        .await
        .is_err()
    {
        tracing::warn!("the upload in flight did not finish in time; its batch stays in the spool");
        abort_uploads.cancel();
    }
    stop_sync.cancel();
    let _ = sync_task.await;
    stop_status.cancel();
    let _ = status_task.await;
    tracing::info!("stopped");
    Ok(stopped)
}

/// The smallest cap `spool.max_bytes = "auto"` chooses.
const SPOOL_AUTO_MIN: u64 = 64 << 20;

/// The spool's cap: given bytes, or for `auto` half the disk space free at start (at least
/// 64 MiB), so that the spool fills before the disk does.
fn spool_cap(limit: Limit, dir: &Path) -> u64 {
    match limit {
        Limit::Bytes(bytes) => bytes,
        Limit::Auto => match nix::sys::statvfs::statvfs(dir) {
            Ok(fs) => (fs.blocks_available() * fs.fragment_size() / 2).max(SPOOL_AUTO_MIN),
            Err(error) => {
                tracing::warn!(%error, "cannot see the free disk space; spool cap set to 1 GiB");
                1 << 30
            }
        },
    }
}

/// How often systemd gets a STATUS= line.
const SYSTEMD_STATUS_EVERY: Duration = Duration::from_secs(5);

/// Tells systemd how the agent is doing: a STATUS= line every few seconds and, when the
/// unit has a watchdog, WATCHDOG=1 at half its period, but only while every batch writer
/// keeps going round: a pipeline stuck in a write or an fsync stops the pings, and systemd
/// restarts the agent (what was read is in the spool or salvaged).
async fn notify_systemd(heartbeats: Heartbeats, reports: Reports, stop: CancellationToken) {
    let watchdog = watchdog_period();
    let tick = watchdog.map_or(SYSTEMD_STATUS_EVERY, |period| {
        (period / 2).min(SYSTEMD_STATUS_EVERY)
    });
    // Writers beat every second or so; one silent for this long is stuck.
    let stuck_after = watchdog.map_or(Duration::MAX, |period| {
        (period / 2).max(Duration::from_secs(3))
    });
    let mut last_status: Option<std::time::Instant> = None;
    let mut stall_logged = false;
    loop {
        if watchdog.is_some() {
            if heartbeats.all_within(stuck_after) {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                stall_logged = false;
            } else if !stall_logged {
                tracing::error!("a batch writer has not moved for {}s: the pipeline is stalled; watchdog pings stop so that systemd restarts the agent", stuck_after.as_secs());
                stall_logged = true;
            }
        }
        if last_status.is_none_or(|t| t.elapsed() >= SYSTEMD_STATUS_EVERY) {
            let line = status_line(&reports.report());
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
            last_status = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The unit's watchdog period, as sd_watchdog_enabled(3) reads it: WATCHDOG_USEC, for
/// this process when WATCHDOG_PID is set.
fn watchdog_period() -> Option<Duration> {
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
fn status_line(r: &StatusReport) -> String {
    let problem = match (&r.upload.last_error, r.spool.full) {
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
        r.spool.bytes >> 10,
        r.upload.batches,
        r.upload.records
    )
}

/// Makes the status report from the daemon's counters: for the status file and metrics.
#[derive(Clone)]
struct Reports {
    stats: Arc<Stats>,
    mcas: McasReport,
    budget: MemoryBudget,
    ram_total: u64,
}

impl Reports {
    fn report(&self) -> StatusReport {
        let memory = MemoryReport::new(self.ram_total, self.budget.limit(), self.budget.in_use());
        self.stats.report(self.mcas.clone(), memory)
    }
}

/// Rewrites the status file every second until stopped, then once more, saying the
/// daemon is no longer running.
async fn publish_status(dir: std::path::PathBuf, reports: Reports, stop: CancellationToken) {
    let write = |report: StatusReport| {
        if let Err(error) = status::publish(&dir, &report) {
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
