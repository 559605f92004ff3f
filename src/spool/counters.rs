//! What the batch writers and the spool count: the `spool` section of the status report.

use serde::{Deserialize, Serialize};

use crate::counter::{Count, Flag, Real, Shared, WallTime};
use crate::latency::Histogram;

/// Counters of the batch and spool stages.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SpoolCounters {
    /// What `sealed_records` was when the uploader's last completed scan of the spool
    /// began; null before its first scan. Once it equals `sealed_records`, `batches` and
    /// `delivered_undeleted` count every batch sealed so far. Declared first, so that the
    /// report takes its lock before it reads the figures of the scan it stands for; the
    /// uploader sets it after them, so the lock orders the two.
    #[serde(default)]
    pub scanned_sealed_records: Shared<Option<u64>>,
    /// Sealed batches waiting, as last seen.
    pub batches: Count,
    /// Bytes of those batches.
    pub bytes: Count,
    /// When the oldest of them was sealed.
    pub oldest: WallTime,
    /// Batches in quarantine, as last seen.
    pub quarantined: Count,
    /// The cap (`spool.max_bytes`, resolved).
    #[serde(default)]
    pub max_bytes: Count,
    /// At the cap: reading is paused until uploads make room.
    #[serde(default)]
    pub full: Flag,
    /// Batches sealed since start.
    #[serde(default)]
    pub sealed: Count,
    /// Records in the batches sealed since start.
    #[serde(default)]
    pub sealed_records: Count,
    /// Records of the TCP feed in the spool's files since start, flushed or sealed: a
    /// kill -9 of the agent loses none of them.
    #[serde(default)]
    pub stream_records_on_disk: Count,
    /// The longest a batch stayed open since start, in seconds: from the arrival of its
    /// first record to its seal. Stays within `batch.max_age` plus about a second.
    #[serde(default)]
    pub seal_latency_max: Real,
    /// Times the spool filled up (or the disk reached its reserve) since start.
    #[serde(default)]
    pub full_events: Count,
    /// Batches sealed more than 90 days ago (MCAS ignores such events), moved to
    /// quarantine instead of uploaded, since start.
    #[serde(default)]
    pub too_old: Count,
    /// Batches held back: they failed again and again, and newer batches go first. They
    /// are tried again later; never deleted.
    #[serde(default)]
    pub held: Count,
    /// Why the last batch was held back (its last error), while any is held.
    #[serde(default)]
    pub held_why: Shared<Option<String>>,
    /// Batches MCAS accepted whose removal from the spool failed: never sent again,
    /// their removal retried.
    #[serde(default)]
    pub delivered_undeleted: Count,
    /// The spool's disk refuses writes now, with the error: reading is stopped until it
    /// accepts them (null while writes succeed).
    #[serde(default)]
    pub write_refused: Shared<Option<String>>,
    /// How long batches stayed open, from their first record's arrival to their seal.
    #[serde(default)]
    pub seal_latency: Histogram,
}
