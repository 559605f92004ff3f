//! The one rate limiter for every MCAS API call of the process.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// MCAS counts API calls per tenant over a minute.
const WINDOW: Duration = Duration::from_secs(60);

/// At most `per_minute` calls in any 60 seconds (a sliding window, not a token bucket, so
/// that no burst can exceed the tenant's throttle), and none while MCAS asked to wait.
#[derive(Debug)]
pub struct ApiRateLimiter {
    per_minute: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When each of the last `per_minute` calls was let through.
    calls: VecDeque<Instant>,
    /// No call before this: MCAS answered 429 with Retry-After.
    hold_until: Option<Instant>,
}

impl ApiRateLimiter {
    /// A limiter of `per_minute` calls a minute (at least one).
    pub fn new(per_minute: u32) -> ApiRateLimiter {
        ApiRateLimiter {
            per_minute: AtomicUsize::new(per_minute.max(1) as usize),
            state: Mutex::new(State::default()),
        }
    }

    /// Waits until a call may be made, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait_until = {
                let mut state = self.state.lock().unwrap();
                let now = Instant::now();
                while state.calls.front().is_some_and(|&t| t + WINDOW <= now) {
                    state.calls.pop_front();
                }
                match state.hold_until {
                    Some(until) if until > now => until,
                    _ if state.calls.len() < self.per_minute.load(Ordering::Relaxed) => {
                        state.calls.push_back(now);
                        return;
                    }
                    _ => state.calls[0] + WINDOW,
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Changes the limit (a reload); the calls already made still count.
    pub fn set_per_minute(&self, per_minute: u32) {
        self.per_minute
            .store(per_minute.max(1) as usize, Ordering::Relaxed);
    }

    /// Holds every call for `wait`, as MCAS asked with a 429's Retry-After.
    pub fn hold_for(&self, wait: Duration) {
        // Saturating: a server's Retry-After may be absurd; an Instant must not overflow.
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now + WINDOW * 60 * 24);
        let mut state = self.state.lock().unwrap();
        if state.hold_until.is_none_or(|t| t < until) {
            state.hold_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_limit_in_any_minute() {
        let limiter = ApiRateLimiter::new(30);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..75 {
            limiter.acquire().await;
            times.push(Instant::now() - start);
        }
        // Every window of 60 s holds at most 30 calls.
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|&&u| u < t + WINDOW).count();
            assert!(
                in_window <= 30,
                "{in_window} calls within a minute from {t:?}"
            );
        }
        assert_eq!(times[29], Duration::ZERO);
        assert_eq!(times[30], WINDOW);
        assert_eq!(times[74], 2 * WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_call() {
        let limiter = ApiRateLimiter::new(30);
        limiter.acquire().await;
        limiter.hold_for(Duration::from_secs(7));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
    }
}
