//! What the daemon counts, and the status report it publishes for `nss status`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsx::AtomicWrite;
use crate::latency::{HistogramReport, Latencies};

/// The status file's name inside the runtime directory.
pub const STATUS_FILE: &str = "status.json";

/// A point in time kept in an atomic as milliseconds since the epoch; 0 means never.
#[derive(Debug, Default)]
pub struct AtomicTime(AtomicU64);

impl AtomicTime {
    /// Sets the time to now.
    pub fn touch(&self) {
        self.0
            .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
    }

    /// Sets the time to `at`.
    pub fn set(&self, at: SystemTime) {
        self.0.store(unix_millis(at), Ordering::Relaxed);
    }

    /// Forgets the time.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The time, or `None` when never set.
    pub fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// Milliseconds since the epoch.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC, to the second, as the status report writes times.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Counters of the feed stage.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub last_record: AtomicTime,
    pub oversize_dropped: AtomicU64,
    /// TCP connections open now.
    pub connections: AtomicU64,
    /// TCP connections accepted since start.
    pub connections_total: AtomicU64,
    /// The tailed files and how far each was read.
    pub files: Mutex<Vec<FileReport>>,
}

/// Counters of the batch and spool stages.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Sealed batches waiting, as last seen.
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    pub oldest: AtomicTime,
    /// Batches in quarantine, as last seen.
    pub quarantined: AtomicU64,
    /// Batches sealed since start.
    pub sealed: AtomicU64,
    /// Records in the batches sealed since start.
    pub sealed_records: AtomicU64,
    /// The longest a batch stayed open since start, from the arrival of its first record
    /// to its seal, in milliseconds.
    pub seal_latency_max_ms: AtomicU64,
    /// The spool is at its cap and reading is paused.
    pub full: AtomicBool,
    /// Times the spool filled up since start.
    pub full_events: AtomicU64,
    /// The cap in bytes.
    pub max_bytes: AtomicU64,
}

/// Counters of the upload stage.
#[derive(Debug, Default)]
pub struct UploadStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes_raw: AtomicU64,
    pub bytes_gzip: AtomicU64,
    pub last_success: AtomicTime,
    pub last_error: Mutex<Option<String>>,
    /// API calls made since start.
    pub api_calls: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// API calls MCAS answered 429 since start.
    pub throttled: AtomicU64,
    /// This agent's own rate of API calls now, in thousandths of a call a minute.
    pub api_rate_millis: AtomicU64,
}

/// What the unsanctioned-apps sync last did.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub last_success: AtomicTime,
    pub urls: AtomicU64,
    pub added: AtomicU64,
    pub removed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub next: AtomicTime,
}

/// Everything the daemon counts, shared by its stages.
#[derive(Debug)]
pub struct Stats {
    pub started: SystemTime,
    pub feed: FeedStats,
    pub spool: SpoolStats,
    pub upload: UploadStats,
    pub sync: SyncStats,
    /// Seal and delivery latency histograms.
    pub latency: Latencies,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            started: SystemTime::now(),
            feed: FeedStats::default(),
            spool: SpoolStats::default(),
            upload: UploadStats::default(),
            sync: SyncStats::default(),
            latency: Latencies::default(),
        }
    }
}

impl UploadStats {
    /// Records the latest upload error (shown until the next success).
    pub fn set_error(&self, message: impl Into<String>) {
        *self.last_error.lock().unwrap() = Some(message.into());
    }
}

/// The report `nss status --json` prints: field names are a promise to monitoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub running: bool,
    pub pid: Option<u32>,
    pub started: Option<String>,
    pub mcas: McasReport,
    pub feed: FeedReport,
    pub spool: SpoolReport,
    pub upload: UploadReport,
    pub sync: SyncReport,
    pub memory: MemoryReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct McasReport {
    pub domain: Option<String>,
    pub data_source: String,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedReport {
    pub records: u64,
    pub bytes: u64,
    pub last_record: Option<String>,
    pub oversize_dropped: u64,
    pub connections: u64,
    /// TCP connections accepted since start.
    #[serde(default)]
    pub connections_total: u64,
    pub files: Vec<FileReport>,
}

/// One tailed file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// Bytes of the current file read so far.
    pub offset: u64,
    /// Whether the file is open now.
    pub open: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpoolReport {
    pub batches: u64,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub quarantined: u64,
    /// The cap (spool.max_bytes, resolved).
    #[serde(default)]
    pub max_bytes: u64,
    /// At the cap: reading is paused until uploads make room.
    #[serde(default)]
    pub full: bool,
    /// Batches sealed since start.
    #[serde(default)]
    pub sealed: u64,
    /// Records in the batches sealed since start.
    #[serde(default)]
    pub sealed_records: u64,
    /// The longest a batch stayed open since start, in seconds: from the arrival of its
    /// first record to its seal. Stays within `batch.max_age` plus about a second.
    #[serde(default)]
    pub seal_latency_max: f64,
    /// Times the spool filled up (or the disk reached its reserve) since start.
    #[serde(default)]
    pub full_events: u64,
    /// How long batches stayed open, from their first record's arrival to their seal.
    #[serde(default)]
    pub seal_latency: HistogramReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadReport {
    pub batches: u64,
    pub records: u64,
    pub bytes_raw: u64,
    pub bytes_gzip: u64,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    /// MCAS API calls made since start (every call counts against the tenant's 30 a minute).
    #[serde(default)]
    pub api_calls: u64,
    /// Upload attempts that failed and were tried again.
    #[serde(default)]
    pub retries: u64,
    /// API calls MCAS answered 429 (the tenant's throttle, shared with other agents).
    #[serde(default)]
    pub throttled: u64,
    /// This agent's own limit of API calls a minute now: `upload.api_calls_per_minute`,
    /// halved on each 429 down to `upload.min_api_calls_per_minute`, growing back while
    /// calls succeed.
    #[serde(default)]
    pub api_rate: f64,
    /// Per record delivered, from the arrival of its batch's first record to MCAS's
    /// acceptance.
    #[serde(default)]
    pub delivery_latency: HistogramReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncReport {
    pub last_success: Option<String>,
    pub urls: u64,
    pub added: u64,
    pub removed: u64,
    pub last_error: Option<String>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryReport {
    pub ram_total: u64,
    pub meets_8gb_floor: bool,
    pub limit: u64,
    pub in_use: u64,
}

/// The least memory the MCAS feed is documented to need.
pub const RAM_FLOOR: u64 = 8 * 1000 * 1000 * 1000;

/// Whether a machine with `ram_total` bytes has the memory the MCAS feed needs. An "8 GB"
/// VM reports a little less than 8 GB as MemTotal (the kernel keeps some): allow 5%.
pub fn meets_ram_floor(ram_total: u64) -> bool {
    ram_total >= RAM_FLOOR * 95 / 100
}

impl MemoryReport {
    /// The memory part of the report for a machine with `ram_total` bytes.
    pub fn new(ram_total: u64, limit: u64, in_use: u64) -> MemoryReport {
        MemoryReport {
            ram_total,
            meets_8gb_floor: meets_ram_floor(ram_total),
            limit,
            in_use,
        }
    }
}

fn time(t: &AtomicTime) -> Option<String> {
    t.get().map(rfc3339)
}

impl Stats {
    /// The report of a running daemon, from its counters.
    pub fn report(&self, mcas: McasReport, memory: MemoryReport) -> StatusReport {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatusReport {
            running: true,
            pid: Some(std::process::id()),
            started: Some(rfc3339(self.started)),
            mcas,
            feed: FeedReport {
                records: load(&self.feed.records),
                bytes: load(&self.feed.bytes),
                last_record: time(&self.feed.last_record),
                oversize_dropped: load(&self.feed.oversize_dropped),
                connections: load(&self.feed.connections),
                connections_total: load(&self.feed.connections_total),
                files: self.feed.files.lock().unwrap().clone(),
            },
            spool: SpoolReport {
                batches: load(&self.spool.batches),
                bytes: load(&self.spool.bytes),
                oldest: time(&self.spool.oldest),
                quarantined: load(&self.spool.quarantined),
                max_bytes: load(&self.spool.max_bytes),
                full: self.spool.full.load(Ordering::Relaxed),
                sealed: load(&self.spool.sealed),
                sealed_records: load(&self.spool.sealed_records),
                seal_latency_max: load(&self.spool.seal_latency_max_ms) as f64 / 1000.0,
                full_events: load(&self.spool.full_events),
                seal_latency: self.latency.seal.report(),
            },
            upload: UploadReport {
                batches: load(&self.upload.batches),
                records: load(&self.upload.records),
                bytes_raw: load(&self.upload.bytes_raw),
                bytes_gzip: load(&self.upload.bytes_gzip),
                last_success: time(&self.upload.last_success),
                last_error: self.upload.last_error.lock().unwrap().clone(),
                api_calls: load(&self.upload.api_calls),
                retries: load(&self.upload.retries),
                throttled: load(&self.upload.throttled),
                api_rate: load(&self.upload.api_rate_millis) as f64 / 1000.0,
                delivery_latency: self.latency.delivery.report(),
            },
            sync: SyncReport {
                last_success: time(&self.sync.last_success),
                urls: load(&self.sync.urls),
                added: load(&self.sync.added),
                removed: load(&self.sync.removed),
                last_error: self.sync.last_error.lock().unwrap().clone(),
                next: time(&self.sync.next),
            },
            memory,
        }
    }
}

/// Reads the report the daemon last wrote to `dir/status.json`.
pub fn read(dir: &Path) -> std::io::Result<StatusReport> {
    let text = std::fs::read(dir.join(STATUS_FILE))?;
    serde_json::from_slice(&text).map_err(std::io::Error::other)
}

/// Writes `report` to `dir/status.json` atomically (temporary file, then rename), so a
/// reader never sees half a report.
pub fn publish(dir: &Path, report: &StatusReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    // Rewritten every second and rebuilt at start: atomic for readers, not fsynced.
    AtomicWrite::for_readers(0o644).write(&dir.join(STATUS_FILE), &json)
}
