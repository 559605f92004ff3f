//! The spool as the uploader's async code uses it: each call runs the blocking spool
//! method on a blocking thread, as `tokio::fs` wraps `std::fs`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::spool::{Damage, DoneSent, GrowingMerge, MergeFailed, SealedBatch, Spool, SpoolView};

/// What a scan of the spool found.
#[derive(Debug)]
pub struct Scan {
    /// The sealed batches to upload and the quarantine.
    pub view: SpoolView,
    /// Batches delivered whose removal failed.
    pub undeleted: u64,
}

/// An async handle on the spool.
#[derive(Debug, Clone)]
pub struct SpoolIo(Arc<Spool>);

impl SpoolIo {
    /// A handle on `spool`.
    pub fn new(spool: Arc<Spool>) -> SpoolIo {
        SpoolIo(spool)
    }

    /// Runs `work` on the spool on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Spool) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let spool = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || work(&spool))
            .await
            .map_err(io::Error::other)?
    }

    /// The batches waiting, and the spool's figures.
    pub async fn scan(&self) -> io::Result<Scan> {
        self.blocking(|spool| {
            Ok(Scan {
                view: spool.view()?,
                undeleted: spool.undeleted(),
            })
        })
        .await
    }

    /// Batches delivered whose removal failed (no disk access).
    pub fn undeleted(&self) -> u64 {
        self.0.undeleted()
    }

    /// Waits until a batch is sealed.
    pub async fn wait_sealed(&self) {
        self.0.wait_sealed().await
    }

    /// Whether more records are on their way to a seal (no disk access; see
    /// [`Spool::more_coming`]).
    pub fn more_coming(&self, within: std::time::Duration) -> bool {
        self.0.more_coming(within)
    }

    /// Whether a writer is filling a batch now (no disk access).
    pub fn filling(&self) -> bool {
        self.0.filling()
    }

    /// The check a batch passes before it is uploaded or joined into a merge: the one
    /// place that decides whether a sealed batch is still what was sealed.
    pub async fn verify(&self, batch: &SealedBatch) -> Result<(), Damage> {
        let batch = batch.clone();
        match self.blocking(move |spool| Ok(spool.verify(&batch))).await {
            Ok(verdict) => verdict,
            Err(error) => Err(Damage::Unreadable(error)),
        }
    }

    /// How many of `run`, from its start, pass [`SpoolIo::verify`].
    pub async fn verified_prefix(&self, run: &[SealedBatch]) -> usize {
        for (at, batch) in run.iter().enumerate() {
            if self.verify(batch).await.is_err() {
                return at;
            }
        }
        run.len()
    }

    /// Merges the oldest of `ready` (see [`crate::spool::merge_run`]) into one batch.
    pub async fn merge_oldest(
        &self,
        ready: Vec<SealedBatch>,
        max_raw_bytes: u64,
        level: u32,
    ) -> Result<Option<SealedBatch>, MergeFailed> {
        self.blocking(move |spool| Ok(spool.merge_oldest(&ready, max_raw_bytes, level)))
            .await
            .unwrap_or_else(|error| Err(MergeFailed::before_ready(error)))
    }

    /// Starts a merged file that grows as batches are added (see [`GrowingMerge`]).
    pub async fn grow_merge(&self) -> io::Result<GrowingMerge> {
        self.blocking(|spool| spool.grow_merge()).await
    }

    /// Runs `work` on a growing merge on a blocking thread, and gives the merge back.
    pub async fn with_merge<T: Send + 'static>(
        &self,
        mut merge: GrowingMerge,
        work: impl FnOnce(&mut GrowingMerge) -> io::Result<T> + Send + 'static,
    ) -> (GrowingMerge, io::Result<T>) {
        let (merge, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut merge);
            (merge, result)
        })
        .await
        .expect("a merge's file work does not panic");
        (merge, result)
    }

    /// Seals a growing merge whose stream is ended (see [`GrowingMerge::seal`]).
    pub async fn seal_merge(&self, merge: GrowingMerge) -> Result<SealedBatch, MergeFailed> {
        self.blocking(move |spool| Ok(merge.seal(spool)))
            .await
            .unwrap_or_else(|error| Err(MergeFailed::before_ready(error)))
    }

    /// Deletes a growing merge's file, off the async runtime.
    pub async fn abandon_merge(&self, merge: GrowingMerge) {
        let _ = tokio::task::spawn_blocking(move || merge.abandon()).await;
    }

    /// Removes a batch MCAS accepted (see [`Spool::delivered`]) and its done_upload record.
    pub async fn delivered(&self, batch: &SealedBatch) -> io::Result<()> {
        let batch = batch.clone();
        self.blocking(move |spool| {
            let removed = spool.delivered(&batch);
            spool.forget_done_sent(&batch);
            removed
        })
        .await
    }

    /// Moves a batch to quarantine with its reason, and forgets its done_upload record.
    pub async fn quarantine(&self, batch: &SealedBatch, reason: &str) -> io::Result<PathBuf> {
        let (batch, reason) = (batch.clone(), reason.to_string());
        self.blocking(move |spool| {
            let moved = spool.quarantine(&batch.path, &reason)?;
            spool.forget_done_sent(&batch);
            Ok(moved)
        })
        .await
    }

    /// Records durably that a done_upload of `sent` is about to go for `batch`.
    pub async fn record_done_sent(&self, batch: &SealedBatch, sent: DoneSent) -> io::Result<()> {
        let batch = batch.clone();
        self.blocking(move |spool| spool.record_done_sent(&batch, &sent))
            .await
    }

    /// Forgets the done_upload record of `batch`: MCAS answered that nothing was taken.
    pub async fn forget_done_sent(&self, batch: &SealedBatch) {
        let batch = batch.clone();
        let _ = self
            .blocking(move |spool| {
                spool.forget_done_sent(&batch);
                Ok(())
            })
            .await;
    }

    /// The done_upload records an earlier run left for batches of `ready`.
    pub async fn done_sent(&self, ready: &[SealedBatch]) -> Vec<(u64, DoneSent)> {
        let ready = ready.to_vec();
        self.blocking(move |spool| {
            Ok(ready
                .iter()
                .filter_map(|b| Some((b.seq, spool.done_sent(b)?)))
                .collect())
        })
        .await
        .unwrap_or_default()
    }
}
