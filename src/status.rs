//! What the daemon counts, and the status report it publishes for `nss status`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsx::AtomicWrite;
use crate::latency::{HistogramReport, Latencies};
use crate::upload::PauseReason;

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
    /// TCP connections closed on arrival since start: `feed.max_connections` were open.
    pub connections_refused: AtomicU64,
    /// TCP connections closed since start for sending nothing for `feed.partial_timeout`
    /// in the middle of a record.
    pub partial_timeouts: AtomicU64,
    /// Inputs waiting for the memory budget now (they do not read meanwhile).
    pub waiting_for_memory: AtomicU64,
    /// Tailed files that ended without a newline, their last line delivered whole.
    pub unterminated: AtomicU64,
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
    /// Records of the TCP feed handed to the operating system (flushed or sealed) since
    /// start: a kill -9 loses none of them.
    pub stream_records_on_disk: AtomicU64,
    /// The longest a batch stayed open since start, from the arrival of its first record
    /// to its seal, in milliseconds.
    pub seal_latency_max_ms: AtomicU64,
    /// The spool is at its cap and reading is paused.
    pub full: AtomicBool,
    /// Times the spool filled up since start.
    pub full_events: AtomicU64,
    /// Batches sealed more than 90 days ago, moved to quarantine since start.
    pub too_old: AtomicU64,
    /// The cap in bytes.
    pub max_bytes: AtomicU64,
    /// Batches held back after failing again and again, as last seen, and why.
    pub held: AtomicU64,
    pub held_why: Mutex<Option<String>>,
    /// Batches MCAS accepted whose removal from the spool failed, as last seen.
    pub delivered_undeleted: AtomicU64,
    /// The spool's disk refuses writes now (a read-only remount, EIO, ...): the error, and
    /// reading is stopped until it accepts them.
    pub write_refused: Mutex<Option<String>>,
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
    /// Why uploads are paused (a refused credential, a tenant-wide refusal) and what to
    /// fix; shown while the last attempt ended in that pause.
    pub paused: Mutex<Option<PauseReason>>,
    /// API calls MCAS answered 429 since start.
    pub throttled: AtomicU64,
    /// This agent's own rate of API calls now, in thousandths of a call a minute.
    pub api_rate_millis: AtomicU64,
    /// The wait between attempts while MCAS fails for every batch
    /// (`upload.outage_retry`), in milliseconds.
    pub outage_retry_millis: AtomicU64,
    /// MCAS fails for every batch now: attempts go at the outage cadence.
    pub outage: AtomicBool,
}

/// What MCAS's data sources list last said of `mcas.data_source`.
#[derive(Debug, Default)]
pub struct DataSourceStats {
    /// Whether MCAS lists it; `None` before the first reading or when the list is unreadable.
    pub found: Mutex<Option<bool>>,
    /// When MCAS last received data for it, as MCAS says.
    pub last_data_received: AtomicTime,
    /// What is wrong, in words: missing, another log type, the list unreadable.
    pub problem: Mutex<Option<String>>,
    /// The log format uploads use, and why (`mcas.source`, or `auto`'s reading).
    pub source: Mutex<Option<(String, String)>>,
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
    /// The push of the category into the tenant's ZIA.
    pub zia: ZiaStats,
}

/// What the pushes into ZIA did.
#[derive(Debug, Default)]
pub struct ZiaStats {
    /// A ZIA API is configured (`zia.base_url`).
    pub enabled: AtomicBool,
    /// The category's id in ZIA, once known.
    pub category_id: Mutex<Option<String>>,
    /// The last push that succeeded (whether or not it changed anything).
    pub last_push: AtomicTime,
    /// The last activation, and ZIA's state after it.
    pub last_activation: AtomicTime,
    pub activation_state: Mutex<Option<String>>,
    /// URLs the category holds in ZIA after the last push.
    pub urls: AtomicU64,
    /// The tenant's custom-URL quota left after the last push; `None` until read.
    pub quota_remaining: Mutex<Option<u64>>,
    pub last_error: Mutex<Option<String>>,
    /// Pushes that succeeded since start.
    pub pushes: AtomicU64,
    /// Zscaler's own integration's category, as the last push found it.
    pub defender_category: Mutex<Option<ZiaCategoryReport>>,
    /// The ZIA client's own counters: API calls, 429s, activations, logins.
    pub client: Arc<crate::zia::ZiaCounters>,
}

/// Everything the daemon counts, shared by its stages.
#[derive(Debug)]
pub struct Stats {
    pub started: SystemTime,
    pub feed: FeedStats,
    pub spool: SpoolStats,
    pub upload: UploadStats,
    pub sync: SyncStats,
    pub data_source: DataSourceStats,
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
            data_source: DataSourceStats::default(),
            latency: Latencies::default(),
        }
    }
}

impl UploadStats {
    /// Records the latest upload error (shown until the next success).
    pub fn set_error(&self, message: impl Into<String>) {
        *self.last_error.lock().unwrap() = Some(message.into());
        *self.paused.lock().unwrap() = None;
    }

    /// Records that uploads are paused after the error just recorded, and why.
    pub fn set_paused(&self, why: Option<PauseReason>) {
        *self.paused.lock().unwrap() = why;
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
    /// `mcas.auth`: `token` or `entra`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Whether MCAS lists `data_source`; null when not known (not yet read, or the list
    /// is unreadable).
    #[serde(default)]
    pub data_source_found: Option<bool>,
    /// When MCAS last received data for the data source (the portal's "receiving data").
    #[serde(default)]
    pub last_data_received: Option<String>,
    /// What is wrong with the data source, in words, when something is.
    #[serde(default)]
    pub data_source_problem: Option<String>,
    /// The log format uploads use (upload_url's `source`); null until decided.
    #[serde(default)]
    pub source: Option<String>,
    /// Why that log format: `set in mcas.source`, or what `auto` read.
    #[serde(default)]
    pub source_why: Option<String>,
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
    /// TCP connections closed on arrival since start, because `feed.max_connections`
    /// were open.
    #[serde(default)]
    pub connections_refused: u64,
    /// TCP connections closed since start for sending nothing for `feed.partial_timeout`
    /// in the middle of a record (the records they had completed are kept).
    #[serde(default)]
    pub partial_timeouts: u64,
    /// Inputs waiting for the memory budget now: they read nothing until memory is
    /// returned.
    #[serde(default)]
    pub waiting_for_memory: u64,
    /// Tailed files that ended without a newline since start: their last line was
    /// delivered as a record of its own.
    #[serde(default)]
    pub unterminated: u64,
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
    /// Records of the TCP feed in the spool's files since start, flushed or sealed: a
    /// kill -9 of the agent loses none of them.
    #[serde(default)]
    pub stream_records_on_disk: u64,
    /// The longest a batch stayed open since start, in seconds: from the arrival of its
    /// first record to its seal. Stays within `batch.max_age` plus about a second.
    #[serde(default)]
    pub seal_latency_max: f64,
    /// Times the spool filled up (or the disk reached its reserve) since start.
    #[serde(default)]
    pub full_events: u64,
    /// Batches sealed more than 90 days ago (MCAS ignores such events), moved to
    /// quarantine instead of uploaded, since start.
    #[serde(default)]
    pub too_old: u64,
    /// Batches held back: they failed again and again, and newer batches go first. They
    /// are tried again later; never deleted.
    #[serde(default)]
    pub held: u64,
    /// Why the last batch was held back (its last error), while any is held.
    #[serde(default)]
    pub held_why: Option<String>,
    /// Batches MCAS accepted whose removal from the spool failed: never sent again,
    /// their removal retried.
    #[serde(default)]
    pub delivered_undeleted: u64,
    /// The spool's disk refuses writes now, with the error: reading is stopped until it
    /// accepts them (null while writes succeed).
    #[serde(default)]
    pub write_refused: Option<String>,
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
    /// Why uploads are paused and what to fix; null while they are not.
    #[serde(default)]
    pub paused: Option<String>,
    /// The same pause, typed: `{"kind": "credential_refused" | "wrong_domain" |
    /// "tenant_refused", "message": ...}`; null while uploads are not paused.
    #[serde(default)]
    pub pause_reason: Option<PauseReason>,
    /// API calls MCAS answered 429 (the tenant's throttle, shared with other agents).
    #[serde(default)]
    pub throttled: u64,
    /// This agent's own limit of API calls a minute now: `upload.api_calls_per_minute`,
    /// halved on each 429 down to `upload.min_api_calls_per_minute`, growing back while
    /// calls succeed.
    #[serde(default)]
    pub api_rate: f64,
    /// Seconds between attempts while MCAS fails for every batch (`upload.outage_retry`).
    #[serde(default)]
    pub outage_retry: f64,
    /// MCAS fails for every batch now: one attempt every `outage_retry`.
    #[serde(default)]
    pub outage: bool,
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
    #[serde(default)]
    pub zia: ZiaReport,
}

/// `sync.zia`: the category as pushed into the tenant's ZIA.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ZiaReport {
    pub enabled: bool,
    pub category_id: Option<String>,
    pub last_push: Option<String>,
    pub last_activation: Option<String>,
    pub urls: u64,
    pub quota_remaining: Option<u64>,
    pub last_error: Option<String>,
    /// ZIA's activation state after the last activation (`ACTIVE`, `PENDING`, ...).
    #[serde(default)]
    pub activation_state: Option<String>,
    /// Pushes that succeeded since start.
    #[serde(default)]
    pub pushes: u64,
    /// ZIA API calls since start (logins and retries included).
    #[serde(default)]
    pub api_calls: u64,
    /// ZIA answers 429 since start.
    #[serde(default)]
    pub throttled: u64,
    /// Activations since start.
    #[serde(default)]
    pub activations: u64,
    /// Zscaler's own MCAS integration's category ("MS Defender Unsanctioned Apps"), when
    /// the last push or check found it in the tenant besides ours: the same URLs held
    /// twice, counted twice against the quota.
    #[serde(default)]
    pub defender_category: Option<ZiaCategoryReport>,
}

/// A custom category as ZIA holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZiaCategoryReport {
    /// Its name as ZIA spells it.
    pub name: String,
    /// `CUSTOM_NN`.
    pub id: String,
    /// URLs it holds.
    pub urls: u64,
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
        // Shown while the last attempt ended in the pause (an error cleared by a success).
        let failing = self.upload.last_error.lock().unwrap().is_some();
        let paused = self
            .upload
            .paused
            .lock()
            .unwrap()
            .clone()
            .filter(|_| failing);
        let (source, source_why) = self.data_source.source.lock().unwrap().clone().unzip();
        StatusReport {
            running: true,
            pid: Some(std::process::id()),
            started: Some(rfc3339(self.started)),
            mcas: McasReport {
                data_source_found: *self.data_source.found.lock().unwrap(),
                last_data_received: time(&self.data_source.last_data_received),
                data_source_problem: self.data_source.problem.lock().unwrap().clone(),
                source,
                source_why,
                ..mcas
            },
            feed: FeedReport {
                records: load(&self.feed.records),
                bytes: load(&self.feed.bytes),
                last_record: time(&self.feed.last_record),
                oversize_dropped: load(&self.feed.oversize_dropped),
                connections: load(&self.feed.connections),
                connections_total: load(&self.feed.connections_total),
                connections_refused: load(&self.feed.connections_refused),
                partial_timeouts: load(&self.feed.partial_timeouts),
                waiting_for_memory: load(&self.feed.waiting_for_memory),
                unterminated: load(&self.feed.unterminated),
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
                stream_records_on_disk: load(&self.spool.stream_records_on_disk),
                seal_latency_max: load(&self.spool.seal_latency_max_ms) as f64 / 1000.0,
                full_events: load(&self.spool.full_events),
                too_old: load(&self.spool.too_old),
                held: load(&self.spool.held),
                held_why: self.spool.held_why.lock().unwrap().clone(),
                delivered_undeleted: load(&self.spool.delivered_undeleted),
                write_refused: self.spool.write_refused.lock().unwrap().clone(),
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
                paused: paused.as_ref().map(|p| p.message.clone()),
                pause_reason: paused,
                throttled: load(&self.upload.throttled),
                api_rate: load(&self.upload.api_rate_millis) as f64 / 1000.0,
                outage_retry: load(&self.upload.outage_retry_millis) as f64 / 1000.0,
                outage: self.upload.outage.load(Ordering::Relaxed),
                delivery_latency: self.latency.delivery.report(),
            },
            sync: SyncReport {
                last_success: time(&self.sync.last_success),
                urls: load(&self.sync.urls),
                added: load(&self.sync.added),
                removed: load(&self.sync.removed),
                last_error: self.sync.last_error.lock().unwrap().clone(),
                next: time(&self.sync.next),
                zia: self.sync.zia.report(),
            },
            memory,
        }
    }
}

/// Reads the report the daemon last wrote to `dir/status.json`.
/// The file is written by the daemon's account: read up to a bound (a report is a few KiB).
pub fn read(dir: &Path) -> std::io::Result<StatusReport> {
    let path = dir.join(STATUS_FILE);
    let file = std::fs::File::open(&path)?;
    let text = crate::untrusted::read_to_end(file, MAX_STATUS_BYTES, &path.display().to_string())
        .map_err(std::io::Error::other)?;
    serde_json::from_slice(&text).map_err(|e| {
        std::io::Error::other(format!("{} is not a status report: {e}", path.display()))
    })
}

/// The largest status file read back.
pub const MAX_STATUS_BYTES: u64 = 4 << 20;

/// Writes `report` to `dir/status.json` atomically (temporary file, then rename), so a
/// reader never sees half a report.
pub fn publish(dir: &Path, report: &StatusReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    // Rewritten every second and rebuilt at start: atomic for readers, not fsynced.
    AtomicWrite::for_readers(0o644).write(&dir.join(STATUS_FILE), &json)
}

impl ZiaStats {
    /// The `sync.zia` part of the report.
    pub fn report(&self) -> ZiaReport {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ZiaReport {
            enabled: self.enabled.load(Ordering::Relaxed),
            category_id: self.category_id.lock().unwrap().clone(),
            last_push: time(&self.last_push),
            last_activation: time(&self.last_activation),
            urls: load(&self.urls),
            quota_remaining: *self.quota_remaining.lock().unwrap(),
            last_error: self.last_error.lock().unwrap().clone(),
            activation_state: self.activation_state.lock().unwrap().clone(),
            pushes: load(&self.pushes),
            api_calls: load(&self.client.api_calls),
            throttled: load(&self.client.throttled),
            activations: load(&self.client.activations),
            defender_category: self.defender_category.lock().unwrap().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a report with each field set, and the JSON type of its value, one
    /// `path: type` a line: the shape monitoring reads.
    fn shape(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let kind = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "bool",
            serde_json::Value::Number(n) if n.is_f64() => "float",
            serde_json::Value::Number(_) => "integer",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(items) => {
                out.push(format!("{path}: array"));
                if let Some(first) = items.first() {
                    shape(first, &format!("{path}[]"), out);
                }
                return;
            }
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    shape(value, &path, out);
                }
                return;
            }
        };
        out.push(format!("{path}: {kind}"));
    }

    #[test]
    fn the_report_keeps_its_field_names_and_types() {
        let stats = Stats::default();
        let now = SystemTime::now();
        let text = || Some("x".to_string());
        *stats.data_source.found.lock().unwrap() = Some(true);
        stats.data_source.last_data_received.set(now);
        *stats.data_source.problem.lock().unwrap() = text();
        *stats.data_source.source.lock().unwrap() = Some(("a".into(), "b".into()));
        stats.feed.last_record.set(now);
        stats.feed.files.lock().unwrap().push(FileReport::default());
        stats.spool.oldest.set(now);
        *stats.spool.held_why.lock().unwrap() = text();
        *stats.spool.write_refused.lock().unwrap() = text();
        stats.upload.last_success.set(now);
        stats.upload.set_error("x");
        stats.upload.set_paused(Some(PauseReason {
            kind: crate::upload::PauseKind::CredentialRefused,
            message: "x".into(),
        }));
        stats.sync.last_success.set(now);
        *stats.sync.last_error.lock().unwrap() = text();
        stats.sync.next.set(now);
        let zia = &stats.sync.zia;
        *zia.category_id.lock().unwrap() = text();
        zia.last_push.set(now);
        zia.last_activation.set(now);
        *zia.activation_state.lock().unwrap() = text();
        *zia.quota_remaining.lock().unwrap() = Some(1);
        *zia.last_error.lock().unwrap() = text();
        *zia.defender_category.lock().unwrap() = Some(ZiaCategoryReport::default());
        stats.latency.seal.observe(Duration::from_secs(1), 1);
        stats.latency.delivery.observe(Duration::from_secs(1), 1);
        let mcas = McasReport {
            domain: text(),
            token: text(),
            auth: text(),
            ..Default::default()
        };
        let report = stats.report(mcas, MemoryReport::default());
        let mut lines = Vec::new();
        shape(&serde_json::to_value(&report).unwrap(), "", &mut lines);
        let expected = include_str!("status/shape.txt");
        if std::env::var_os("NSS_WRITE_SHAPE").is_some() {
            std::fs::write("src/status/shape.txt", lines.join("\n") + "\n").unwrap();
        }
        assert_eq!(lines.join("\n") + "\n", expected);
    }
}
