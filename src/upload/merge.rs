//! Before an upload: when several sealed batches wait, they go up as one file (two API
//! calls for the whole backlog instead of two each).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Uploader;
use crate::spool::{merge_run, SealedBatch};

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

impl Uploader {
    /// Sets how far merges of waiting batches go.
    pub fn merge_up_to(mut self, limits: MergeLimits) -> Uploader {
        self.merge = limits;
        self
    }

    /// The batch to upload next: `oldest`, or when batches after it wait too, one batch
    /// merging them. A merge that fails is logged and the oldest goes alone. Waits first
    /// until an API call may be made, so that batches sealed meanwhile go along; `None`
    /// when `cancel` fires meanwhile. Batches numbered in `keep_apart`, failing (`holds`)
    /// or damaged stop the run: they go up as they are (or to quarantine).
    pub(super) async fn merge_waiting(
        &self,
        oldest: SealedBatch,
        keep_apart: &[u64],
        holds: &super::held::Holds,
        cancel: &CancellationToken,
    ) -> Option<SealedBatch> {
        tokio::select! {
            _ = self.client.call_available() => {}
            _ = cancel.cancelled() => return None,
        }
        let spool = Arc::clone(&self.spool);
        let ready = match tokio::task::spawn_blocking(move || spool.scan_ready()).await {
            Ok(Ok(mut ready)) => {
                if let Some(stop) = ready
                    .iter()
                    .skip(1)
                    .position(|b| keep_apart.contains(&b.seq) || !holds.may_join(b.seq))
                {
                    ready.truncate(stop + 1);
                }
                ready
            }
            _ => return Some(oldest),
        };
        // A damaged batch must not be joined into a merge (the merge joins deflate streams
        // without reading them, and would carry the damage into every record's file): the
        // run stops before the first batch that fails the whole-batch check, which goes to
        // quarantine when its turn comes.
        let spool = Arc::clone(&self.spool);
        let max_raw_bytes = self.merge.max_raw_bytes;
        let ready = tokio::task::spawn_blocking(move || {
            let mut ready = ready;
            let run = merge_run(&ready, max_raw_bytes).len();
            if run >= 2 {
                if let Some(bad) = ready[..run].iter().position(|b| spool.verify(b).is_err()) {
                    ready.truncate(bad.max(1));
                }
            }
            ready
        })
        .await
        .unwrap_or_default();
        Some(self.merge_now(oldest, ready).await)
    }

    async fn merge_now(&self, oldest: SealedBatch, ready: Vec<SealedBatch>) -> SealedBatch {
        if self.merge.max_raw_bytes == 0
            || ready.first() != Some(&oldest)
            || merge_run(&ready, self.merge.max_raw_bytes).len() < 2
        {
            return oldest;
        }
        let spool = Arc::clone(&self.spool);
        let limits = self.merge;
        let merged = tokio::task::spawn_blocking(move || {
            spool.merge_oldest(&ready, limits.max_raw_bytes, limits.level)
        })
        .await;
        match merged {
            Ok(Ok(Some(merged))) => merged,
            Ok(Ok(None)) => oldest,
            Ok(Err(error)) => {
                tracing::warn!(%error, "merging the waiting batches failed; uploading them one by one");
                oldest
            }
            Err(error) => {
                tracing::error!(%error, "the merge of waiting batches panicked");
                oldest
            }
        }
    }
}
