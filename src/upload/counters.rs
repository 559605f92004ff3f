//! What the uploader counts: the `upload` section of the status report (the MCAS client's
//! call counters are shown beside them).

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PauseReason;
use crate::counter::{Count, Flag, Real, Shared, WallTime};
use crate::latency::{Arrivals, Histogram};
use crate::mcas::counters::DataSourceCounters;
use crate::spool::counters::SpoolCounters;

/// What the uploader records in: its own counters, the spool's (what waits, what is
/// held), and reads: what MCAS said of the data source; the batches' first arrivals.
#[derive(Debug, Clone, Default)]
pub struct UploaderCounters {
    pub upload: Arc<UploadCounters>,
    pub spool: Arc<SpoolCounters>,
    pub data_source: Arc<DataSourceCounters>,
    pub arrivals: Arc<Arrivals>,
}

/// Counters of the upload stage.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UploadCounters {
    /// Batches MCAS accepted since start (a merge counts once).
    pub batches: Count,
    /// Records in them.
    pub records: Count,
    /// Their bytes before and after gzip.
    pub bytes_raw: Count,
    pub bytes_gzip: Count,
    /// When MCAS last accepted a batch (shared with the data-source watch, which warns
    /// when MCAS says it received nothing while uploads succeed).
    pub last_success: Arc<WallTime>,
    /// The latest upload error, shown until the next success.
    last_error: Shared<Option<String>>,
    /// Upload attempts that failed and were tried again.
    #[serde(default)]
    pub retries: Count,
    /// Why uploads are paused (a refused credential, a tenant-wide refusal) and what to
    /// fix; only while the last attempt ended in that pause.
    #[serde(flatten)]
    pause: Pause,
    /// Seconds between attempts while MCAS fails for every batch (`upload.outage_retry`).
    #[serde(default)]
    pub outage_retry: Real,
    /// MCAS fails for every batch now: one attempt every `outage_retry`.
    #[serde(default)]
    pub outage: Flag,
    /// Per record delivered, from the arrival of its batch's first record to MCAS's
    /// acceptance.
    #[serde(default)]
    pub delivery_latency: Histogram,
}

impl UploadCounters {
    /// Records the latest upload error (shown until the next success); not a pause.
    pub fn set_error(&self, message: impl Into<String>) {
        self.last_error.set(Some(message.into()));
        self.pause.0.set(None);
    }

    /// Records that uploads are paused after the error just recorded, and why.
    pub fn set_paused(&self, why: PauseReason) {
        self.pause.0.set(Some(why));
    }

    /// An upload succeeded: no error, no pause.
    pub fn succeeded(&self) {
        self.last_error.set(None);
        self.pause.0.set(None);
    }

    /// The latest upload error, while the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }

    /// Why uploads are paused, while they are.
    pub fn pause_reason(&self) -> Option<PauseReason> {
        self.pause.0.get()
    }

    /// The outcome of the last attempt only (for `nss status` of a stopped daemon): its
    /// error, its pause and the last success, every count at zero.
    pub fn outcome(&self) -> UploadCounters {
        let outcome = UploadCounters::default();
        outcome.last_success.set_opt(self.last_success.get());
        outcome.last_error.set(self.last_error());
        outcome.pause.0.set(self.pause_reason());
        outcome
    }
}

/// The pause, shown twice: `paused` (the message, for people and old scripts) and
/// `pause_reason` (`{"kind", "message"}`, for code that decides); both null while uploads
/// are not paused.
#[derive(Debug, Default)]
struct Pause(Shared<Option<PauseReason>>);

impl Serialize for Pause {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reason = self.0.get();
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("paused", &reason.as_ref().map(|r| &r.message))?;
        map.serialize_entry("pause_reason", &reason)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pause, D::Error> {
        #[derive(Deserialize)]
        struct Shown {
            #[serde(default)]
            pause_reason: Option<PauseReason>,
        }
        let shown = Shown::deserialize(deserializer)?;
        Ok(Pause(Shared::new(shown.pause_reason)))
    }
}
