//! Trying a remote call again, the same way for MCAS and ZIA: what may be tried again is
//! decided apart from how. Each service sorts its failures into a [`Retry`] with a pure
//! classifier (`ApiError::retry` for MCAS, `zia::retry_policy::classify` for ZIA), tested
//! by a table; the loop that makes the calls decides the wait ([`Backoff`], the upload
//! limiter, the outage cadence) and how many tries it allows.

use std::time::Duration;

/// What a failed call calls for, whatever the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The service's rate limit refused the call (429): it is well, only busy. Try again
    /// after the wait it asked for, if any; no backoff grows.
    Throttled { asked: Option<Duration> },
    /// The service failed for now (a 5xx, a timeout, a connection refused, load shed):
    /// try again after a growing wait, at least the one it asked for.
    Transient { asked: Option<Duration> },
    /// Someone else holds what the call needs (ZIA's edit lock): try again after a fixed
    /// wait.
    Busy,
    /// The same request would fail the same way: do not send it again.
    Never,
}

impl Retry {
    /// The wait the service asked for, if it named one.
    pub fn asked(self) -> Option<Duration> {
        match self {
            Retry::Throttled { asked } | Retry::Transient { asked } => asked,
            Retry::Busy | Retry::Never => None,
        }
    }
}

/// Exponential backoff with full jitter: the n-th wait is uniform in
/// [0, min(max, min * 2^n)], so that agents failing together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Backoff starting at `min`, never longer than `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            attempt: 0,
        }
    }

    /// The wait before the next attempt; at least `at_least` (a server's Retry-After).
    pub fn next(&mut self, at_least: Option<Duration>) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jittered = ceiling.mul_f64(fastrand::f64());
        // Never retry at once: a floor of a tenth of the first wait.
        let jittered = jittered.max(self.min / 10);
        match at_least {
            Some(wait) => jittered.max(wait),
            None => jittered,
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for attempt in 0..20 {
            let wait = backoff.next(None);
            let ceiling = Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60));
            assert!(wait <= ceiling, "attempt {attempt}: {wait:?} > {ceiling:?}");
            assert!(wait >= Duration::from_millis(100));
        }
        backoff.reset();
        assert!(backoff.next(None) <= Duration::from_secs(1));
    }

    #[test]
    fn honours_retry_after() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(backoff.next(Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
