//! Finding a tailed file that was rotated while the agent was stopped: the checkpoint's
//! file (same device, inode and first bytes) among the files beside the path, such as
//! `feed.log.1`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, Identity};

/// The file beside `path` that is the checkpoint's: same device and inode, the same first
/// bytes, and at least as long as the checkpoint's offset. Blocks: directory scan.
pub fn find_rotated(path: &Path, checkpoint: &Checkpoint) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let wanted = checkpoint.identity;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let candidate = entry.path();
        if candidate == path {
            continue;
        }
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() || (meta.dev(), meta.ino()) != (wanted.dev, wanted.ino) {
            continue;
        }
        if meta.len() < checkpoint.offset {
            continue;
        }
        let mut head = vec![0u8; wanted.fingerprint_len as usize];
        let same = fs::File::open(&candidate)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && Identity::new(meta.dev(), meta.ino(), &head) == wanted;
        if same {
            return Some(candidate);
        }
    }
    None
}
