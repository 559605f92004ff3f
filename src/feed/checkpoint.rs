//! Where each tailed file was read to, kept on disk and advanced only past records that
//! sit in a sealed batch: after a crash, reading resumes there and nothing is lost.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::durable_fs::AtomicWrite;
use crate::handoff::{SealAck, SealWatcher};
use crate::versioned::{self, NewerVersion, ReadError};

/// The version of the checkpoint files this build writes, and the newest it reads.
pub const CHECKPOINT_VERSION: u32 = 1;
/// The version of the claims' lines this build writes, and the newest it reads.
pub const CLAIM_VERSION: u32 = 1;

/// How many leading bytes of a file identify its content (with device and inode), so that
/// a file truncated and written again, or a new file on a reused inode, is told apart.
pub const FINGERPRINT_BYTES: usize = 256;

/// What is being read: the file (device, inode) and the content (its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    /// How many leading bytes the fingerprint covers (fewer than FINGERPRINT_BYTES only
    /// while the file is that short).
    pub fingerprint_len: u64,
    /// FNV-1a of those bytes.
    pub fingerprint: u64,
}

impl Identity {
    /// The identity of a file with `head` as its first bytes.
    pub fn new(dev: u64, ino: u64, head: &[u8]) -> Identity {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        Identity {
            dev,
            ino,
            fingerprint_len: head.len() as u64,
            fingerprint: fnv1a(head),
        }
    }
}

/// One file's checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub identity: Identity,
    /// Every record before this byte is in a sealed batch.
    pub offset: u64,
    /// Byte ranges after `offset` already in sealed batches (batch writers seal out of
    /// order): skipped when reading resumes, so that they are not delivered twice.
    #[serde(default)]
    pub sealed: Vec<(u64, u64)>,
}

/// The checkpoint files, one per tailed path, in `state_dir/checkpoints`.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Opens (creating) the store in `dir`. Fails with a [`NewerVersion`] (see
    /// [`NewerVersion::in_io`]) when a checkpoint there was written by a newer version of
    /// the agent: this one would read its file again from the start and overwrite it.
    pub fn open(dir: &Path) -> io::Result<CheckpointStore> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let file = entry?.path();
            if file.extension().is_none_or(|e| e != "json") {
                continue;
            }
            // A damaged checkpoint is for `load` to set aside; only the version is looked at.
            let Ok(text) = fs::read(&file) else { continue };
            if let Err(ReadError::Newer(newer)) =
                versioned::readable_version(&file, &text, CHECKPOINT_VERSION)
            {
                return Err(newer.into_io());
            }
        }
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
        })
    }

    fn file_for(&self, path: &Path) -> PathBuf {
        let key = fnv1a(path.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{key:016x}.json"))
    }

    /// The checkpoint of `path`. One that cannot be read back is moved aside (logged) and
    /// the file is read from its start: duplicates, never a loss or a crash loop. One of a
    /// newer version is left as it is, and refused.
    pub fn load(&self, path: &Path) -> Result<Option<Checkpoint>, NewerVersion> {
        let file = self.file_for(path);
        let Ok(text) = fs::read(&file) else {
            return Ok(None);
        };
        match versioned::from_slice::<Checkpoint>(&file, &text, CHECKPOINT_VERSION) {
            Ok((_, checkpoint)) if checkpoint.path == path => Ok(Some(checkpoint)),
            Err(ReadError::Newer(newer)) => Err(newer),
            Ok(_) | Err(ReadError::Damaged(_)) => {
                let aside = file.with_extension("json.corrupt");
                tracing::warn!(
                    checkpoint = %file.display(),
                    moved_to = %aside.display(),
                    file = %path.display(),
                    "a checkpoint failed its check; reading the file from its start"
                );
                let _ = fs::rename(&file, &aside);
                Ok(None)
            }
        }
    }

    /// Writes a checkpoint atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, checkpoint: &Checkpoint) -> io::Result<()> {
        let file = self.file_for(&checkpoint.path);
        let json = versioned::to_vec(CHECKPOINT_VERSION, checkpoint).map_err(io::Error::other)?;
        AtomicWrite::durable(0o644).write(&file, &json)
    }
}

/// What a batch holds of one tailed file: written beside the batch while it is sealed,
/// so that recovery can move the checkpoint past it after a crash (see
/// [`CheckpointStore::settle`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub path: PathBuf,
    pub identity: Identity,
    /// Byte ranges of the file, each a run of whole records.
    pub ranges: Vec<(u64, u64)>,
}

impl Claim {
    /// A claim of the claims file `file`, one line of it.
    pub fn read(file: &Path, line: &[u8]) -> Result<Claim, ReadError> {
        versioned::from_slice(file, line, CLAIM_VERSION).map(|(_, claim)| claim)
    }
}

impl CheckpointStore {
    /// Moves the checkpoint of a claim's file past the claim's ranges: the batch holding
    /// them was sealed, but the run was killed before it saved the checkpoint. A
    /// checkpoint already past them, or of another file, is left alone.
    pub fn settle(&self, claim: &Claim) -> io::Result<()> {
        let mut checkpoint = match self.load(&claim.path).map_err(NewerVersion::into_io)? {
            Some(checkpoint) if checkpoint.identity == claim.identity => checkpoint,
            Some(_) => return Ok(()),
            None => Checkpoint {
                path: claim.path.clone(),
                identity: claim.identity,
                offset: 0,
                sealed: Vec::new(),
            },
        };
        let before = checkpoint.clone();
        checkpoint.sealed.extend(claim.ranges.iter().copied());
        let (offset, sealed) = normalize(checkpoint.offset, checkpoint.sealed);
        checkpoint.offset = offset;
        checkpoint.sealed = sealed;
        if checkpoint == before {
            return Ok(());
        }
        self.save(&checkpoint)
    }
}

/// Sorts and merges `ranges`, drops those behind `offset` and moves `offset` past those
/// that start at it.
fn normalize(mut offset: u64, mut ranges: Vec<(u64, u64)>) -> (u64, Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        if end <= offset || start >= end {
            continue;
        }
        if start <= offset {
            offset = end;
            // Earlier merged ranges may now touch the offset too: none can, being sorted.
            continue;
        }
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    // A range merged before the offset moved may now start at or before it.
    while merged.first().is_some_and(|&(start, _)| start <= offset) {
        let (_, end) = merged.remove(0);
        offset = offset.max(end);
    }
    (offset, merged)
}

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

/// FNV-1a, 64 bits: a stable hash (unlike std's) for fingerprints and file names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
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

    #[test]
    fn a_corrupt_checkpoint_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let path = PathBuf::from("/var/log/feed.log");
        store
            .save(&Checkpoint {
                path: path.clone(),
                identity: identity(),
                offset: 7,
                sealed: vec![],
            })
            .unwrap();
        let file = store.file_for(&path);
        fs::write(&file, b"{\"path\": garbage").unwrap();
        assert_eq!(store.load(&path), Ok(None));
        assert!(file.with_extension("json.corrupt").exists());
        assert!(!file.exists());
    }

    #[test]
    fn a_checkpoint_of_a_newer_version_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let path = PathBuf::from("/var/log/feed.log");
        let checkpoint = Checkpoint {
            path: path.clone(),
            identity: identity(),
            offset: 7,
            sealed: vec![(9, 12)],
        };
        store.save(&checkpoint).unwrap();
        let file = store.file_for(&path);
        let written = fs::read(&file).unwrap();
        assert_eq!(versioned::version_of(&written).unwrap(), CHECKPOINT_VERSION);
        // A checkpoint of before the tags reads as version 1.
        fs::write(&file, serde_json::to_vec(&checkpoint).unwrap()).unwrap();
        assert_eq!(store.load(&path), Ok(Some(checkpoint)));

        let newer = br#"{"version": 2, "path": "/var/log/feed.log", "offset": {"bytes": 7}}"#;
        fs::write(&file, newer).unwrap();
        let refused = store.load(&path).unwrap_err();
        assert_eq!((refused.path.as_path(), refused.found), (file.as_path(), 2));
        let error = CheckpointStore::open(dir.path()).unwrap_err();
        assert_eq!(NewerVersion::in_io(&error), Some(&refused));
        let claim = Claim {
            path: path.clone(),
            identity: identity(),
            ranges: vec![(0, 5)],
        };
        assert!(NewerVersion::in_io(&store.settle(&claim).unwrap_err()).is_some());
        assert_eq!(
            fs::read(&file).unwrap(),
            newer,
            "neither moved aside nor rewritten"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn claims_carry_their_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
        let progress = FileProgress::new(store, PathBuf::from("/var/log/feed.log"));
        let claims = SealAck::claims(&[progress.register(identity(), 0, 10)]);
        assert_eq!(versioned::version_of(&claims).unwrap(), CLAIM_VERSION);
        let file = Path::new("w0-file-1-2.gz.part.claims");
        let newer = br#"{"version": 2, "spans": []}"#;
        assert!(matches!(
            Claim::read(file, newer),
            Err(ReadError::Newer(NewerVersion { found: 2, .. }))
        ));
        assert!(matches!(
            Claim::read(file, br#"{"path": 1}"#),
            Err(ReadError::Damaged(_))
        ));
    }

    #[test]
    fn fingerprints_tell_content_apart() {
        assert_ne!(Identity::new(1, 2, b"abc"), Identity::new(1, 2, b"abd"));
        assert_eq!(
            Identity::new(1, 2, &[7; 1000]),
            Identity::new(1, 2, &[7; 300])
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
