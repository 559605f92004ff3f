//! Log lines about a flood (refused connections, inputs waiting for memory) at most once
//! an interval, so that the flood cannot fill the journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lets one event through an interval; counts those it held back.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// Milliseconds since the epoch of the last event let through; 0 before the first.
    last: AtomicU64,
    held: AtomicU64,
}

impl Throttle {
    /// A throttle that lets one event through every `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event is to be logged, `n` being how many were held back since
    /// the last one that was; `None` when it is only to be counted.
    pub fn pass(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .max(1);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.every.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_an_interval() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.pass(), Some(0));
        assert_eq!(throttle.pass(), None);
        assert_eq!(throttle.pass(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.pass(), Some(2));
    }
}
