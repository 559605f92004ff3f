//! When a batch is sealed: by the quiet-feed limits while the uploader keeps up, by the busy
//! ceiling while sealed batches wait for upload, and always by age.
//!
//! Every upload costs two of the tenant's API calls, whatever its size. While the spool has
//! no sealed batch waiting, batches seal at `batch.max_records` or `batch.max_bytes`, so
//! records leave soon. While one waits (the feed is faster than the uploads, or MCAS is
//! failing), sealing smaller batches would only queue more calls: a batch then grows up to
//! `batch.busy_max_bytes` instead. As soon as the spool is empty again, a batch already
//! past the quiet limits is sealed. `batch.max_age` seals a batch in either case.
//! `busy_max_bytes = max_bytes` keeps every batch within the quiet limits.

use std::time::Duration;

/// What seals a batch, and how hard it is compressed.
#[derive(Debug, Clone)]
pub(super) struct SealRules {
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// Uncompressed bytes a batch may reach while sealed batches wait.
    pub busy_max_bytes: u64,
    pub level: u32,
}

impl SealRules {
    /// Whether batches grow while others wait: the busy ceiling is above the quiet limit.
    fn grows(&self, behind: bool) -> bool {
        behind && self.busy_max_bytes > self.max_bytes
    }

    /// The most uncompressed bytes a batch may hold now.
    pub fn byte_limit(&self, behind: bool) -> u64 {
        if self.grows(behind) {
            self.busy_max_bytes
        } else {
            self.max_bytes
        }
    }

    /// Whether a batch of `records` and `raw_bytes` is full: sealed now, before more is
    /// added. `behind`: sealed batches are waiting for upload.
    pub fn is_full(&self, records: u64, raw_bytes: u64, behind: bool) -> bool {
        if self.grows(behind) {
            raw_bytes >= self.busy_max_bytes
        } else {
            records >= self.max_records || raw_bytes >= self.max_bytes
        }
    }

    /// Whether a record of `size` bytes (with its newline) does not fit beside `raw_bytes`
    /// already in a non-empty batch.
    pub fn overflows(&self, raw_bytes: u64, size: u64, behind: bool) -> bool {
        raw_bytes + size > self.byte_limit(behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> SealRules {
        SealRules {
            max_records: 100_000,
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(300),
            busy_max_bytes: 4 << 30,
            level: 6,
        }
    }

    #[test]
    fn quiet_limits_while_the_uploader_keeps_up() {
        let r = rules();
        assert!(!r.is_full(99_999, 100 << 20, false));
        assert!(r.is_full(100_000, 100 << 20, false));
        assert!(r.is_full(10, 256 << 20, false));
        assert!(r.overflows(256 << 20, 1, false));
    }

    #[test]
    fn the_busy_ceiling_while_batches_wait() {
        let r = rules();
        // Far past the quiet limits, but batches are waiting: the batch grows.
        assert!(!r.is_full(1_000_000, 1 << 30, true));
        assert!(!r.overflows(1 << 30, 1 << 20, true));
        assert!(r.is_full(7_000_000, 4 << 30, true));
        assert!(r.overflows(4 << 30, 1, true));
        // Caught up again: the same batch is full at once.
        assert!(r.is_full(1_000_000, 1 << 30, false));
    }

    #[test]
    fn a_busy_ceiling_at_the_quiet_limit_turns_growth_off() {
        let r = SealRules {
            busy_max_bytes: 256 << 20,
            ..rules()
        };
        assert!(r.is_full(100_000, 1 << 20, true));
        assert!(r.overflows(256 << 20, 1, true));
    }
}
