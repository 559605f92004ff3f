//! Sending ahead: while the writers still fill batches and the calls left are enough for
//! one upload but not for one each, the oldest batch and those sealed after it go to one
//! upload URL as they are sealed, each as Azure blocks of one blob, written meanwhile into
//! one merged file (see [`crate::spool::GrowingMerge`]). Once the writers stop filling
//! (and took no records for half a second), or the calls suffice again for the
//! next batch to go alone, only the last bytes, the
//! block list and done_upload are left: the upload ends moments after the last seal,
//! instead of starting then.
//!
//! Nothing reaches MCAS before done_upload: a failure or a kill on the way leaves the
//! batches in `ready/` as they were (the staged blocks are never committed; Azure drops
//! them), and the merged file, once sealed, goes through done_upload like any batch. A
//! refused block, or a batch that does not read back whole (checked then, and put in
//! quarantine if damaged), sends the oldest batch alone to the URL asked for, so that no
//! call is lost; a stop ends the upload with what was sent.

use tokio_util::sync::CancellationToken;

use super::{Batches, Mcas, Outcome, Uploader, CALLS_PER_UPLOAD};
use crate::mcas::{Provider, UploadTarget};
use crate::spool::{GrowingMerge, MergeFailed, SealedBatch};

/// The most bytes one block holds: what a piece in flight keeps in memory.
const PIECE: usize = 4 << 20;

/// A pause of the feed shorter than this does not end an upload sent ahead: between two
/// chunks of a steady feed, right after a batch sealed by age, no writer may be filling
/// (a tailed file at its end is looked at every [`crate::feed::tail::POLL_INTERVAL`]).
pub(super) const STILL_COMING: std::time::Duration = std::time::Duration::from_millis(500);

/// Azure takes at most 50,000 blocks in a blob; no more batches join past this many.
const MOST_BLOCKS: usize = 40_000;

/// How sending ahead ended.
pub(super) enum Ahead {
    /// This batch is next: its blob is staged (or, at an upload URL that takes no blocks,
    /// it goes up alone as it is).
    Ready(SealedBatch),
    /// upload_url or a block failed for the oldest batch: this outcome is settled for it.
    Failed(Outcome),
    /// Given up (a stop, the spool's disk, a damaged batch): the batches wait as they were,
    /// for the next round.
    Abandoned,
}

impl<M: Mcas> Uploader<M> {
    /// Whether `oldest` may start an upload sent ahead now: merges are on, it carries the
    /// checksum of its bytes, nothing of it reached MCAS, the upload URLs are Azure's (or
    /// not yet known), and one upload's calls may go.
    pub(super) fn may_send_ahead(&self, oldest: &SealedBatch, batches: &Batches) -> bool {
        self.merge.max_raw_bytes > 0
            && batches.urls_take_blocks()
            && oldest.checksum.is_some()
            && batches.joinable(oldest.seq)
            && self.mcas.wait_for_calls(CALLS_PER_UPLOAD).is_zero()
    }

    /// Sends `oldest`, and the batches sealed after it while calls are scarce, ahead to one
    /// upload URL; see the module's documentation.
    pub(super) async fn send_ahead(
        &self,
        oldest: &SealedBatch,
        batches: &mut Batches,
        cancel: &CancellationToken,
        abort: &CancellationToken,
    ) -> Ahead {
        // Checked before a call is spent on it: damaged, it goes to quarantine now.
        if !self.passes_check(oldest, batches).await {
            return Ahead::Abandoned;
        }
        let name = self.file_name(oldest);
        let asked = tokio::select! {
            asked = self.mcas.upload_url(&name) => asked,
            _ = abort.cancelled() => return Ahead::Abandoned,
        };
        let target = match asked {
            Ok(target) => target,
            Err(error) => return Ahead::Failed(self.failed(oldest, batches, error).await),
        };
        batches.usable_url(&target);
        if target.provider != Provider::Azure {
            // Blocks are Azure's: the oldest goes up alone, as it is, to this URL.
            return alone(oldest, target, batches);
        }
        let merge = match self.spool.grow_merge().await {
            Ok(merge) => merge,
            Err(error) => {
                tracing::warn!(%error, "cannot start a merged file in the spool; the oldest batch goes up alone");
                return alone(oldest, target, batches);
            }
        };
        let mut sending = Sending {
            merge: Some(merge),
            blocks: 0,
            target,
        };
        let added = self
            .add_while_scarce(oldest, &mut sending, batches, cancel, abort)
            .await;
        match added {
            Ok(()) if sending.sources() > 0 => self.finish(oldest, sending, batches, abort).await,
            // The oldest itself cannot join: it goes up alone, to the URL asked for.
            Ok(()) => self.fall_back(oldest, sending, batches).await,
            Err(Broke::Stopped | Broke::OldestDamaged) => {
                self.abandon(sending).await;
                Ahead::Abandoned
            }
            // The oldest is intact: it goes up alone, to the URL asked for (no call lost),
            // and the batches after it in their turn.
            Err(Broke::Later) => self.fall_back(oldest, sending, batches).await,
            Err(Broke::Staging(error)) => {
                // The oldest goes alone to that URL, whose failures count as a PUT's do.
                self.fall_back(oldest, sending, batches).await;
                Ahead::Failed(self.failed(oldest, batches, error).await)
            }
        }
    }

    /// Adds the batches from `oldest` on as they are sealed, sending each as it is read,
    /// until the writers stop filling, the calls suffice again, a stop, or the next batch
    /// cannot join.
    async fn add_while_scarce(
        &self,
        oldest: &SealedBatch,
        sending: &mut Sending,
        batches: &mut Batches,
        cancel: &CancellationToken,
        abort: &CancellationToken,
    ) -> Result<(), Broke> {
        let mut next_seq = oldest.seq;
        loop {
            if sending.sources() > 0 {
                // A stop finishes what is sent; calls enough for the done_upload and the
                // next batch's own upload end it too, as no batch need wait any more.
                if cancel.is_cancelled() || self.mcas.wait_for_calls(1 + CALLS_PER_UPLOAD).is_zero()
                {
                    return Ok(());
                }
            }
            // Read before the scan: a writer that stopped filling had sealed its batch.
            let coming = self.spool.more_coming(STILL_COMING);
            let Ok(ready) = self.scan(batches).await else {
                return Err(Broke::Stopped);
            };
            let run = batches.merge_run(&ready, oldest.seq, self.merge.max_raw_bytes);
            if run.first() != Some(oldest) {
                return Err(Broke::Stopped);
            }
            match run.iter().find(|b| b.seq == next_seq).cloned() {
                Some(source) if sending.blocks < MOST_BLOCKS => {
                    if !self.add(&source, sending, oldest, batches, abort).await? {
                        // Sealed by an older version or salvaged: it goes in its own turn.
                        return Ok(());
                    }
                    next_seq = source.last_seq() + 1;
                }
                Some(_) => return Ok(()),
                // Sealed but it cannot join (a limit, a hold): the upload ends here.
                None if ready.iter().any(|b| b.seq == next_seq) => return Ok(()),
                None if !coming => return Ok(()),
                None => {
                    let calls_back = self.mcas.wait_for_calls(1 + CALLS_PER_UPLOAD);
                    tokio::select! {
                        _ = self.spool.wait_sealed() => {}
                        _ = tokio::time::sleep(self.look_again(calls_back)) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
        }
    }

    /// How long to wait for `wait` (the rate limiter's) before looking at the spool
    /// again: no longer than a fifth of [`STILL_COMING`] while no writer fills, since a
    /// writer that starts filling, or a pause that ends, says nothing.
    pub(super) fn look_again(&self, wait: std::time::Duration) -> std::time::Duration {
        if self.spool.filling() {
            wait
        } else {
            wait.min(STILL_COMING / 5)
        }
    }

    /// Reads `source` into the merged file and sends it as it is read. `false` when it
    /// cannot join.
    async fn add(
        &self,
        source: &SealedBatch,
        sending: &mut Sending,
        oldest: &SealedBatch,
        batches: &mut Batches,
        abort: &CancellationToken,
    ) -> Result<bool, Broke> {
        let added = {
            let source = source.clone();
            self.step(sending, move |merge| merge.add(&source)).await
        };
        match added {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(error) => {
                tracing::warn!(seq = source.seq, %error, "cannot read a batch to send it ahead");
                return Err(self.unreadable(source, oldest, batches).await);
            }
        }
        loop {
            let piece = match self.step(sending, |merge| merge.next_piece(PIECE)).await {
                Ok(Some(piece)) => piece,
                Ok(None) => return Ok(true),
                Err(error) => {
                    tracing::warn!(seq = source.seq, %error, "a batch being sent ahead did not read back whole; the upload sent ahead is given up");
                    return Err(self.unreadable(source, oldest, batches).await);
                }
            };
            self.stage(sending, piece, abort).await?;
        }
    }

    /// `source` did not read back whole: checked now, and in quarantine if damaged (a
    /// later round stops before its place instead of meeting it again).
    async fn unreadable(
        &self,
        source: &SealedBatch,
        oldest: &SealedBatch,
        batches: &mut Batches,
    ) -> Broke {
        batches.progress(source.seq).checked = false;
        let damaged = !self.passes_check(source, batches).await;
        if damaged && source.seq == oldest.seq {
            Broke::OldestDamaged
        } else {
            Broke::Later
        }
    }

    /// Gives the merged file up; the oldest goes up alone to the URL asked for.
    async fn fall_back(
        &self,
        oldest: &SealedBatch,
        sending: Sending,
        batches: &mut Batches,
    ) -> Ahead {
        let target = sending.target.clone();
        self.abandon(sending).await;
        alone(oldest, target, batches)
    }

    /// Stages `piece` as the next block.
    async fn stage(
        &self,
        sending: &mut Sending,
        piece: bytes::Bytes,
        abort: &CancellationToken,
    ) -> Result<(), Broke> {
        let staged = tokio::select! {
            staged = self.mcas.stage_block(&sending.target, sending.blocks, piece) => staged,
            _ = abort.cancelled() => return Err(Broke::Stopped),
        };
        match staged {
            Ok(()) => {
                sending.blocks += 1;
                Ok(())
            }
            Err(error) => Err(Broke::Staging(error)),
        }
    }

    /// Ends the merged stream, sends its last bytes, and seals the merged file: the batch
    /// whose blob is staged.
    async fn finish(
        &self,
        oldest: &SealedBatch,
        mut sending: Sending,
        batches: &mut Batches,
        abort: &CancellationToken,
    ) -> Ahead {
        let last = match self.step(&mut sending, |merge| merge.end()).await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(%error, "cannot end a merged file in the spool; its batches wait for their turn");
                self.abandon(sending).await;
                return Ahead::Abandoned;
            }
        };
        match self.stage(&mut sending, last, abort).await {
            Ok(()) => {}
            Err(Broke::Staging(error)) => {
                self.fall_back(oldest, sending, batches).await;
                return Ahead::Failed(self.failed(oldest, batches, error).await);
            }
            Err(_) => {
                self.abandon(sending).await;
                return Ahead::Abandoned;
            }
        }
        let Sending {
            merge,
            blocks,
            target,
        } = sending;
        let merge = merge.expect("the merge is back after each step");
        let sources = merge.sources().len();
        let batch = match self.spool.seal_merge(merge).await {
            Ok(batch) => batch,
            Err(MergeFailed { error, sealed }) => {
                // The merged batch takes the oldest's seq: what the oldest had is not its.
                batches.merged(oldest.seq);
                if sealed {
                    tracing::warn!(%error, "a merge sent ahead failed after its rename into ready/: the merged batch waits for the next scan, its sources are not uploaded");
                    return Ahead::Abandoned;
                }
                tracing::warn!(%error, "cannot seal the merged file sent ahead; the oldest batch goes up alone");
                return alone(oldest, target, batches);
            }
        };
        batches.merged(batch.seq);
        tracing::info!(
            seq = batch.seq,
            batches = sources,
            blocks,
            "sent batches ahead as they were sealed: the blob is staged"
        );
        let progress = batches.progress(batch.seq);
        progress.target = Some(target);
        progress.staged_blocks = Some(blocks);
        // What was staged is what was written, each source checked against its checksum
        // as it was read.
        progress.checked = true;
        Ahead::Ready(batch)
    }

    /// Deletes the merged file; its sources wait as they were.
    async fn abandon(&self, sending: Sending) {
        if let Some(merge) = sending.merge {
            self.spool.abandon_merge(merge).await;
        }
    }

    /// Runs `work` on the merged file off the async runtime.
    async fn step<T: Send + 'static>(
        &self,
        sending: &mut Sending,
        work: impl FnOnce(&mut GrowingMerge) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        // Lent to the blocking thread and back: the merge is not shared.
        let merge = sending
            .merge
            .take()
            .expect("the merge is back after each step");
        let (merge, result) = self.spool.with_merge(merge, work).await;
        sending.merge = Some(merge);
        result
    }
}

/// Why adding batches to an upload sent ahead stopped before its end.
enum Broke {
    /// A stop, or the spool: the batches wait as they were.
    Stopped,
    /// The oldest batch did not read back whole and is in quarantine.
    OldestDamaged,
    /// A later batch did not read back whole (now in quarantine, or readable again).
    Later,
    /// A block was refused.
    Staging(crate::mcas::ApiError),
}

/// The oldest batch goes up alone, as it is, to `target`: the next attempt sends it whole.
fn alone(oldest: &SealedBatch, target: UploadTarget, batches: &mut Batches) -> Ahead {
    batches.progress(oldest.seq).target = Some(target);
    Ahead::Ready(oldest.clone())
}

/// An upload being sent ahead.
struct Sending {
    /// Away only during a step.
    merge: Option<GrowingMerge>,
    /// Blocks staged so far.
    blocks: usize,
    target: UploadTarget,
}

impl Sending {
    /// The batches added so far.
    fn sources(&self) -> usize {
        self.merge.as_ref().map_or(0, |m| m.sources().len())
    }
}
