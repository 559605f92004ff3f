//! File descriptors: the feed's connections must leave enough of them for the spool,
//! the checkpoints and HTTPS, or a flood of connections stops everything else.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything but feed connections: the batch writers' open files
/// (two each) and scans, checkpoints, tailed files, HTTPS connections to MCAS, ZIA and
/// the blob store, the status file, the control and metrics sockets.
pub const RESERVE: u64 = 256;

/// Raises the soft limit of open files to the hard limit, where allowed (a sandbox may
/// forbid it), and returns the soft limit in force.
pub fn raise_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return u64::MAX;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(error) => {
                tracing::warn!(%error, soft, hard, "cannot raise the limit of open files to its hard limit; the feed's connections are capped to fit the soft one")
            }
        }
    }
    soft
}

/// How many feed connections may be open with `descriptors` allowed: `configured`, or
/// fewer when the limit would not leave [`RESERVE`] for the rest (at least one).
pub fn connection_cap(configured: u64, descriptors: u64) -> u64 {
    configured.min(descriptors.saturating_sub(RESERVE)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve() {
        assert_eq!(connection_cap(64, 1024), 64);
        assert_eq!(connection_cap(2000, 1024), 1024 - RESERVE);
        assert_eq!(connection_cap(64, 100), 1);
    }
}
