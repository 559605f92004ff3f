//! The daemon's pidfile in the runtime directory, held with an exclusive lock for as long
//! as the daemon runs: a second daemon is refused, and `nss start`/`stop` without systemd
//! find the running one by it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The pidfile's name inside the runtime directory.
pub const PID_FILE: &str = "nss-agent.pid";

/// Another daemon holds the pidfile.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    #[error(
        "another nss-agent is running (pid {pid}, pidfile {path}): stop it first (`nss stop`)"
    )]
    Running { pid: u32, path: PathBuf },
    #[error("cannot use the pidfile {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The held pidfile; the lock goes, and the file is removed, when dropped.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidLock {
    /// Takes the pidfile in `dir` and writes this process's pid into it.
    pub fn acquire(dir: &Path) -> Result<PidLock, PidError> {
        let path = dir.join(PID_FILE);
        let io_error = |source| PidError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let pid = read_pid(&mut file).unwrap_or(0);
                return Err(PidError::Running { pid, path });
            }
            Err((_, errno)) => return Err(io_error(errno.into())),
        };
        lock.set_len(0).map_err(io_error)?;
        lock.rewind().map_err(io_error)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
        lock.sync_all().map_err(io_error)?;
        Ok(PidLock { path, _lock: lock })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid of the daemon holding the pidfile in `dir`, if one does.
pub fn running(dir: &Path) -> Option<u32> {
    let file = File::open(dir.join(PID_FILE)).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it: a leftover of a daemon that is gone.
        Ok(_) => None,
        Err((mut file, Errno::EWOULDBLOCK)) => read_pid(&mut file),
        Err(_) => None,
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    // Written by the daemon's account: a pid is a few digits, never more.
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None);
        let lock = PidLock::acquire(dir.path()).unwrap();
        assert_eq!(running(dir.path()), Some(std::process::id()));
        let second = PidLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(second, PidError::Running { pid, .. } if pid == std::process::id()));
        drop(lock);
        assert_eq!(running(dir.path()), None);
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
