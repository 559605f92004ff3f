//! Where each tailed file was read to, kept on disk and advanced only past records that
//! sit in a sealed batch: after a crash, reading resumes there and nothing is lost.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::fsx::AtomicWrite;
use crate::pipeline::{SealAck, SealWatcher};

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
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> io::Result<CheckpointStore> {
        fs::create_dir_all(dir)?;
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
        })
    }

    fn file_for(&self, path: &Path) -> PathBuf {
        let key = fnv1a(path.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{key:016x}.json"))
    }

    /// The checkpoint of `path`. One that cannot be read back is moved aside (logged) and
    /// the file is read from its start: duplicates, never a loss or a crash loop.
    pub fn load(&self, path: &Path) -> Option<Checkpoint> {
        let file = self.file_for(path);
        let text = fs::read(&file).ok()?;
        match serde_json::from_slice::<Checkpoint>(&text) {
            Ok(checkpoint) if checkpoint.path == path => Some(checkpoint),
            Ok(_) | Err(_) => {
                let aside = file.with_extension("json.corrupt");
                tracing::warn!(
                    checkpoint = %file.display(),
                    moved_to = %aside.display(),
                    file = %path.display(),
                    "a checkpoint failed its check; reading the file from its start"
                );
                let _ = fs::rename(&file, &aside);
                None
            }
        }
    }

    /// Writes a checkpoint atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, checkpoint: &Checkpoint) -> io::Result<()> {
        let file = self.file_for(&checkpoint.path);
        let json = serde_json::to_vec(checkpoint).map_err(io::Error::other)?;
        AtomicWrite::durable(0o644).write(&file, &json)
    }
}

/// The chunks of one tailed file on their way to sealed batches, in reading order. Batch
/// writers seal out of order; the checkpoint moves only past the longest run of sealed
/// chunks from the front.
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
    /// Chunks not yet behind the checkpoint, ids from `next_id - len` up.
    chunks: VecDeque<PendingChunk>,
    /// The checkpoint as last saved.
    saved: Option<(Identity, u64)>,
}

#[derive(Debug)]
struct PendingChunk {
    identity: Identity,
    start: u64,
    end: u64,
    sealed: bool,
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

    /// Registers the next chunk read: records from byte `start` to `end` of `identity`.
    pub fn register(self: &Arc<Self>, identity: Identity, start: u64, end: u64) -> SealAck {
        let mut pending = self.pending.lock().unwrap();
        let id = pending.next_id;
        pending.next_id += 1;
        pending.chunks.push_back(PendingChunk {
            identity,
            start,
            end,
            sealed: false,
        });
        SealAck::new(self.clone(), id)
    }
}

impl SealWatcher for FileProgress {
    /// Marks the chunks `ids` sealed and saves the checkpoint once for all of them.
    fn sealed(&self, ids: &[u64]) {
        let mut pending = self.pending.lock().unwrap();
        let first = pending.next_id - pending.chunks.len() as u64;
        let mut marked = false;
        for &id in ids {
            if let Some(chunk) = id
                .checked_sub(first)
                .and_then(|i| pending.chunks.get_mut(i as usize))
            {
                chunk.sealed = true;
                marked = true;
            }
        }
        if !marked {
            return;
        }
        while pending.chunks.front().is_some_and(|c| c.sealed) {
            let done = pending.chunks.pop_front().expect("checked");
            pending.saved = Some((done.identity, done.end));
        }
        // The checkpoint: the start of the first chunk not sealed (or the end of the last
        // one), and the sealed chunks beyond it.
        let (identity, offset) = match pending.chunks.front() {
            Some(first)
                if pending
                    .saved
                    .is_none_or(|(identity, _)| identity != first.identity) =>
            {
                (first.identity, first.start)
            }
            _ => match pending.saved {
                Some(saved) => saved,
                None => return,
            },
        };
        let mut sealed: Vec<(u64, u64)> = Vec::new();
        for chunk in pending
            .chunks
            .iter()
            .filter(|c| c.sealed && c.identity == identity)
        {
            match sealed.last_mut() {
                Some(last) if last.1 == chunk.start => last.1 = chunk.end,
                _ => sealed.push((chunk.start, chunk.end)),
            }
        }
        // Saved under the lock, so that a later checkpoint is never overwritten by an
        // earlier one from another writer.
        let checkpoint = Checkpoint {
            path: self.path.clone(),
            identity,
            offset,
            sealed,
        };
        if let Err(error) = self.store.save(&checkpoint) {
            tracing::error!(file = %self.path.display(), %error, "cannot save the checkpoint; a restart would read these records again");
        }
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
        let saved = store.load(&path).unwrap();
        assert_eq!(
            (saved.offset, saved.sealed),
            (0, vec![(200, 300)]),
            "sealed out of order"
        );
        a.sealed();
        let saved = store.load(&path).unwrap();
        assert_eq!((saved.offset, saved.sealed), (100, vec![(200, 300)]));
        d.sealed();
        assert_eq!(store.load(&path).unwrap().sealed, vec![(200, 400)]);
        b.sealed();
        let saved = store.load(&path).unwrap();
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
        let saved = store.load(&one).unwrap();
        assert_eq!((saved.offset, saved.sealed), (0, vec![(100, 300)]));
        assert_eq!(store.load(&two).unwrap().offset, 50);
        SealAck::all_sealed(vec![a]);
        let saved = store.load(&one).unwrap();
        assert_eq!((saved.offset, saved.sealed), (300, vec![]));
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
        assert_eq!(store.load(&path), None);
        assert!(file.with_extension("json.corrupt").exists());
        assert!(!file.exists());
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
