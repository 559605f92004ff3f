//! When to try again: exponential backoff with full jitter, and MCAS's Retry-After.

use std::time::{Duration, SystemTime};

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

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// The wait an answer's Retry-After header asks for, if it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Reads a Retry-After header: seconds, or an HTTP date. Capped at an hour, so that a
/// wrong header cannot stall uploads for days.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(3600);
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(CAP))
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

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        let soon = SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("later"), None);
    }
}
