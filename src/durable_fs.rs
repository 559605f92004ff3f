//! File-system helpers every stage uses: replacing a file atomically and making a
//! directory's entries durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Makes the entries of a directory (renames, creations, deletions) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How [`AtomicWrite::write`] replaces a file: a temporary file beside it, renamed over it,
/// so that a reader or a crash sees either the old content or the new, never half.
#[derive(Debug, Clone, Copy)]
pub struct AtomicWrite {
    mode: u32,
    owner: Option<(u32, u32)>,
    durable: bool,
}

impl AtomicWrite {
    /// A write that survives a power cut once it returns: the file is fsynced before the
    /// rename and the directory after it. For checkpoints, the configuration, the store.
    pub fn durable(mode: u32) -> AtomicWrite {
        AtomicWrite {
            mode,
            owner: None,
            durable: true,
        }
    }

    /// A write that is atomic for readers but not flushed to disk: for files rewritten
    /// every second that a crash may lose, such as the live status.
    pub fn for_readers(mode: u32) -> AtomicWrite {
        AtomicWrite {
            mode,
            owner: None,
            durable: false,
        }
    }

    /// The new file belongs to `uid`:`gid` (a root command writing a file of the daemon's).
    pub fn owned_by(self, owner: Option<(u32, u32)>) -> AtomicWrite {
        AtomicWrite { owner, ..self }
    }

    /// Replaces `path` with `data`.
    pub fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // The process id keeps two processes (a command beside the daemon) off each
        // other's temporary file; one left by a crashed process of the same id is stale.
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&temp);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .open(&temp)?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            file.write_all(data)?;
            if self.durable {
                file.sync_all()?;
            }
            drop(file);
            fs::rename(&temp, path)?;
            if self.durable {
                sync_dir(&dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_whole_with_its_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        AtomicWrite::durable(0o640).write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the file itself");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("f");
        assert!(AtomicWrite::for_readers(0o600).write(&path, b"x").is_err());
    }
}
