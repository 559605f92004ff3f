//! What the feed stage counts: its section (`feed`) of the status report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::counter::{Count, Shared, WallTime};

/// Counters of the feed stage.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FeedCounters {
    /// Records read from the feed since start.
    pub records: Count,
    /// Bytes of those records.
    pub bytes: Count,
    /// When the last record was read.
    pub last_record: WallTime,
    /// Records dropped since start for exceeding `feed.max_record_bytes`.
    pub oversize_dropped: Count,
    /// TCP connections open now.
    pub connections: Count,
    /// TCP connections accepted since start.
    #[serde(default)]
    pub connections_total: Count,
    /// TCP connections closed on arrival since start, because `feed.max_connections`
    /// were open.
    #[serde(default)]
    pub connections_refused: Count,
    /// TCP connections closed since start for sending nothing for `feed.partial_timeout`
    /// in the middle of a record (the records they had completed are kept).
    #[serde(default)]
    pub partial_timeouts: Count,
    /// Inputs waiting for the memory budget now: they read nothing until memory is
    /// returned.
    #[serde(default)]
    pub waiting_for_memory: Count,
    /// Tailed files that ended without a newline since start: their last line was
    /// delivered as a record of its own.
    #[serde(default)]
    pub unterminated: Count,
    /// The tailed files and how far each was read.
    pub files: Shared<Vec<FileReport>>,
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
