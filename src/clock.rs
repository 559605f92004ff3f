//! Time that is measured (watchdog heartbeats, batch ages, backoff, rate-limit windows)
//! comes from the monotonic clock, which a wall-clock step (NTP correcting a wrong clock at
//! boot, a VM resumed) does not move. Wall time is only for what a person reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The process's first look at the monotonic clock: stamps count from it.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A point on the monotonic clock kept in an atomic, so that threads can set and read it
/// without a lock; `None` until first set.
#[derive(Debug, Default)]
pub struct MonoStamp(AtomicU64);

impl MonoStamp {
    /// Sets the stamp to `at`.
    pub fn set(&self, at: Instant) {
        // Nanoseconds since the base, plus one so that 0 stays "never".
        let nanos = at.saturating_duration_since(base()).as_nanos();
        let value = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.0.store(value, Ordering::Relaxed);
    }

    /// Sets the stamp to now.
    pub fn touch(&self) {
        self.set(Instant::now());
    }

    /// The stamp, if it was ever set.
    pub fn get(&self) -> Option<Instant> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            value => base().checked_add(Duration::from_nanos(value - 1)),
        }
    }

    /// How long before `now` the stamp was set; `None` if never.
    pub fn age_at(&self, now: Instant) -> Option<Duration> {
        self.get().map(|at| now.saturating_duration_since(at))
    }
}

/// Whether something that began at `start` is at least `max_age` old at `now`. Checked: a
/// maximum too large for the clock's range is never reached, never a panic.
pub fn reached(start: Instant, max_age: Duration, now: Instant) -> bool {
    start.checked_add(max_age).is_some_and(|due| now >= due)
}

/// What is left of `max_age` since `start`, at `now` (zero once reached; `max_age` itself
/// when the sum passes the clock's range).
pub fn remaining(start: Instant, max_age: Duration, now: Instant) -> Duration {
    start
        .checked_add(max_age)
        .map_or(max_age, |due| due.saturating_duration_since(now))
}

/// Milliseconds since the epoch (0 for a time before it).
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC, to the second, as the status report and the logs write wall times.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_never_is_none() {
        let stamp = MonoStamp::default();
        assert_eq!(stamp.get(), None);
        let now = Instant::now();
        stamp.set(now);
        let got = stamp.get().unwrap();
        assert!(got <= now && now - got < Duration::from_micros(1));
    }

    #[test]
    fn a_huge_max_age_is_never_reached_and_never_panics() {
        let now = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        assert!(!reached(now, huge, now + Duration::from_secs(3600)));
        assert_eq!(remaining(now, huge, now), huge);
        assert!(reached(
            now,
            Duration::from_secs(2),
            now + Duration::from_secs(2)
        ));
    }
}
