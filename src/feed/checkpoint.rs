//! Where each tailed file was read to, as stored: one versioned checkpoint file per tailed
//! file, advanced only past records that sit in a sealed batch (the in-flight side is
//! [`super::progress`]), and the claims a sealed batch carries, settled into the
//! checkpoint after a crash. After a crash, reading resumes there and nothing is lost.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable_fs::AtomicWrite;
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
pub(super) fn normalize(mut offset: u64, mut ranges: Vec<(u64, u64)>) -> (u64, Vec<(u64, u64)>) {
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

/// FNV-1a, 64 bits: a stable hash (unlike std's) for fingerprints and file names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::progress::FileProgress;
    use crate::handoff::SealAck;
    use std::sync::Arc;

    fn identity() -> Identity {
        Identity::new(1, 2, b"first bytes")
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
