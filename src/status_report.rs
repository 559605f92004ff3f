//! The status report the daemon publishes for `nss status` and the metrics. Each stage
//! declares and owns its counters (see [`crate::counter`]); the report is the stages'
//! counters side by side, assembled by the daemon, written to `status.json` every second
//! and read back by `nss status` into the same types.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::category_sync::counters::SyncCounters;
use crate::clock::rfc3339;
use crate::durable_fs::AtomicWrite;
use crate::feed::counters::FeedCounters;
use crate::latency::Arrivals;
use crate::mcas::counters::{DataSourceCounters, McasCounters};
use crate::memory::MemoryReport;
use crate::spool::counters::SpoolCounters;
use crate::upload::counters::UploadCounters;
use crate::versioned;

/// The status file's name inside the runtime directory.
pub const STATUS_FILE: &str = "status.json";

/// The version of the status file this agent writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// The report `nss status --json` prints: field names are a promise to monitoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The report's format ([`VERSION`]); a file without one is of version 1.
    #[serde(default = "version_one")]
    pub version: u32,
    pub running: bool,
    pub pid: Option<u32>,
    pub started: Option<String>,
    pub mcas: McasReport,
    pub feed: Arc<FeedCounters>,
    pub spool: Arc<SpoolCounters>,
    pub upload: UploadReport,
    pub sync: Arc<SyncCounters>,
    pub memory: MemoryReport,
}

fn version_one() -> u32 {
    1
}

/// `mcas`: what is configured, and what MCAS's data sources list said.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct McasReport {
    pub domain: Option<String>,
    pub data_source: String,
    pub token: Option<String>,
    /// `mcas.auth`: `token` or `entra`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(flatten)]
    pub seen: Arc<DataSourceCounters>,
}

/// `upload`: the uploader's counters and the MCAS client's, side by side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadReport {
    #[serde(flatten)]
    pub stage: Arc<UploadCounters>,
    #[serde(flatten)]
    pub calls: Arc<McasCounters>,
}

impl StatusReport {
    /// The report of a daemon that is not running, with nothing counted.
    pub fn stopped() -> StatusReport {
        StatusReport {
            version: VERSION,
            running: false,
            pid: None,
            started: None,
            mcas: McasReport::default(),
            feed: Default::default(),
            spool: Default::default(),
            upload: Default::default(),
            sync: Default::default(),
            memory: Default::default(),
        }
    }
}

/// Every stage's counters, one `Arc` each: the daemon makes them, hands each stage its
/// own, and assembles the report from them.
#[derive(Debug)]
pub struct Counters {
    pub started: SystemTime,
    pub feed: Arc<FeedCounters>,
    pub spool: Arc<SpoolCounters>,
    pub upload: Arc<UploadCounters>,
    pub mcas: Arc<McasCounters>,
    pub data_source: Arc<DataSourceCounters>,
    pub sync: Arc<SyncCounters>,
    /// When the first record of each sealed batch arrived, for the delivery latency.
    pub arrivals: Arc<Arrivals>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            started: SystemTime::now(),
            feed: Default::default(),
            spool: Default::default(),
            upload: Default::default(),
            mcas: Default::default(),
            data_source: Default::default(),
            sync: Default::default(),
            arrivals: Default::default(),
        }
    }
}

impl Counters {
    /// The report of the running daemon: what is configured (`domain`, ... of `mcas`),
    /// the memory now, and every stage's counters.
    pub fn report(&self, mcas: McasReport, memory: MemoryReport) -> StatusReport {
        StatusReport {
            version: VERSION,
            running: true,
            pid: Some(std::process::id()),
            started: Some(rfc3339(self.started)),
            mcas: McasReport {
                seen: self.data_source.clone(),
                ..mcas
            },
            feed: self.feed.clone(),
            spool: self.spool.clone(),
            upload: UploadReport {
                stage: self.upload.clone(),
                calls: self.mcas.clone(),
            },
            sync: self.sync.clone(),
            memory,
        }
    }
}

/// Why a status file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{path} is not a status report: {why}")]
    NotAReport { path: String, why: String },
    #[error(transparent)]
    Newer(#[from] versioned::NewerVersion),
}

impl ReadError {
    /// Whether there is no status file at all (no daemon has run).
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads the report the daemon last wrote to `dir/status.json`.
/// The file is written by the daemon's account: read up to a bound (a report is a few KiB).
pub fn read(dir: &Path) -> Result<StatusReport, ReadError> {
    let path = dir.join(STATUS_FILE);
    let shown = path.display().to_string();
    let file = std::fs::File::open(&path)?;
    let text = crate::untrusted::read_to_end(file, MAX_STATUS_BYTES, &shown)
        .map_err(std::io::Error::other)?;
    match versioned::from_slice(&path, &text, VERSION) {
        Ok((_, report)) => Ok(report),
        Err(versioned::ReadError::Newer(newer)) => Err(newer.into()),
        Err(versioned::ReadError::Damaged(why)) => Err(ReadError::NotAReport { path: shown, why }),
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every key of a report with each field set, and the JSON type of its value, one
    /// `path: type` a line: the shape monitoring reads.
    pub(crate) fn shape(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
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
        use crate::category_sync::counters::ZiaCategoryReport;
        use crate::feed::counters::FileReport;
        use crate::upload::{PauseKind, PauseReason};
        use std::time::Duration;
        let counters = Counters::default();
        let now = SystemTime::now();
        let text = || Some("x".to_string());
        let seen = &counters.data_source;
        seen.found.set(Some(true));
        seen.last_data_received.set(now);
        seen.problem.set(text());
        seen.source.set(text());
        seen.source_why.set(text());
        counters.feed.last_record.set(now);
        counters.feed.files.lock().push(FileReport::default());
        counters.spool.oldest.set(now);
        counters.spool.held_why.set(text());
        counters.spool.write_refused.set(text());
        counters.spool.scanned_sealed_records.set(Some(1));
        counters
            .spool
            .seal_latency
            .observe(Duration::from_secs(1), 1);
        counters.upload.last_success.set(now);
        counters.upload.set_error("x");
        counters.upload.set_paused(PauseReason {
            kind: PauseKind::CredentialRefused,
            message: "x".into(),
        });
        counters
            .upload
            .delivery_latency
            .observe(Duration::from_secs(1), 1);
        counters.sync.last_success.set(now);
        counters.sync.last_error.set(text());
        counters.sync.next.set(now);
        let zia = &counters.sync.zia;
        zia.category_id.set(text());
        zia.last_push.set(now);
        zia.last_activation.set(now);
        zia.activation_state.set(text());
        zia.quota_remaining.set(Some(1));
        zia.last_error.set(text());
        zia.defender_category
            .set(Some(ZiaCategoryReport::default()));
        let mcas = McasReport {
            domain: text(),
            token: text(),
            auth: text(),
            ..Default::default()
        };
        let report = counters.report(mcas, MemoryReport::default());
        let mut lines = Vec::new();
        shape(&serde_json::to_value(&report).unwrap(), "", &mut lines);
        let expected = include_str!("status_report/shape.txt");
        if std::env::var_os("NSS_WRITE_SHAPE").is_some() {
            std::fs::write("src/status_report/shape.txt", lines.join("\n") + "\n").unwrap();
        }
        assert_eq!(lines.join("\n") + "\n", expected);
    }
}
