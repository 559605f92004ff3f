//! The chunks of each tailed file on their way to sealed batches: the checkpoint of
//! [`super::checkpoint`] moves only past the longest run of sealed chunks from the front,
//! a chunk whose batch failed is read again, and a sealing batch writes claims beside
//! itself so that a crash before the next checkpoint loses nothing and doubles nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checkpoint::{normalize, Checkpoint, CheckpointStore, Claim, Identity, CLAIM_VERSION};
use crate::handoff::{SealAck, SealWatcher};
use crate::versioned;

/// The chunks of one tailed file on their way to sealed batches, in reading order. Batch
/// writers seal out of order; the checkpoint moves only past the longest run of sealed
/// chunks from the front, and records the sealed chunks beyond it. A chunk whose batch
/// failed is handed back to the tail to be read again ([`FileProgress::take_failed`]).
#[derive(Debug)]
pub struct FileProgress {
    store: Arc<CheckpointStore>,
    path: PathBuf,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// The id the next registered chunk gets.
    next_id: u64,
    /// Chunks not yet behind the checkpoint, by id (reading order). Neighbouring sealed
    /// chunks are merged into one, so that a chunk stuck before them cannot make this grow
    /// with every chunk read.
    chunks: BTreeMap<u64, PendingChunk>,
    /// The checkpoint as last saved.
    saved: Option<(Identity, u64)>,
    /// Ranges an earlier run sealed beyond its checkpoint (the tail skips them): kept in
    /// every checkpoint until the offset passes them.
    carried: Option<(Identity, Vec<(u64, u64)>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a batch writer's hands.
    Pending,
    Sealed,
    /// Its batch failed: to be read again.
    Failed,
}

#[derive(Debug)]
struct PendingChunk {
    identity: Identity,
    start: u64,
    end: u64,
    state: ChunkState,
    /// When its batch failed last.
    failed_at: Option<Instant>,
}

/// How long a chunk whose batch failed waits before it is read again: a failing disk is
/// not hammered.
pub const REREAD_AFTER: Duration = Duration::from_secs(1);

/// A chunk whose batch failed, to be read again from the file and sent under its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedChunk {
    pub id: u64,
    pub start: u64,
    pub end: u64,
}

impl FileProgress {
    /// Progress of the file at `path`, saved in `store`.
    pub fn new(store: Arc<CheckpointStore>, path: PathBuf) -> Arc<FileProgress> {
        Arc::new(FileProgress {
            store,
            path,
            pending: Mutex::new(Pending::default()),
        })
    }

    /// Reading resumes at a checkpoint of `identity` whose `sealed` ranges are skipped:
    /// they stay in the checkpoints saved from now on until the offset passes them.
    pub fn resume(&self, identity: Identity, sealed: &[(u64, u64)]) {
        let mut pending = self.pending.lock().unwrap();
        pending.carried = Some((identity, sealed.to_vec()));
    }

    /// Registers the next chunk read: records from byte `start` to `end` of `identity`.
    pub fn register(self: &Arc<Self>, identity: Identity, start: u64, end: u64) -> SealAck {
        let mut pending = self.pending.lock().unwrap();
        let id = pending.next_id;
        pending.next_id += 1;
        pending.chunks.insert(
            id,
            PendingChunk {
                identity,
                start,
                end,
                state: ChunkState::Pending,
                failed_at: None,
            },
        );
        SealAck::new(self.clone(), id)
    }

    /// The chunks of the file `of` accepts whose batch failed, now pending again: the
    /// caller reads each again and sends it with `SealAck::new(progress, id)`.
    pub fn take_failed(&self, of: impl Fn(&Identity) -> bool) -> Vec<FailedChunk> {
        let mut pending = self.pending.lock().unwrap();
        let mut failed = Vec::new();
        for (&id, chunk) in pending.chunks.iter_mut() {
            let due = chunk
                .failed_at
                .is_none_or(|at| at.elapsed() >= REREAD_AFTER);
            if chunk.state == ChunkState::Failed && due && of(&chunk.identity) {
                chunk.state = ChunkState::Pending;
                failed.push(FailedChunk {
                    id,
                    start: chunk.start,
                    end: chunk.end,
                });
            }
        }
        failed
    }

    /// How many chunks wait behind the checkpoint (pending, failed, or sealed runs beyond
    /// an unsealed one).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.pending.lock().unwrap().chunks.len()
    }
}

impl Pending {
    /// Pops the sealed run at the front and merges neighbouring sealed chunks.
    fn compact(&mut self) {
        while let Some(entry) = self.chunks.first_entry() {
            if entry.get().state != ChunkState::Sealed {
                break;
            }
            let done = entry.remove();
            self.saved = Some((done.identity, done.end));
        }
        let mut previous: Option<u64> = None;
        let ids: Vec<u64> = self.chunks.keys().copied().collect();
        for id in ids {
            let chunk = &self.chunks[&id];
            let (identity, start, end, state) =
                (chunk.identity, chunk.start, chunk.end, chunk.state);
            if let Some(prev_id) = previous {
                let prev = self.chunks.get_mut(&prev_id).expect("kept");
                if state == ChunkState::Sealed
                    && prev.state == ChunkState::Sealed
                    && prev.identity == identity
                    && prev.end == start
                {
                    prev.end = end;
                    self.chunks.remove(&id);
                    continue;
                }
            }
            previous = Some(id);
        }
    }

    /// The checkpoint to save: the start of the first chunk not sealed (or the end of the
    /// last one), and the sealed ranges beyond it.
    fn checkpoint(&mut self, path: &Path) -> Option<Checkpoint> {
        let (identity, offset) = match self.chunks.values().next() {
            Some(first)
                if self
                    .saved
                    .is_none_or(|(identity, _)| identity != first.identity) =>
            {
                (first.identity, first.start)
            }
            _ => self.saved?,
        };
        let mut ranges: Vec<(u64, u64)> = self
            .chunks
            .values()
            .filter(|c| c.state == ChunkState::Sealed && c.identity == identity)
            .map(|c| (c.start, c.end))
            .collect();
        if let Some((carried_identity, carried)) = &mut self.carried {
            if *carried_identity == identity {
                carried.retain(|&(_, end)| end > offset);
                ranges.extend(carried.iter().copied());
            }
        }
        let (offset, sealed) = normalize(offset, ranges);
        Some(Checkpoint {
            path: path.to_path_buf(),
            identity,
            offset,
            sealed,
        })
    }
}

impl SealWatcher for FileProgress {
    /// Marks the chunks `ids` sealed and saves the checkpoint once for all of them.
    fn sealed(&self, ids: &[u64]) {
        let mut pending = self.pending.lock().unwrap();
        let mut marked = false;
        for id in ids {
            if let Some(chunk) = pending.chunks.get_mut(id) {
                chunk.state = ChunkState::Sealed;
                marked = true;
            }
        }
        if !marked {
            return;
        }
        pending.compact();
        let Some(checkpoint) = pending.checkpoint(&self.path) else {
            return;
        };
        // Saved under the lock, so that a later checkpoint is never overwritten by an
        // earlier one from another writer.
        if let Err(error) = self.store.save(&checkpoint) {
            tracing::error!(file = %self.path.display(), %error, "cannot save the checkpoint; a restart would read these records again");
        }
        if !checkpoint.sealed.is_empty() {
            crate::crashpoint::here("checkpoint-with-sealed-ranges");
        }
    }

    fn failed(&self, id: u64) {
        let mut pending = self.pending.lock().unwrap();
        if let Some(chunk) = pending.chunks.get_mut(&id) {
            chunk.state = ChunkState::Failed;
            chunk.failed_at = Some(Instant::now());
            tracing::warn!(file = %self.path.display(), start = chunk.start, end = chunk.end, "the batch holding these bytes of the file failed; they are read again");
        }
    }

    fn claims(&self, ids: &[u64]) -> Vec<u8> {
        let pending = self.pending.lock().unwrap();
        let mut claims: Vec<Claim> = Vec::new();
        for chunk in ids.iter().filter_map(|id| pending.chunks.get(id)) {
            match claims.iter_mut().find(|c| c.identity == chunk.identity) {
                Some(claim) => claim.ranges.push((chunk.start, chunk.end)),
                None => claims.push(Claim {
                    path: self.path.clone(),
                    identity: chunk.identity,
                    ranges: vec![(chunk.start, chunk.end)],
                }),
            }
        }
        let mut out = Vec::new();
        for claim in claims {
            if let Ok(line) = versioned::to_vec(CLAIM_VERSION, &claim) {
                out.extend(line);
                out.push(b'\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::new(1, 2, b"first bytes")
    }

    #[test]
    fn advances_only_past_the_sealed_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let path = PathBuf::from("/var/log/feed.log");
        let progress = FileProgress::new(store.clone(), path.clone());
        let a = progress.register(identity(), 0, 100);
        let b = progress.register(identity(), 100, 200);
        let c = progress.register(identity(), 200, 300);
        let d = progress.register(identity(), 300, 400);
        c.sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!(
            (saved.offset, saved.sealed),
            (0, vec![(200, 300)]),
            "sealed out of order"
        );
        a.sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (100, vec![(200, 300)]));
        d.sealed();
        assert_eq!(store.load(&path).unwrap().unwrap().sealed, vec![(200, 400)]);
        b.sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (400, vec![]));
    }

    #[test]
    fn a_batch_acknowledges_its_chunks_of_several_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let (one, two) = (
            PathBuf::from("/var/log/one.log"),
            PathBuf::from("/var/log/two.log"),
        );
        let first = FileProgress::new(store.clone(), one.clone());
        let second = FileProgress::new(store.clone(), two.clone());
        let a = first.register(identity(), 0, 100);
        let b = first.register(identity(), 100, 200);
        let c = second.register(identity(), 0, 50);
        let d = first.register(identity(), 200, 300);
        // b, c and d are in this batch; a is still in another writer's.
        SealAck::all_sealed(vec![b, c, d]);
        let saved = store.load(&one).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (0, vec![(100, 300)]));
        assert_eq!(store.load(&two).unwrap().unwrap().offset, 50);
        SealAck::all_sealed(vec![a]);
        let saved = store.load(&one).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (300, vec![]));
    }

    #[test]
    fn ranges_sealed_by_an_earlier_run_stay_until_the_offset_passes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let path = PathBuf::from("/var/log/feed.log");
        let progress = FileProgress::new(store.clone(), path.clone());
        // Resumed at 100 with 200..300 sealed before the crash: the tail reads 100..200,
        // skips, and reads on from 300.
        progress.resume(identity(), &[(200, 300)]);
        let a = progress.register(identity(), 100, 200);
        let b = progress.register(identity(), 300, 400);
        b.sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (100, vec![(200, 400)]));
        a.sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (400, vec![]));
    }

    #[test]
    fn a_failed_chunk_holds_the_checkpoint_and_is_handed_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let path = PathBuf::from("/var/log/feed.log");
        let progress = FileProgress::new(store.clone(), path.clone());
        let a = progress.register(identity(), 0, 100);
        drop(a); // its batch failed
        for i in 1..50u64 {
            progress
                .register(identity(), i * 100, i * 100 + 100)
                .sealed();
        }
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (0, vec![(100, 5000)]));
        assert!(
            progress.waiting() <= 2,
            "sealed chunks behind it are merged"
        );
        assert!(
            progress.take_failed(|_| true).is_empty(),
            "not before REREAD_AFTER"
        );
        std::thread::sleep(REREAD_AFTER);
        let failed = progress.take_failed(|_| true);
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].start, failed[0].end), (0, 100));
        assert!(progress.take_failed(|_| true).is_empty());
        SealAck::new(progress.clone(), failed[0].id).sealed();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed), (5000, vec![]));
    }

    #[test]
    fn claims_settle_a_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let path = PathBuf::from("/var/log/feed.log");
        let progress = FileProgress::new(store.clone(), path.clone());
        let a = progress.register(identity(), 0, 100);
        let b = progress.register(identity(), 100, 250);
        let claims = SealAck::claims(&[b]);
        let claim = Claim::read(
            Path::new("w0-file-1-2.gz.part.claims"),
            claims.split(|&c| c == b'\n').next().unwrap(),
        )
        .unwrap();
        assert_eq!(claim.ranges, vec![(100, 250)]);
        // The crash came before any checkpoint was saved.
        store.settle(&claim).unwrap();
        let saved = store.load(&path).unwrap().unwrap();
        assert_eq!((saved.offset, saved.sealed.clone()), (0, vec![(100, 250)]));
        store.settle(&claim).unwrap();
        assert_eq!(
            store.load(&path).unwrap().unwrap(),
            saved,
            "settling twice changes nothing"
        );
        drop(a);
    }
}
