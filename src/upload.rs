//! Upload: each sealed batch, oldest first, to MCAS in three steps (upload_url, the blob
//! PUT, done_upload). A batch leaves the spool only after done_upload answered 2xx.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{McasTarget, UploadSettings};
use crate::mcas::{blob, ApiError, Backoff, McasClient, UploadTarget};
use crate::spool::{SealedBatch, Spool};
use crate::status::{rfc3339, Stats};

mod merge;
pub use merge::MergeLimits;

/// How often the spool is looked at even without news of a sealed batch.
const RESCAN: Duration = Duration::from_secs(5);

/// Uploads sealed batches until cancelled.
pub struct Uploader {
    client: McasClient,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    settings: UploadSettings,
    source: String,
    data_source: String,
    /// Names the files in MCAS: which appliance sent them.
    host: String,
    merge: MergeLimits,
}

/// How far the current batch got: the upload URL (valid for a while, so a failed PUT is
/// retried on the same URL, sparing the tenant's API calls) and whether the blob is there
/// (then only done_upload is repeated).
#[derive(Debug, Default)]
struct Progress {
    target: Option<UploadTarget>,
    blob_sent: bool,
}

/// How one attempt at a batch ended.
enum Outcome {
    Delivered,
    Quarantined,
    /// Try the same batch again after this wait.
    Retry(Duration),
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
            source: target.source.clone(),
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
        while !cancel.is_cancelled() {
            let batch = match self.next_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    tokio::select! {
                        _ = self.spool.wait_sealed() => {}
                        _ = tokio::time::sleep(RESCAN) => {}
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
            // Nothing of this batch has reached MCAS yet: batches waiting behind it may join it.
            let batch = if progress.target.is_none() {
                match self.merge_waiting(batch, &cancel).await {
                    Some(batch) => batch,
                    None => continue,
                }
            } else {
                batch
            };
            if current_seq != Some(batch.seq) {
                current_seq = Some(batch.seq);
                progress = Progress::default();
                if let Err(problem) = self.spool.verify(&batch) {
                    self.quarantine(&batch, &format!("failed its integrity check: {problem}"));
                    continue;
                }
            }
            let outcome = tokio::select! {
                outcome = self.upload(&batch, &mut progress) => outcome,
                _ = abort.cancelled() => return,
            };
            match outcome {
                Outcome::Delivered | Outcome::Quarantined => backoff.reset(),
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

    /// The oldest sealed batch, after refreshing the spool's figures in the status.
    fn next_batch(&self) -> std::io::Result<Option<SealedBatch>> {
        let ready = self.spool.scan_ready()?;
        let spool = &self.stats.spool;
        spool.batches.store(ready.len() as u64, Ordering::Relaxed);
        spool
            .bytes
            .store(ready.iter().map(|b| b.gzip_bytes).sum(), Ordering::Relaxed);
        // Counted in the directory, so that batches quarantined by earlier runs show too.
        spool
            .quarantined
            .store(self.spool.quarantined()?, Ordering::Relaxed);
        match ready.first() {
            Some(oldest) => spool.oldest.set(oldest.sealed_at),
            None => spool.oldest.clear(),
        }
        Ok(ready.into_iter().next())
    }

    /// The name the file gets in MCAS: the appliance, the seal time and the sequence.
    fn file_name(&self, batch: &SealedBatch) -> String {
        let sealed = rfc3339(batch.sealed_at).replace([':', '-'], "");
        format!("nss-{}-{sealed}-{}.log.gz", self.host, batch.seq)
    }

    /// One attempt at the batch, resuming after the last step that succeeded.
    async fn upload(&self, batch: &SealedBatch, progress: &mut Progress) -> Outcome {
        match self.steps(batch, progress).await {
            Ok(()) => {
                if let Err(error) = self.spool.remove(batch) {
                    // MCAS has the batch; it would go again after a restart (one duplicate).
                    tracing::error!(file = %batch.path.display(), %error, "delivered, but cannot delete the batch from the spool");
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
                self.stats.latency.delivered(
                    batch.seq,
                    batch.last_seq(),
                    batch.records,
                    batch.sealed_at,
                );
                *upload.last_error.lock().unwrap() = None;
                tracing::info!(
                    seq = batch.seq,
                    records = batch.records,
                    raw = batch.raw_bytes,
                    gzip = batch.gzip_bytes,
                    "batch delivered to MCAS"
                );
                *progress = Progress::default();
                Outcome::Delivered
            }
            Err(error) => self.failed(batch, progress, error),
        }
    }

    /// Moves a batch that must not be retried to quarantine, saying why in the log and
    /// beside the file.
    fn quarantine(&self, batch: &SealedBatch, reason: &str) {
        match self.spool.quarantine(&batch.path, reason) {
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
                let target = self
                    .client
                    .upload_url(&self.file_name(batch), &self.source)
                    .await?;
                progress.target = Some(target.clone());
                progress.blob_sent = false;
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

    fn failed(&self, batch: &SealedBatch, progress: &mut Progress, error: ApiError) -> Outcome {
        self.stats.upload.set_error(format!(
            "{}: {error}",
            rfc3339(std::time::SystemTime::now())
        ));
        match error {
            ApiError::Transient {
                throttled: true, ..
            } => {
                tracing::info!(seq = batch.seq, %error, "MCAS throttled the call; this agent's rate is lowered");
                Outcome::Throttled
            }
            ApiError::Transient { retry_after, .. } => {
                tracing::warn!(seq = batch.seq, %error, "upload attempt failed");
                Outcome::Retry(retry_after.unwrap_or_default())
            }
            ApiError::BlobUrlRefused { .. } => {
                tracing::warn!(seq = batch.seq, %error, "upload attempt failed");
                *progress = Progress::default();
                Outcome::Retry(Duration::ZERO)
            }
            ApiError::TokenRefused { .. } | ApiError::NotFound { .. } => {
                tracing::error!(%error, "uploads are paused; receiving and spooling go on");
                *progress = Progress::default();
                Outcome::Retry(self.settings.auth_retry)
            }
            ApiError::Rejected { .. } | ApiError::Local(_) => {
                self.quarantine(batch, &error.to_string());
                *progress = Progress::default();
                Outcome::Quarantined
            }
        }
    }
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
