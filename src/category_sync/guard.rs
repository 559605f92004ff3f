//! A sync answer that would empty the category, or cut it by more than 90% at once, is
//! held back: an empty 200 from a proxy must not unblock every app. The same answer at the
//! next sync is taken as meant (MCAS said it twice), as is one accepted by an
//! administrator (`nss sync-now --accept-empty`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable_fs::AtomicWrite;
use crate::versioned::{self, ReadError};

/// The file in the state directory that remembers the answer held back last.
pub const HELD_FILE: &str = "url-categories.held.json";

/// The version of the file this build writes, and the newest it reads.
pub const HELD_VERSION: u32 = 1;

/// An answer that keeps at most this share of the category's URLs is held back.
const KEPT_AT_LEAST_PERCENT: u64 = 10;

/// The answer held back last: which category, and which URLs (by fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    category: String,
    urls: u64,
    fingerprint: String,
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Keep the old URLs: the answer drops too many, and was not seen before.
    HoldBack,
}

/// The guard of one state directory.
#[derive(Debug, Clone)]
pub struct Guard {
    path: PathBuf,
}

impl Guard {
    /// The guard whose memory is in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Guard {
        Guard {
            path: state_dir.join(HELD_FILE),
        }
    }

    /// Whether `offered` (sorted, deduplicated) may replace the `kept` URLs the category
    /// holds now. A drastic drop is held back the first time and remembered; the same
    /// answer again, or `accept`, applies it. Any other answer forgets what was held. A
    /// memory written by a newer version of the agent is an error (see
    /// [`crate::versioned::NewerVersion::in_io`]), and is left as it is.
    pub fn judge(
        &self,
        category: &str,
        kept: u64,
        offered: &[String],
        accept: bool,
    ) -> std::io::Result<Verdict> {
        let drastic = kept > 0 && (offered.len() as u64) * 100 < kept * KEPT_AT_LEAST_PERCENT;
        let this = Held {
            category: category.to_string(),
            urls: offered.len() as u64,
            fingerprint: fingerprint(offered),
        };
        let held = self.load()?;
        if !drastic || accept || held.as_ref() == Some(&this) {
            self.forget()?;
            return Ok(Verdict::Apply);
        }
        let text = versioned::to_vec_pretty(HELD_VERSION, &this).map_err(std::io::Error::other)?;
        AtomicWrite::durable(0o640).write(&self.path, &text)?;
        Ok(Verdict::HoldBack)
    }

    /// The answer held back last; one that cannot be read is forgotten, as none.
    fn load(&self) -> std::io::Result<Option<Held>> {
        let Ok(text) = std::fs::read(&self.path) else {
            return Ok(None);
        };
        match versioned::from_slice(&self.path, &text, HELD_VERSION) {
            Ok((_, held)) => Ok(Some(held)),
            Err(ReadError::Newer(newer)) => Err(newer.into_io()),
            Err(ReadError::Damaged(_)) => Ok(None),
        }
    }

    fn forget(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A stable fingerprint of a URL list (FNV-1a, 64 bits): the same list gives the same
/// value in every build, so the memory survives an upgrade.
fn fingerprint(urls: &[String]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for url in urls {
        for &byte in url.as_bytes().iter().chain(b"\n") {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("app{i}.example")).collect()
    }

    #[test]
    fn a_drastic_drop_applies_the_second_time_only() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::in_state_dir(dir.path());
        assert_eq!(guard.judge("c", 0, &[], false).unwrap(), Verdict::Apply);
        assert_eq!(
            guard.judge("c", 100, &urls(11), false).unwrap(),
            Verdict::Apply
        );
        assert_eq!(
            guard.judge("c", 100, &[], false).unwrap(),
            Verdict::HoldBack
        );
        assert_eq!(
            guard.judge("c", 100, &urls(9), false).unwrap(),
            Verdict::HoldBack
        );
        // Another answer in between: the empty one is new again.
        assert_eq!(
            guard.judge("c", 100, &[], false).unwrap(),
            Verdict::HoldBack
        );
        assert_eq!(guard.judge("c", 100, &[], false).unwrap(), Verdict::Apply);
        assert!(!dir.path().join(HELD_FILE).exists());
        assert_eq!(guard.judge("c", 100, &[], true).unwrap(), Verdict::Apply);
    }

    #[test]
    fn a_memory_of_a_newer_version_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::in_state_dir(dir.path());
        assert_eq!(
            guard.judge("c", 100, &[], false).unwrap(),
            Verdict::HoldBack
        );
        let file = dir.path().join(HELD_FILE);
        let written = std::fs::read(&file).unwrap();
        assert_eq!(versioned::version_of(&written).unwrap(), HELD_VERSION);
        let newer = br#"{"version": 2, "answers": []}"#;
        std::fs::write(&file, newer).unwrap();
        for accept in [false, true] {
            let error = guard.judge("c", 100, &[], accept).unwrap_err();
            let refused = crate::versioned::NewerVersion::in_io(&error).unwrap();
            assert_eq!(refused.found, 2);
        }
        assert_eq!(std::fs::read(&file).unwrap(), newer);
    }
}
