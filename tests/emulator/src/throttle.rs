//! MCAS's per-tenant limit of API calls: a sliding window of 60 seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window MCAS counts calls over.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// A sliding-window counter of accepted calls.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    limit: Option<u32>,
    accepted: VecDeque<Instant>,
}

impl Throttle {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        Throttle {
            limit,
            accepted: VecDeque::new(),
        }
    }

    /// Changes the limit; calls already accepted stay in the window.
    pub(crate) fn set_limit(&mut self, limit: Option<u32>) {
        self.limit = limit;
    }

    /// Admits a call at `now`, or says how many whole seconds until a slot frees
    /// (the `Retry-After` value, at least 1). Only admitted calls take a slot, so a
    /// client that waits as told gets through.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), u64> {
        while let Some(&first) = self.accepted.front() {
            if now.saturating_duration_since(first) >= WINDOW {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        let Some(limit) = self.limit else {
            self.accepted.push_back(now);
            return Ok(());
        };
        if (self.accepted.len() as u64) < u64::from(limit) {
            self.accepted.push_back(now);
            return Ok(());
        }
        // The oldest call still in the window frees its slot when it leaves it; after
        // the limit was lowered several must leave, so wait for the one that makes room.
        let excess = self.accepted.len() - limit as usize;
        let frees_at = self
            .accepted
            .get(excess)
            .map(|t| *t + WINDOW)
            .unwrap_or(now);
        let wait = frees_at.saturating_duration_since(now);
        Err(wait_secs(wait))
    }
}

/// Whole seconds, rounded up, never 0.
fn wait_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_admits_everything() {
        let mut t = Throttle::new(None);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(t.admit(now).is_ok());
        }
    }

    #[test]
    fn sliding_window() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Some(3));
        assert!(t.admit(t0).is_ok());
        assert!(t.admit(t0 + Duration::from_secs(10)).is_ok());
        assert!(t.admit(t0 + Duration::from_secs(20)).is_ok());
        // Full: the first call leaves the window at t0+60.
        assert_eq!(t.admit(t0 + Duration::from_millis(30_500)), Err(30));
        assert_eq!(t.admit(t0 + Duration::from_secs(59)), Err(1));
        assert_eq!(t.admit(t0 + Duration::from_millis(59_999)), Err(1));
        // Rejected calls took no slot.
        assert!(t.admit(t0 + Duration::from_secs(60)).is_ok());
        // Now the call at t0+10 is the oldest.
        assert_eq!(t.admit(t0 + Duration::from_secs(61)), Err(9));
        assert!(t.admit(t0 + Duration::from_secs(70)).is_ok());
    }

    #[test]
    fn lowering_the_limit() {
        let t0 = Instant::now();
        let mut t = Throttle::new(None);
        for i in 0..5 {
            assert!(t.admit(t0 + Duration::from_secs(i)).is_ok());
        }
        t.set_limit(Some(2));
        // Four of the five must leave to admit one more: the fourth (t0+3) leaves at t0+63.
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Err(53));
        t.set_limit(None);
        assert!(t.admit(t0 + Duration::from_secs(10)).is_ok());
    }
}
