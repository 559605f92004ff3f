//! Upload: each sealed batch, oldest first, to MCAS in three steps (upload_url, the blob
//! PUT, done_upload). A batch leaves the spool only after done_upload answered 2xx (or
//! refused a repeat of a done_upload that went unanswered: the first one was taken).
//!
//! The parts: [`steps`] (MCAS as a trait, so that this logic is tested on paused time),
//! [`batches`] (the state between attempts and the decisions taken from it), [`held`]
//! (batches that keep failing step aside), [`ahead`] (batches sent ahead as they are
//! sealed while calls are scarce), [`spool_io`] (the blocking spool, awaited).
//!
//! While an API call may go now, each sealed batch goes up at once as it is; waiting
//! batches are merged into one upload only while the next call must wait for the rate
//! limiter, or while MCAS fails for every batch: then one attempt every
//! `upload.outage_retry`, and the whole backlog goes up once one succeeds.

mod ahead;
mod batches;
pub mod counters;
mod held;
mod pause;
mod spool_io;
mod steps;

#[cfg(test)]
mod tests;

pub use batches::MergeLimits;
pub use pause::{PauseKind, PauseReason};
pub use steps::{Mcas, McasUploads};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::rfc3339;
use crate::config::{McasTarget, UploadSettings};
use crate::mcas::log_format::Chosen;
use crate::mcas::{data_source, ApiError, Disposition, Known, McasClient, Provider, Step};
use crate::retry::Backoff;
use crate::spool::{DoneSent, MergeFailed, SealedBatch, Spool, DISK_RETRY};
use batches::{Batches, PUT_FAILURES_PER_URL};
use counters::UploaderCounters;
use spool_io::SpoolIo;

/// How old events may be for MCAS to take them.
pub const MCAS_MAX_AGE: Duration = Duration::from_secs(90 * 86_400);

/// How long ago a batch sealed at `sealed_at` was sealed, when that is more than
/// [`MCAS_MAX_AGE`]: its events are older still.
fn too_old(sealed_at: SystemTime, now: SystemTime) -> Option<Duration> {
    now.duration_since(sealed_at)
        .ok()
        .filter(|age| *age > MCAS_MAX_AGE)
}

/// API calls of one upload that the rate limiter counts: upload_url and done_upload.
const CALLS_PER_UPLOAD: u32 = 2;

/// How often the spool is looked at even without news of a sealed batch.
const RESCAN: Duration = Duration::from_secs(5);

/// Uploads sealed batches until cancelled.
pub struct Uploader<M = McasUploads> {
    mcas: M,
    spool: SpoolIo,
    counters: UploaderCounters,
    settings: UploadSettings,
    /// Names the files in MCAS: which appliance sent them.
    host: String,
    merge: MergeLimits,
    /// For the advice of a tenant-wide refusal: the names the agent sends.
    data_source: String,
}

/// How one attempt at a batch ended.
enum Outcome {
    Delivered,
    Quarantined,
    /// Try again after this wait.
    Retry(Wait),
    /// The batch failed again and again: newer batches go first.
    Held,
    /// MCAS answered 429: the rate limiter holds the next call as long as MCAS asked, and
    /// has lowered this agent's rate; no backoff on top.
    Throttled,
}

/// How long to wait before the next attempt.
enum Wait {
    /// The backoff of failures in a row, at least this long (a Retry-After); the outage
    /// cadence once MCAS fails for every batch.
    Backoff(Duration),
    /// The outage cadence.
    Outage,
    /// This long.
    Fixed(Duration),
}

/// Why an attempt's steps stopped before MCAS accepted the batch.
enum Stopped {
    /// MCAS, the blob store or the way to them failed.
    Mcas(ApiError),
    /// The spool could not record that the done_upload is sent.
    SpoolRefuses(std::io::Error),
}

impl From<ApiError> for Stopped {
    fn from(error: ApiError) -> Stopped {
        Stopped::Mcas(error)
    }
}

impl Uploader<McasUploads> {
    /// An uploader of `spool`'s batches through `client`.
    pub fn new(
        client: McasClient,
        spool: Arc<Spool>,
        counters: UploaderCounters,
        settings: UploadSettings,
        target: &McasTarget,
        source: Chosen,
    ) -> Uploader {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "nss".to_string());
        let mcas = McasUploads {
            client,
            source,
            data_source: target.data_source.clone(),
            timeout: settings.timeout,
        };
        Uploader::with_mcas(mcas, spool, counters, settings, host).names(&target.data_source)
    }
}

impl<M: Mcas> Uploader<M> {
    /// An uploader through `mcas`, naming its files after `host`.
    pub fn with_mcas(
        mcas: M,
        spool: Arc<Spool>,
        counters: UploaderCounters,
        settings: UploadSettings,
        host: String,
    ) -> Uploader<M> {
        Uploader {
            mcas,
            spool: SpoolIo::new(spool),
            counters,
            settings,
            host,
            merge: MergeLimits::default(),
            data_source: String::new(),
        }
    }

    fn names(mut self, data_source: &str) -> Uploader<M> {
        self.data_source = data_source.to_string();
        self
    }

    /// Sets how far merges of waiting batches go.
    pub fn merge_up_to(mut self, limits: MergeLimits) -> Uploader<M> {
        self.merge = limits;
        self
    }

    /// Uploads until `cancel`. A batch being uploaded when `cancel` fires is finished
    /// first, unless `abort` fires too.
    pub async fn run(self, cancel: CancellationToken, abort: CancellationToken) {
        let outage_retry = self.settings.outage_retry;
        // No wait between attempts is longer than the outage cadence (Retry-After and
        // pauses aside); backoff_max still says how long a failing batch is held back.
        let mut backoff = Backoff::new(
            self.settings.backoff_min.min(outage_retry),
            self.settings.backoff_max.min(outage_retry),
        );
        self.counters
            .upload
            .outage_retry
            .set(outage_retry.as_secs_f64());
        let mut batches = Batches::default();
        let mut first_scan = true;
        // The uploads waited for the rate limiter longer than a merge costs.
        let mut waited_for_calls = false;
        while !cancel.is_cancelled() {
            let ready = match self.scan(&mut batches).await {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::error!(%error, "cannot read the spool");
                    wait_or_cancel(RESCAN, &cancel).await;
                    continue;
                }
            };
            if first_scan {
                first_scan = false;
                self.resume_done_sent(&ready, &mut batches).await;
            }
            let Some(oldest) = batches.next(&ready).cloned() else {
                let release = batches
                    .next_release()
                    .map_or(RESCAN, |at| at.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = self.spool.wait_sealed() => {}
                    _ = tokio::time::sleep(release.min(RESCAN)) => {}
                    _ = cancel.cancelled() => {}
                }
                continue;
            };
            // MCAS ignores events older than 90 days: such a batch would cost two API calls
            // for nothing. Batches are taken oldest first, so a merge behind a younger
            // one never takes an older one.
            if let Some(age) = too_old(oldest.sealed_at, SystemTime::now()) {
                let reason = format!(
                    "sealed {} days ago (at {}): MCAS ignores events older than 90 days, so it is not uploaded",
                    age.as_secs() / 86_400,
                    rfc3339(oldest.sealed_at)
                );
                self.quarantine(&oldest, &reason).await;
                self.counters.spool.too_old.add(1);
                batches.quarantined(oldest.seq);
                continue;
            }
            // An upload goes once its calls may go back to back. While writers fill
            // batches, the calls of one more upload are kept back too: the last batch of a
            // burst then goes up as soon as it is sealed, instead of waiting for the
            // limiter behind the uploads before it. Batches sealed during the wait go
            // along; a seal may also end the filling. A feed that paused for less than
            // half a second (right after a batch sealed by age, before its next
            // chunk) still counts as filling.
            let outage = batches.failing_for_everyone();
            let reserve = if !outage && self.spool.more_coming(ahead::STILL_COMING) {
                CALLS_PER_UPLOAD
            } else {
                0
            };
            let calls = (CALLS_PER_UPLOAD + reserve).min(self.mcas.most_back_to_back());
            if !outage {
                let wait = self.mcas.wait_for_calls(calls);
                if wait > batches::MERGE_PAYS_AFTER
                    && reserve > 0
                    && self.may_send_ahead(&oldest, &batches)
                {
                    // One upload's calls, not one each, for longer than a merge costs:
                    // what is sealed meanwhile goes ahead to one upload URL as it is
                    // sealed.
                    match self
                        .send_ahead(&oldest, &mut batches, &cancel, &abort)
                        .await
                    {
                        ahead::Ahead::Ready(batch) => {
                            let attempted = self
                                .check_and_attempt(
                                    &batch,
                                    &mut batches,
                                    &mut backoff,
                                    &cancel,
                                    &abort,
                                )
                                .await;
                            if !attempted {
                                return;
                            }
                        }
                        ahead::Ahead::Failed(outcome) => {
                            self.settle(outcome, &oldest, &mut backoff, &batches, &cancel)
                                .await;
                        }
                        ahead::Ahead::Abandoned => {}
                    }
                    continue;
                }
                if !wait.is_zero() {
                    // A wait longer than a merge costs: what waits goes up as one.
                    waited_for_calls |= wait > batches::MERGE_PAYS_AFTER;
                    tokio::select! {
                        _ = tokio::time::sleep(self.look_again(wait)) => {}
                        _ = self.spool.wait_sealed() => {}
                        _ = cancel.cancelled() => {}
                    }
                    continue;
                }
            }
            // With batches waiting behind the oldest, how long the next of them would wait
            // for the rate limiter if each went up alone (two calls an upload): a merge
            // pays only when long.
            let joinable = self.merge.max_raw_bytes > 0 && batches.joinable(oldest.seq);
            let behind = joinable
                && batches
                    .merge_run(&ready, oldest.seq, self.merge.max_raw_bytes)
                    .len()
                    > 1;
            let limiter_wait = if behind {
                self.mcas
                    .wait_for_calls(CALLS_PER_UPLOAD + reserve + CALLS_PER_UPLOAD)
            } else {
                Duration::ZERO
            };
            let call_now = self.mcas.call_available_now();
            // Calls were scarce for long: what waited for them goes up as one. Taken
            // whatever this round decides, so that it speaks only of the wait before it.
            let waited_long = std::mem::take(&mut waited_for_calls);
            let merging =
                joinable && (!call_now || waited_long || batches.merge_pays(limiter_wait));
            let mut probed = None;
            let batch = if merging && call_now && outage {
                // MCAS fails for every batch: first ask whether it takes a file at all
                // (upload_url carries only the name, which a merge keeps), and merge the
                // backlog only once it does, not once per attempt.
                let name = self.file_name(&oldest);
                let asked = tokio::select! {
                    asked = self.mcas.upload_url(&name) => asked,
                    _ = abort.cancelled() => return,
                };
                match asked {
                    Ok(target) => {
                        batches.usable_url(&target);
                        let Some(batch) = self.merge_waiting(&oldest, &mut batches).await else {
                            // Kept for the merged batch, named after the oldest, that a
                            // later round uploads (and checks first).
                            batches.progress(oldest.seq).target = Some(target);
                            continue;
                        };
                        probed = Some(target);
                        batch
                    }
                    Err(error) => {
                        let outcome = self.failed(&oldest, &mut batches, error).await;
                        self.settle(outcome, &oldest, &mut backoff, &batches, &cancel)
                            .await;
                        continue;
                    }
                }
            } else if merging {
                // Batches sealed while the call waits go along.
                tokio::select! {
                    _ = self.mcas.call_available() => {}
                    _ = cancel.cancelled() => continue,
                }
                match self.merge_waiting(&oldest, &mut batches).await {
                    Some(batch) => batch,
                    None => continue,
                }
            } else {
                oldest
            };
            if let Some(target) = probed {
                // The upload URL asked for the oldest's name serves the merged file.
                let progress = batches.progress(batch.seq);
                progress.target = Some(target);
                progress.blob_sent = false;
                progress.done_unanswered = false;
                progress.put_failures = 0;
                progress.staged_blocks = None;
            }
            if !self
                .check_and_attempt(&batch, &mut batches, &mut backoff, &cancel, &abort)
                .await
            {
                return;
            }
        }
    }

    /// The check before upload (a batch that fails it goes to quarantine), then one
    /// attempt at `batch` and the wait its outcome asks for; `false` when `abort` cut the
    /// attempt short.
    async fn check_and_attempt(
        &self,
        batch: &SealedBatch,
        batches: &mut Batches,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
        abort: &CancellationToken,
    ) -> bool {
        if !self.passes_check(batch, batches).await {
            return true;
        }
        let outcome = tokio::select! {
            outcome = self.attempt(batch, batches) => outcome,
            _ = abort.cancelled() => return false,
        };
        self.settle(outcome, batch, backoff, batches, cancel).await;
        true
    }

    /// After an attempt: counts a retry and waits as the outcome says.
    async fn settle(
        &self,
        outcome: Outcome,
        batch: &SealedBatch,
        backoff: &mut Backoff,
        batches: &Batches,
        cancel: &CancellationToken,
    ) {
        let upload = &self.counters.upload;
        let outage_retry = self.settings.outage_retry;
        match outcome {
            Outcome::Delivered | Outcome::Quarantined => backoff.reset(),
            // The next batch is tried right away; this one keeps what it got (its
            // upload URL) for when its hold ends.
            Outcome::Held => {}
            Outcome::Throttled => {
                upload.retries.add(1);
            }
            Outcome::Retry(wait) => {
                upload.retries.add(1);
                let outage = batches.failing_for_everyone();
                upload.outage.set(outage);
                let wait = match wait {
                    Wait::Backoff(at_least) if outage => outage_wait(outage_retry).max(at_least),
                    Wait::Backoff(at_least) => backoff.next(Some(at_least)),
                    Wait::Outage => outage_wait(outage_retry),
                    Wait::Fixed(wait) => wait,
                };
                tracing::info!(seq = batch.seq, wait = %humantime::format_duration(round(wait)), outage, "will try again");
                wait_or_cancel(wait, cancel).await;
                if outage {
                    self.keep_to_outage_share(cancel).await;
                }
            }
        }
    }

    /// While MCAS fails for every batch, waits until the process's API calls of the last
    /// minute (the start-up's and the data sources watcher's too) leave room within the
    /// outage's share, so that no minute of an outage has more calls than it.
    async fn keep_to_outage_share(&self, cancel: &CancellationToken) {
        let share = outage_share(self.settings.outage_retry);
        loop {
            let wait = self.mcas.wait_for_share(share);
            if wait.is_zero() || cancel.is_cancelled() {
                return;
            }
            wait_or_cancel(wait, cancel).await;
        }
    }

    /// The batches to upload, oldest first, after refreshing the spool's figures in the
    /// status and forgetting batches gone from the spool.
    async fn scan(&self, batches: &mut Batches) -> std::io::Result<Vec<SealedBatch>> {
        let spool = &self.counters.spool;
        // Read before the scan: a writer counts a batch once it is in the spool, so every
        // batch this figure counts is in what the scan sees (or already delivered). Set
        // last, under its lock, after the figures of this scan.
        let sealed_before = spool.sealed_records.get();
        let scan = self.spool.scan().await?;
        let view = scan.view;
        batches.refresh(&view.ready);
        spool.batches.set(view.batches());
        spool.bytes.set(view.bytes());
        spool.quarantined.set(view.quarantined);
        spool.delivered_undeleted.set(scan.undeleted);
        let (held, why) = batches.held_summary();
        spool.held.set(held);
        spool.held_why.set(why);
        match view.oldest() {
            Some(oldest) => spool.oldest.set(oldest),
            None => spool.oldest.clear(),
        }
        spool.scanned_sealed_records.set(Some(sealed_before));
        Ok(view.ready)
    }

    /// Batches whose done_upload an earlier run sent without an answer (a shutdown or a
    /// crash meanwhile) repeat that done_upload instead of going up anew.
    async fn resume_done_sent(&self, ready: &[SealedBatch], batches: &mut Batches) {
        for (seq, sent) in self.spool.done_sent(ready).await {
            tracing::info!(
                seq,
                "an earlier run sent this batch's done_upload without an answer: repeating it"
            );
            let provider = match sent.provider.as_str() {
                "aws" => Provider::Aws,
                _ => Provider::Azure,
            };
            batches.resume_done(
                seq,
                crate::mcas::UploadTarget {
                    url: sent.upload_url,
                    provider,
                },
            );
        }
    }

    /// `oldest`, or one batch merging it with the batches waiting after it that may join.
    /// A damaged source stops the run (it goes to quarantine in its turn); a merge that
    /// fails is logged and the oldest goes alone, unless the merged batch is already in
    /// `ready/` (only the sync after its rename failed): then `None`, and the next scan
    /// offers it once the sync succeeds, so that no record of it goes up twice.
    async fn merge_waiting(
        &self,
        oldest: &SealedBatch,
        batches: &mut Batches,
    ) -> Option<SealedBatch> {
        let Ok(scan) = self.spool.scan().await else {
            return Some(oldest.clone());
        };
        let run = batches.merge_run(&scan.view.ready, oldest.seq, self.merge.max_raw_bytes);
        if run.len() < 2 || run[0] != *oldest {
            return Some(oldest.clone());
        }
        // The merge joins deflate streams without reading them, and would carry a damaged
        // source into every record's file.
        let good = self.spool.verified_prefix(run).await;
        if good < 2 {
            return Some(oldest.clone());
        }
        let run = run[..good].to_vec();
        match self
            .spool
            .merge_oldest(run, self.merge.max_raw_bytes, self.merge.level)
            .await
        {
            Ok(Some(merged)) => {
                batches.merged(merged.seq);
                Some(merged)
            }
            Ok(None) => Some(oldest.clone()),
            Err(failed) if failed.sealed => {
                // Its progress was the oldest's, whose seq the merged batch takes.
                batches.merged(oldest.seq);
                tracing::warn!(error = %failed.error, "a merge failed after its rename into ready/: the merged batch waits for the next scan, its sources are not uploaded");
                None
            }
            Err(MergeFailed { error, .. }) => {
                tracing::warn!(%error, "merging the waiting batches failed; uploading them one by one");
                Some(oldest.clone())
            }
        }
    }

    /// Whether `batch` passed, or now passes, the check before upload; if not, it goes to
    /// quarantine.
    async fn passes_check(&self, batch: &SealedBatch, batches: &mut Batches) -> bool {
        if batches.progress(batch.seq).checked {
            return true;
        }
        if let Err(problem) = self.spool.verify(batch).await {
            self.quarantine(batch, &format!("failed its integrity check: {problem}"))
                .await;
            batches.quarantined(batch.seq);
            return false;
        }
        batches.progress(batch.seq).checked = true;
        true
    }

    /// The name the file gets in MCAS: the appliance, the seal time and the sequence.
    fn file_name(&self, batch: &SealedBatch) -> String {
        let sealed = rfc3339(batch.sealed_at).replace([':', '-'], "");
        format!("nss-{}-{sealed}-{}.log.gz", self.host, batch.seq)
    }

    /// One attempt at the batch, resuming after the last step that succeeded.
    async fn attempt(&self, batch: &SealedBatch, batches: &mut Batches) -> Outcome {
        match self.steps(batch, batches).await {
            Ok(()) => {
                self.delivered(batch, batches).await;
                Outcome::Delivered
            }
            Err(Stopped::Mcas(error)) => self.failed(batch, batches, error).await,
            Err(Stopped::SpoolRefuses(error)) => {
                let progress = batches.progress(batch.seq);
                if !progress.waiting_for_disk {
                    progress.waiting_for_disk = true;
                    tracing::warn!(seq = batch.seq, %error, "the spool's disk refuses writes: the batch's done_upload waits until it takes them, so that a stop meanwhile cannot send the batch twice");
                }
                self.counters.upload.set_error(format!(
                    "{}: the spool's disk refuses writes ({error}): the done_upload waits until it takes them",
                    rfc3339(std::time::SystemTime::now())
                ));
                // The upload URL and the blob are kept: only the record and the
                // done_upload are left to do.
                Outcome::Retry(Wait::Fixed(DISK_RETRY))
            }
        }
    }

    async fn steps(&self, batch: &SealedBatch, batches: &mut Batches) -> Result<(), Stopped> {
        let target = match &batches.progress(batch.seq).target {
            Some(target) => target.clone(),
            None => {
                let target = self.mcas.upload_url(&self.file_name(batch)).await?;
                batches.usable_url(&target);
                let progress = batches.progress(batch.seq);
                progress.target = Some(target.clone());
                progress.blob_sent = false;
                progress.done_unanswered = false;
                progress.put_failures = 0;
                progress.staged_blocks = None;
                target
            }
        };
        if !batches.progress(batch.seq).blob_sent {
            // Sent ahead, only the block list is left; should it fail, the next attempt
            // sends the file whole.
            match batches.progress(batch.seq).staged_blocks.take() {
                Some(blocks) => self.mcas.commit_blocks(&target, blocks).await?,
                None => self.mcas.put_blob(&target, batch).await?,
            }
            batches.progress(batch.seq).blob_sent = true;
        }
        if !batches.progress(batch.seq).done_unanswered {
            // Kept until the batch leaves the spool, so that a run ending before MCAS
            // answers repeats this done_upload instead of sending the file again.
            let sent = DoneSent {
                upload_url: target.url.clone(),
                provider: match target.provider {
                    Provider::Azure => "azure",
                    Provider::Aws => "aws",
                }
                .to_string(),
            };
            // Not sent unrecorded: a batch MCAS accepted could then be neither marked nor
            // removed (the disk that refuses this refuses those), and would go up again
            // after a restart.
            self.spool
                .record_done_sent(batch, sent)
                .await
                .map_err(Stopped::SpoolRefuses)?;
            batches.progress(batch.seq).waiting_for_disk = false;
        }
        Ok(self.mcas.done_upload(&target).await?)
    }

    /// Counts a batch MCAS accepted and removes it from the spool; should the removal
    /// fail, the spool keeps it as delivered (never sent again) and retries the removal.
    async fn delivered(&self, batch: &SealedBatch, batches: &mut Batches) {
        batches.delivered(batch.seq);
        if let Err(error) = self.spool.delivered(batch).await {
            tracing::error!(seq = batch.seq, file = %batch.path.display(), %error, "delivered, but cannot remove the batch from the spool: it is not sent again, and its removal is retried");
            self.counters
                .spool
                .delivered_undeleted
                .set(self.spool.undeleted());
        }
        let upload = &self.counters.upload;
        upload.batches.add(1);
        upload.records.add(batch.records);
        upload.bytes_raw.add(batch.raw_bytes);
        upload.bytes_gzip.add(batch.gzip_bytes);
        upload.last_success.touch();
        upload.outage.set(false);
        let waited = self
            .counters
            .arrivals
            .delivered(batch.seq, batch.last_seq(), batch.sealed_at);
        upload.delivery_latency.observe(waited, batch.records);
        upload.succeeded();
        tracing::info!(
            seq = batch.seq,
            records = batch.records,
            raw = batch.raw_bytes,
            gzip = batch.gzip_bytes,
            "batch delivered to MCAS"
        );
    }

    /// Moves a batch that must not be retried to quarantine, saying why in the log and
    /// beside the file.
    async fn quarantine(&self, batch: &SealedBatch, reason: &str) {
        match self.spool.quarantine(batch, reason).await {
            Ok(path) => {
                tracing::error!(seq = batch.seq, file = %path.display(), reason, "the batch is kept in quarantine and will not be uploaded")
            }
            Err(error) => {
                tracing::error!(seq = batch.seq, reason, %error, "cannot move the batch to quarantine")
            }
        }
    }

    /// What a failed attempt leads to, as [`Disposition::of`] reads the error.
    async fn failed(&self, batch: &SealedBatch, batches: &mut Batches, error: ApiError) -> Outcome {
        let seq = batch.seq;
        let upload = &self.counters.upload;
        upload.set_error(format!(
            "{}: {error}",
            rfc3339(std::time::SystemTime::now())
        ));
        let known = Known {
            done_unanswered: batches.progress(seq).done_unanswered,
            data_source_missing: self.counters.data_source.found.get() == Some(false),
        };
        let disposition = Disposition::of(&error, known);
        if error.step() == Some(Step::DoneUpload)
            && !known.done_unanswered
            && disposition != Disposition::BatchFailed
        {
            // MCAS answered the first done_upload of this URL, and took nothing.
            self.spool.forget_done_sent(batch).await;
        }
        match disposition {
            Disposition::Throttled => {
                // The tenant's throttle is no fault of the batch; the rate limiter holds
                // the next call as long as MCAS asked and lowered this agent's rate.
                batches.failed_elsewhere(seq);
                tracing::info!(seq, %error, "MCAS throttled the call; this agent's rate is lowered");
                Outcome::Throttled
            }
            Disposition::Outage => {
                batches.outage(seq);
                upload.outage.set(true);
                tracing::warn!(seq, %error, "upload attempt failed: MCAS fails whatever the batch; trying again every upload.outage_retry");
                Outcome::Retry(Wait::Outage)
            }
            Disposition::BatchFailed => {
                tracing::warn!(seq, %error, "upload attempt failed");
                let progress = batches.progress(seq);
                match error.step() {
                    Some(Step::DoneUpload) => progress.done_unanswered = true,
                    Some(Step::Blob) => {
                        progress.put_failures += 1;
                        if progress.put_failures >= PUT_FAILURES_PER_URL {
                            tracing::info!(seq, failures = progress.put_failures, "the blob upload keeps failing on this upload URL: asking MCAS for a new one");
                            *progress = batches::Progress {
                                checked: progress.checked,
                                ..Default::default()
                            };
                        }
                    }
                    _ => {}
                }
                let retry_after = error.retry().asked().unwrap_or_default();
                if batches.batch_failed(seq, error.to_string(), self.settings.backoff_max) {
                    tracing::warn!(seq, %error, hold = %humantime::format_duration(self.settings.backoff_max), "the batch keeps failing: it is held back and newer batches go first; it stays in the spool and is tried again later");
                    return Outcome::Held;
                }
                Outcome::Retry(Wait::Backoff(retry_after))
            }
            Disposition::NewUrl => {
                tracing::warn!(seq, %error, "upload attempt failed");
                batches.progress(seq).target = None;
                Outcome::Retry(Wait::Fixed(Duration::ZERO))
            }
            Disposition::UnusableUrl => {
                batches.progress(seq).target = None;
                if batches.unusable_url(seq) {
                    let why = format!("{error}, again and again: MCAS is misbehaving for the whole tenant; uploads are paused, the batches stay in the spool and are tried again every upload.auth_retry");
                    tracing::error!(seq, %error, "MCAS keeps answering upload URLs the agent will not use: uploads are paused; receiving and spooling go on");
                    upload.set_error(format!("{}: {why}", rfc3339(std::time::SystemTime::now())));
                    upload.set_paused(PauseReason {
                        kind: PauseKind::UnusableUploadUrls,
                        message: why,
                    });
                    return Outcome::Retry(Wait::Fixed(self.settings.auth_retry));
                }
                tracing::warn!(seq, %error, "upload attempt failed: asking for another upload URL");
                Outcome::Retry(Wait::Backoff(Duration::ZERO))
            }
            Disposition::Pause => {
                batches.failed_elsewhere(seq);
                if !known.done_unanswered {
                    // Nothing of it reached MCAS for good: a new upload URL next time. After
                    // an unanswered done_upload the same one is repeated.
                    batches.progress(seq).target = None;
                }
                if error.is_tenant_wide() {
                    let source = self.mcas.source_name();
                    let fix = data_source::refusal_fix(&error, &self.data_source, &source);
                    tracing::error!(%error, fix, "MCAS refused the upload for the whole tenant: uploads are paused, the batch stays in the spool; receiving and spooling go on");
                    upload.set_error(format!(
                        "{}: {error}; uploads are paused: {fix}",
                        rfc3339(std::time::SystemTime::now())
                    ));
                    upload.set_paused(PauseReason::pausing(&error, format!("{error}; {fix}")));
                } else {
                    tracing::error!(%error, "uploads are paused; receiving and spooling go on");
                    upload.set_paused(PauseReason::pausing(&error, error.to_string()));
                }
                Outcome::Retry(Wait::Fixed(self.settings.auth_retry))
            }
            Disposition::DeliveredBefore => {
                // The first done_upload reached MCAS: the file was taken then.
                tracing::warn!(seq, %error, "MCAS refused a repeated done_upload after the first went unanswered: the batch was delivered by the first one");
                self.delivered(batch, batches).await;
                Outcome::Delivered
            }
            Disposition::Quarantine => {
                self.quarantine(batch, &error.to_string()).await;
                batches.quarantined(seq);
                Outcome::Quarantined
            }
        }
    }
}

/// The API calls a minute an outage may cost: one every `every` (4 at the default 15 s),
/// at least one.
fn outage_share(every: Duration) -> u32 {
    let per_minute = Duration::from_secs(60).as_secs_f64() / every.as_secs_f64().max(1e-3);
    (per_minute.floor() as u32).max(1)
}

/// The wait between attempts while MCAS fails for every batch: `every`, and up to a tenth
/// more so that agents failing together do not retry together (never less, so that the
/// calls stay within `every`'s share of the tenant's throttle).
fn outage_wait(every: Duration) -> Duration {
    every + (every / 10).mul_f64(fastrand::f64())
}

async fn wait_or_cancel(wait: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = cancel.cancelled() => {}
    }
}

fn round(wait: Duration) -> Duration {
    Duration::from_millis(wait.as_millis() as u64)
}
