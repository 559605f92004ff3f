//! What the uploader knows of the batches between attempts, with the decisions taken from
//! it and nothing else: which batch goes next, which may be joined into a merge, when a
//! merge pays, and whether MCAS is failing for every batch. No input or output here.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::held::Holds;
use crate::mcas::{Provider, UploadTarget};
use crate::spool::{merge_run, SealedBatch};

/// Waiting batches are merged when the next of them, uploaded alone, would wait longer
/// than this for the rate limiter: one call's spacing at 30 calls a minute. A merge copies the
/// waiting batches' bytes once, a fraction of a second; waits below this are cheaper
/// than that copy and the one upload's longer transfer.
pub const MERGE_PAYS_AFTER: Duration = Duration::from_secs(2);

/// Failed PUTs to one upload URL after which a new URL is asked for.
pub const PUT_FAILURES_PER_URL: u32 = 3;

/// Unusable upload URLs in a row after which uploads pause: MCAS is misbehaving for the
/// whole tenant.
pub const UNUSABLE_URLS_BEFORE_PAUSE: u32 = 3;

/// How far a merge of waiting batches may go.
#[derive(Debug, Clone, Copy)]
pub struct MergeLimits {
    /// Uncompressed bytes of the merged file (`batch.busy_max_bytes`); 0: no merging.
    pub max_raw_bytes: u64,
    /// The gzip level, for sources that must be recompressed (`batch.gzip_level`).
    pub level: u32,
}

impl Default for MergeLimits {
    fn default() -> MergeLimits {
        let batch = crate::config::BatchSettings::default();
        MergeLimits {
            max_raw_bytes: batch.busy_max_bytes,
            level: batch.gzip_level,
        }
    }
}

/// How far one batch got. The upload URL stays valid for a while, so a failed PUT is
/// retried on it (a few times) sparing the tenant's API calls; once the blob is there,
/// only done_upload is repeated.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub target: Option<UploadTarget>,
    pub blob_sent: bool,
    /// A done_upload was sent and got no answer (a timeout, a broken connection, a 5xx),
    /// by this run or an earlier one: MCAS may have taken the file.
    pub done_unanswered: bool,
    /// Failed PUTs to `target`.
    pub put_failures: u32,
    /// It passed the check before upload.
    pub checked: bool,
    /// Its bytes are staged at `target` as this many blocks (sent ahead, see
    /// [`super::ahead`]): the blob step only commits them.
    pub staged_blocks: Option<usize>,
    /// Its done_upload waits for the spool's disk to take writes (said once in the log).
    pub waiting_for_disk: bool,
}

/// The uploader's state of the batches.
#[derive(Debug, Default)]
pub struct Batches {
    progress: BTreeMap<u64, Progress>,
    holds: Holds,
    /// The last attempt failed where no batch is at fault (upload_url): MCAS is failing
    /// for every batch until a delivery.
    outage: bool,
    /// upload_url answers the agent would not use, in a row.
    unusable_urls: u32,
    /// The blob store of the last upload URL.
    provider: Option<Provider>,
}

impl Batches {
    /// Forgets batches no longer in the spool.
    pub fn refresh(&mut self, ready: &[SealedBatch]) {
        let present = |seq: u64| ready.iter().any(|b| b.seq == seq);
        self.holds.retain(present);
        self.progress.retain(|&seq, _| present(seq));
    }

    /// The batch to try next: the oldest not held back.
    pub fn next<'a>(&self, ready: &'a [SealedBatch]) -> Option<&'a SealedBatch> {
        ready.iter().find(|b| !self.holds.is_held_now(b.seq))
    }

    /// When the first hold ends, if a batch is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.holds.next_release()
    }

    /// How many batches are held back, and why the last one was.
    pub fn held_summary(&self) -> (u64, Option<String>) {
        self.holds.summary()
    }

    /// Whether batch `seq` has an upload URL: then it is never joined with others (a
    /// done_upload of it may have been taken).
    pub fn started(&self, seq: u64) -> bool {
        self.progress.get(&seq).is_some_and(|p| p.target.is_some())
    }

    /// Whether batch `seq` may be joined into a merge: nothing of it reached MCAS yet, and
    /// its failures (if any) are not its own.
    pub fn joinable(&self, seq: u64) -> bool {
        !self.started(seq) && self.holds.may_join(seq)
    }

    /// Whether waiting batches are merged before the next upload: only while calls are
    /// scarce or MCAS fails for every batch. Calls are scarce when the batch behind the
    /// oldest, uploaded after it on its own, would wait `limiter_wait` for the rate
    /// limiter, more than [`MERGE_PAYS_AFTER`]. While they are not, each sealed batch
    /// goes up at once, as it is.
    pub fn merge_pays(&self, limiter_wait: Duration) -> bool {
        limiter_wait > MERGE_PAYS_AFTER || self.failing_for_everyone()
    }

    /// Whether MCAS fails for every batch now (then attempts go at the outage cadence).
    pub fn failing_for_everyone(&self) -> bool {
        self.outage || self.holds.everyone_failing()
    }

    /// The batches of `ready` from `oldest` on that one merge would join: those after it
    /// with consecutive numbers that may be joined, within `max_raw_bytes`.
    pub fn merge_run<'a>(
        &self,
        ready: &'a [SealedBatch],
        oldest: u64,
        max_raw_bytes: u64,
    ) -> &'a [SealedBatch] {
        let Some(start) = ready.iter().position(|b| b.seq == oldest) else {
            return &[];
        };
        let from = &ready[start..];
        let end = from
            .iter()
            .position(|b| !self.joinable(b.seq))
            .unwrap_or(from.len());
        merge_run(&from[..end], max_raw_bytes)
    }

    /// A merge wrote a new file under number `seq`: it starts afresh (and is checked).
    pub fn merged(&mut self, seq: u64) {
        self.progress.remove(&seq);
    }

    /// The progress of batch `seq`.
    pub fn progress(&mut self, seq: u64) -> &mut Progress {
        self.progress.entry(seq).or_default()
    }

    /// A done_upload of `target` was sent for batch `seq` by an earlier run, unanswered.
    pub fn resume_done(&mut self, seq: u64, target: UploadTarget) {
        *self.progress(seq) = Progress {
            target: Some(target),
            blob_sent: true,
            done_unanswered: true,
            ..Progress::default()
        };
    }

    /// upload_url answered `target`, a URL the agent uses.
    pub fn usable_url(&mut self, target: &UploadTarget) {
        self.unusable_urls = 0;
        self.provider = Some(target.provider);
    }

    /// Whether the upload URLs take Azure blocks, as far as the last one says (unknown
    /// before the first: MCAS's are Azure's).
    pub fn urls_take_blocks(&self) -> bool {
        self.provider != Some(Provider::Aws)
    }

    /// upload_url answered a URL the agent will not use; true when that happened
    /// [`UNUSABLE_URLS_BEFORE_PAUSE`] times in a row (uploads then pause).
    pub fn unusable_url(&mut self, seq: u64) -> bool {
        self.holds.failed_elsewhere(seq);
        self.unusable_urls += 1;
        self.unusable_urls >= UNUSABLE_URLS_BEFORE_PAUSE
    }

    /// Batch `seq` was delivered.
    pub fn delivered(&mut self, seq: u64) {
        self.progress.remove(&seq);
        self.holds.delivered(seq);
        self.outage = false;
        self.unusable_urls = 0;
    }

    /// Batch `seq` went to quarantine.
    pub fn quarantined(&mut self, seq: u64) {
        self.progress.remove(&seq);
        self.holds.left(seq);
    }

    /// An attempt at `seq` failed where no batch is at fault: MCAS fails for everyone.
    pub fn outage(&mut self, seq: u64) {
        self.holds.failed_elsewhere(seq);
        self.outage = true;
    }

    /// An attempt at `seq` failed for a reason that is not the batch's and says nothing
    /// of MCAS's health (the throttle, a pause).
    pub fn failed_elsewhere(&mut self, seq: u64) {
        self.holds.failed_elsewhere(seq);
    }

    /// A step carrying batch `seq` failed (the failure may be its own); true when the
    /// batch is now held back for `hold`, so that newer batches go first.
    pub fn batch_failed(&mut self, seq: u64, why: String, hold: Duration) -> bool {
        // upload_url answered (or was not needed): MCAS's API is there.
        self.outage = false;
        self.holds.failed(seq, why, hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    fn batch(seq: u64) -> SealedBatch {
        SealedBatch {
            path: PathBuf::from(format!("{seq:020}-0-1r-100b.gz")),
            seq,
            sealed_at: UNIX_EPOCH,
            records: 1,
            raw_bytes: 100,
            gzip_bytes: 50,
            checksum: None,
            last: None,
        }
    }

    fn target() -> UploadTarget {
        UploadTarget {
            url: "https://blob/x".into(),
            provider: crate::mcas::Provider::Aws,
        }
    }

    #[test]
    fn merges_only_while_calls_are_scarce_or_mcas_fails() {
        let mut batches = Batches::default();
        assert!(
            !batches.merge_pays(Duration::ZERO),
            "the uploads may go now"
        );
        assert!(
            !batches.merge_pays(Duration::from_millis(500)),
            "a short wait"
        );
        assert!(
            batches.merge_pays(Duration::from_secs(4)),
            "two calls' spacing at 30 a minute"
        );
        batches.outage(0);
        assert!(
            batches.merge_pays(Duration::ZERO),
            "an outage: the backlog goes up as one"
        );
        batches.delivered(0);
        assert!(!batches.merge_pays(Duration::ZERO));
    }

    #[test]
    fn a_merge_stops_before_a_started_or_failing_batch() {
        let ready: Vec<SealedBatch> = (0..6).map(batch).collect();
        let mut batches = Batches::default();
        assert_eq!(batches.merge_run(&ready, 0, u64::MAX).len(), 6);
        batches.progress(3).target = Some(target());
        assert_eq!(batches.merge_run(&ready, 0, u64::MAX).len(), 3);
        assert_eq!(batches.merge_run(&ready, 3, u64::MAX).len(), 0);
        batches.batch_failed(1, "503".into(), Duration::from_secs(60));
        assert_eq!(batches.merge_run(&ready, 0, u64::MAX).len(), 1);
        assert_eq!(batches.merge_run(&ready, 200, u64::MAX).len(), 0);
    }

    #[test]
    fn upload_url_failures_never_hold_a_batch() {
        let ready: Vec<SealedBatch> = (0..2).map(batch).collect();
        let mut batches = Batches::default();
        for _ in 0..20 {
            batches.outage(0);
        }
        assert_eq!(batches.next(&ready).map(|b| b.seq), Some(0));
        assert_eq!(batches.held_summary().0, 0);
        assert!(batches.joinable(0));
    }

    #[test]
    fn unusable_urls_pause_after_a_few_in_a_row() {
        let mut batches = Batches::default();
        for _ in 1..UNUSABLE_URLS_BEFORE_PAUSE {
            assert!(!batches.unusable_url(0));
        }
        assert!(batches.unusable_url(0));
        batches.usable_url(&UploadTarget {
            url: "https://a.blob.core.windows.net/c/b".into(),
            provider: Provider::Azure,
        });
        assert!(!batches.unusable_url(0));
    }
}
