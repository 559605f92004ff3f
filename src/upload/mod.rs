//! Upload: each sealed batch, oldest first, to MCAS in three steps (upload_url, the blob
//! PUT, done_upload). A batch leaves the spool only after done_upload answered 2xx (or
//! refused a repeat of a done_upload that went unanswered: the first one was taken). A
//! batch that keeps failing is held back ([`held`]) so that newer ones go on.

mod held;
mod merge;

pub use merge::MergeLimits;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{McasTarget, UploadSettings};
use crate::mcas::log_format::Chosen;
use crate::mcas::{blob, data_source, ApiError, McasClient, Step, UploadTarget};
use crate::spool::{SealedBatch, Spool};
use crate::status::{rfc3339, Stats};

/// How often the spool is looked at even without news of a sealed batch.
const RESCAN: Duration = Duration::from_secs(5);

/// Uploads sealed batches until cancelled.
pub struct Uploader {
    client: McasClient,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    settings: UploadSettings,
    /// The log format, decided by the data sources watcher.
    source: Chosen,
    data_source: String,
    /// Names the files in MCAS: which appliance sent them.
    host: String,
    merge: MergeLimits,
}

/// How old events may be for MCAS to take them.
pub const MCAS_MAX_AGE: Duration = Duration::from_secs(90 * 86_400);

/// How long ago a batch sealed at `sealed_at` was sealed, when that is more than
/// [`MCAS_MAX_AGE`]: its events are older still.
fn too_old(sealed_at: SystemTime, now: SystemTime) -> Option<Duration> {
    now.duration_since(sealed_at)
        .ok()
        .filter(|age| *age > MCAS_MAX_AGE)
}

/// How far the current batch got: the upload URL (valid for a while, so a failed PUT is
/// retried on the same URL, sparing the tenant's API calls) and whether the blob is there
/// (then only done_upload is repeated).
#[derive(Debug, Default)]
struct Progress {
    target: Option<UploadTarget>,
    blob_sent: bool,
    /// A done_upload was sent and got no answer (a timeout, a broken connection, a 5xx):
    /// MCAS may have taken the file.
    done_unanswered: bool,
}

/// How one attempt at a batch ended.
enum Outcome {
    Delivered,
    Quarantined,
    /// Try the same batch again after this wait.
    Retry(Duration),
    /// The batch failed again and again: newer batches go first.
    Held,
    /// MCAS answered 429: the rate limiter holds the next call as long as MCAS asked, and
    /// has lowered this agent's rate; no backoff on top.
    Throttled,
}

impl Uploader {
    /// An uploader of `spool`'s batches through `client`.
    pub fn new(
        client: McasClient,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        settings: UploadSettings,
        target: &McasTarget,
        source: Chosen,
    ) -> Uploader {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "nss".to_string());
        Uploader {
            client,
            spool,
            stats,
            settings,
            source,
            data_source: target.data_source.clone(),
            host,
            merge: MergeLimits::default(),
        }
    }

    /// Uploads until `cancel`. A batch being uploaded when `cancel` fires is finished
    /// first, unless `abort` fires too.
    pub async fn run(self, cancel: CancellationToken, abort: CancellationToken) {
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        let mut progress = Progress::default();
        let mut current_seq = None;
        let mut holds = held::Holds::default();
        // The progress of batches set aside (held, or passed by an older batch whose hold
        // was lifted), for when their turn comes again: the same upload URL, and whether
        // a done_upload already went unanswered. Starting over would send a file MCAS may
        // already have a second time.
        let mut set_aside: std::collections::BTreeMap<u64, Progress> = Default::default();
        while !cancel.is_cancelled() {
            let batch = match self.next_batch(&mut holds).await {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    let release = holds
                        .next_release()
                        .map_or(RESCAN, |at| at.saturating_duration_since(Instant::now()));
                    tokio::select! {
                        _ = self.spool.wait_sealed() => {}
                        _ = tokio::time::sleep(release.min(RESCAN)) => {}
                        _ = cancel.cancelled() => {}
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the spool");
                    wait_or_cancel(RESCAN, &cancel).await;
                    continue;
                }
            };
            // MCAS ignores events older than 90 days: such a batch would cost two API calls
            // for nothing. Batches are taken oldest first, so a merge behind a younger
            // one never takes an older one.
            if let Some(age) = too_old(batch.sealed_at, SystemTime::now()) {
                let reason = format!(
                    "sealed {} days ago (at {}): MCAS ignores events older than 90 days, so it is not uploaded",
                    age.as_secs() / 86_400,
                    rfc3339(batch.sealed_at)
                );
                self.quarantine(&batch, &reason).await;
                self.stats.spool.too_old.fetch_add(1, Ordering::Relaxed);
                holds.done(batch.seq);
                if current_seq == Some(batch.seq) {
                    current_seq = None;
                    progress = Progress::default();
                }
                continue;
            }
            // Batches waiting behind it may join a batch nothing of which has reached MCAS
            // yet; never one with an upload URL (a done_upload of it may have been taken)
            // or one whose failures may be its own.
            let started = |seq: u64| {
                if current_seq == Some(seq) {
                    progress.target.is_some()
                } else {
                    set_aside.get(&seq).is_some_and(|p| p.target.is_some())
                }
            };
            let batch = if started(batch.seq) || !holds.may_join(batch.seq) {
                batch
            } else {
                let keep_apart: Vec<u64> = set_aside
                    .iter()
                    .filter(|(_, p)| p.target.is_some())
                    .map(|(&seq, _)| seq)
                    .chain(current_seq.filter(|_| progress.target.is_some()))
                    .filter(|&seq| seq != batch.seq)
                    .collect();
                let oldest = batch.path.clone();
                match self
                    .merge_waiting(batch, &keep_apart, &holds, &cancel)
                    .await
                {
                    Some(merged) => {
                        if merged.path != oldest && current_seq == Some(merged.seq) {
                            // A new file under the oldest's number: checked like any other.
                            current_seq = None;
                            progress = Progress::default();
                        }
                        merged
                    }
                    None => continue,
                }
            };
            if current_seq != Some(batch.seq) {
                if let Some(previous) = current_seq {
                    set_aside.insert(previous, std::mem::take(&mut progress));
                }
                set_aside.retain(|&seq, _| holds.is_failing(seq));
                current_seq = Some(batch.seq);
                progress = set_aside.remove(&batch.seq).unwrap_or_default();
                let spool = self.spool.clone();
                let checked = batch.clone();
                let verdict = tokio::task::spawn_blocking(move || spool.verify(&checked))
                    .await
                    .unwrap_or_else(|e| Err(format!("the check failed: {e}")));
                if let Err(problem) = verdict {
                    self.quarantine(&batch, &format!("failed its integrity check: {problem}"))
                        .await;
                    holds.done(batch.seq);
                    current_seq = None;
                    continue;
                }
            }
            let outcome = tokio::select! {
                outcome = self.upload(&batch, &mut progress, &mut holds) => outcome,
                _ = abort.cancelled() => return,
            };
            match outcome {
                Outcome::Delivered | Outcome::Quarantined => {
                    holds.done(batch.seq);
                    current_seq = None;
                    backoff.reset();
                }
                // The next batch is tried right away; this one keeps what it got (its
                // upload URL) for when its hold ends.
                Outcome::Held => {}
                Outcome::Throttled => {
                    self.stats.upload.retries.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Retry(at_least) => {
                    self.stats.upload.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.next(Some(at_least));
                    tracing::info!(seq = batch.seq, wait = %humantime::format_duration(round(wait)), "will try the batch again");
                    wait_or_cancel(wait, &cancel).await;
                }
            }
        }
    }

    /// The oldest sealed batch not held back, after refreshing the spool's figures in the
    /// status. The directory is read on a blocking thread.
    async fn next_batch(&self, holds: &mut held::Holds) -> std::io::Result<Option<SealedBatch>> {
        let spool = self.spool.clone();
        let (ready, quarantined, undeleted) = tokio::task::spawn_blocking(move || {
            let ready = spool.scan_ready()?;
            // Counted in the directory, so that batches quarantined by earlier runs show too.
            let quarantined = spool.quarantined()?;
            Ok::<_, std::io::Error>((ready, quarantined, spool.undeleted()))
        })
        .await
        .map_err(std::io::Error::other)??;
        holds.retain(|seq| ready.iter().any(|b| b.seq == seq));
        let spool = &self.stats.spool;
        spool.batches.store(ready.len() as u64, Ordering::Relaxed);
        spool
            .bytes
            .store(ready.iter().map(|b| b.gzip_bytes).sum(), Ordering::Relaxed);
        spool.quarantined.store(quarantined, Ordering::Relaxed);
        spool
            .delivered_undeleted
            .store(undeleted, Ordering::Relaxed);
        let (held, why) = holds.summary();
        spool.held.store(held, Ordering::Relaxed);
        *spool.held_why.lock().unwrap() = why;
        match ready.first() {
            Some(oldest) => spool.oldest.set(oldest.sealed_at),
            None => spool.oldest.clear(),
        }
        Ok(ready.into_iter().find(|b| !holds.is_held_now(b.seq)))
    }

    /// The name the file gets in MCAS: the appliance, the seal time and the sequence.
    fn file_name(&self, batch: &SealedBatch) -> String {
        let sealed = rfc3339(batch.sealed_at).replace([':', '-'], "");
        format!("nss-{}-{sealed}-{}.log.gz", self.host, batch.seq)
    }

    /// One attempt at the batch, resuming after the last step that succeeded.
    async fn upload(
        &self,
        batch: &SealedBatch,
        progress: &mut Progress,
        holds: &mut held::Holds,
    ) -> Outcome {
        match self.steps(batch, progress).await {
            Ok(()) => {
                self.delivered(batch).await;
                *progress = Progress::default();
                Outcome::Delivered
            }
            Err(ApiError::Rejected {
                step: Step::DoneUpload,
                status,
                body,
            }) if progress.done_unanswered && !about_configuration(&body) => {
                // The first done_upload reached MCAS: the file was taken then.
                tracing::warn!(seq = batch.seq, status, body, "MCAS refused a repeated done_upload after the first went unanswered: the batch was delivered by the first one");
                self.delivered(batch).await;
                *progress = Progress::default();
                Outcome::Delivered
            }
            Err(error) => self.failed(batch, progress, holds, error).await,
        }
    }

    /// Counts a batch MCAS accepted and removes it from the spool; should the removal
    /// fail, the spool keeps it as delivered (never sent again) and retries the removal.
    async fn delivered(&self, batch: &SealedBatch) {
        let spool = self.spool.clone();
        let removed = batch.clone();
        let removal = tokio::task::spawn_blocking(move || spool.delivered(&removed))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(error) = removal {
            tracing::error!(seq = batch.seq, file = %batch.path.display(), %error, "delivered, but cannot remove the batch from the spool: it is not sent again, and its removal is retried");
            self.stats
                .spool
                .delivered_undeleted
                .store(self.spool.undeleted(), Ordering::Relaxed);
        }
        let upload = &self.stats.upload;
        upload.batches.fetch_add(1, Ordering::Relaxed);
        upload.records.fetch_add(batch.records, Ordering::Relaxed);
        upload
            .bytes_raw
            .fetch_add(batch.raw_bytes, Ordering::Relaxed);
        upload
            .bytes_gzip
            .fetch_add(batch.gzip_bytes, Ordering::Relaxed);
        upload.last_success.touch();
        self.stats
            .latency
            .delivered(batch.seq, batch.last_seq(), batch.records, batch.sealed_at);
        *upload.last_error.lock().unwrap() = None;
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
        let spool = self.spool.clone();
        let (path, why) = (batch.path.clone(), reason.to_string());
        let moved = tokio::task::spawn_blocking(move || spool.quarantine(&path, &why))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match moved {
            Ok(path) => {
                tracing::error!(seq = batch.seq, file = %path.display(), reason, "the batch is kept in quarantine and will not be uploaded")
            }
            Err(error) => {
                tracing::error!(seq = batch.seq, reason, %error, "cannot move the batch to quarantine")
            }
        }
    }

    async fn steps(&self, batch: &SealedBatch, progress: &mut Progress) -> Result<(), ApiError> {
        let target = match &progress.target {
            Some(target) => target.clone(),
            None => {
                let source = self.source.get().await;
                let target = self
                    .client
                    .upload_url(&self.file_name(batch), &source.name)
                    .await?;
                progress.target = Some(target.clone());
                progress.blob_sent = false;
                progress.done_unanswered = false;
                target
            }
        };
        if !progress.blob_sent {
            blob::put(
                self.client.http(),
                &target,
                &batch.path,
                batch.gzip_bytes,
                self.settings.timeout,
            )
            .await?;
            progress.blob_sent = true;
        }
        self.client
            .done_upload(&target.url, &self.data_source)
            .await
    }

    async fn failed(
        &self,
        batch: &SealedBatch,
        progress: &mut Progress,
        holds: &mut held::Holds,
        error: ApiError,
    ) -> Outcome {
        self.stats.upload.set_error(format!(
            "{}: {error}",
            rfc3339(std::time::SystemTime::now())
        ));
        match error {
            ApiError::Transient {
                step,
                retry_after,
                throttled,
                ..
            } => {
                tracing::warn!(seq = batch.seq, %error, "upload attempt failed");
                if step == Step::DoneUpload && !throttled {
                    progress.done_unanswered = true;
                }
                // The tenant's throttle is no fault of the batch; the rate limiter holds the
                // next call as long as MCAS asked and lowered this agent's rate.
                if throttled {
                    holds.failed_elsewhere(batch.seq);
                    tracing::info!(
                        seq = batch.seq,
                        "MCAS throttled the call; this agent's rate is lowered"
                    );
                    return Outcome::Throttled;
                } else if holds.failed(batch.seq, error.to_string(), self.settings.backoff_max) {
                    self.stats.upload.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(seq = batch.seq, %error, hold = %humantime::format_duration(self.settings.backoff_max), "the batch keeps failing: it is held back and newer batches go first; it stays in the spool and is tried again later");
                    return Outcome::Held;
                }
                Outcome::Retry(retry_after.unwrap_or_default())
            }
            ApiError::BlobUrlRefused { .. } => {
                tracing::warn!(seq = batch.seq, %error, "upload attempt failed");
                *progress = Progress::default();
                Outcome::Retry(Duration::ZERO)
            }
            ApiError::TokenRefused { .. } | ApiError::NotFound { .. } => {
                holds.failed_elsewhere(batch.seq);
                tracing::error!(%error, "uploads are paused; receiving and spooling go on");
                self.stats.upload.set_paused(error.to_string());
                *progress = Progress::default();
                Outcome::Retry(self.settings.auth_retry)
            }
            // Every batch would be refused alike: a configuration problem, not the file's.
            ApiError::Rejected { .. } if error.is_tenant_wide() => {
                holds.failed_elsewhere(batch.seq);
                let source = self.source.now().map(|c| c.name).unwrap_or_default();
                let fix = data_source::refusal_fix(&error, &self.data_source, &source);
                tracing::error!(%error, fix, "MCAS refused the upload for the whole tenant: uploads are paused, the batch stays in the spool; receiving and spooling go on");
                self.stats.upload.set_error(format!(
                    "{}: {error}; uploads are paused: {fix}",
                    rfc3339(std::time::SystemTime::now())
                ));
                self.stats.upload.set_paused(format!("{error}; {fix}"));
                *progress = Progress::default();
                Outcome::Retry(self.settings.auth_retry)
            }
            ApiError::Rejected { .. } | ApiError::Local(_) => {
                self.quarantine(batch, &error.to_string()).await;
                *progress = Progress::default();
                Outcome::Quarantined
            }
        }
    }
}

/// Whether a refusal's body speaks of the configuration (the data source, the log
/// format) rather than of the upload: such a refusal pauses uploads even after an
/// unanswered done_upload, since the first call would have been refused alike.
fn about_configuration(body: &str) -> bool {
    let body = body.to_ascii_lowercase();
    ["data source", "inputstreamname", "format", "log type"]
        .iter()
        .any(|word| body.contains(word))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_older_than_mcas_takes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(too_old(now - 89 * day, now), None);
        assert_eq!(too_old(now - 90 * day, now), None);
        assert_eq!(too_old(now - 91 * day, now), Some(91 * day));
        // A clock set back: not old.
        assert_eq!(too_old(now + day, now), None);
    }
}
