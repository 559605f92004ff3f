//! The one rate limiter for every MCAS API call of the process, and this agent's own rate
//! within the tenant's throttle.
//!
//! MCAS allows 30 calls a minute per tenant, for every agent of the tenant together. The
//! limiter starts at `upload.api_calls_per_minute` and adapts (additive increase,
//! multiplicative decrease): each 429 says that others use the tenant too, and halves this
//! agent's rate, never below `upload.min_api_calls_per_minute`; each call that succeeds
//! adds 1/rate, so the rate grows back by about one call a minute per minute of calls.
//!
//! Calls are also spread over the minute: a few may go back to back ([`BURST`]), then one
//! every 61/rate seconds (about 2 s at 30 a minute). Without that, a fast feed would spend the
//! minute's calls on the first seconds' batches and every later batch would wait for the
//! window; spread out, each upload (two calls, one every 4 s at 30 a minute) takes along
//! every batch sealed since the last one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// MCAS counts API calls per tenant over a minute. The limiter counts over a second more,
/// so that a call's travel time cannot put two calls in MCAS's window that were a minute
/// apart here.
const WINDOW: Duration = Duration::from_secs(61);

/// Calls that may go back to back before the spacing applies: an upload's two, twice.
pub const BURST: f64 = 4.0;

/// After a decrease, further 429s until this long after the wait MCAS asked for are answers
/// to the same congestion (calls made at the old rate, or every agent of the tenant coming
/// back at once when the wait ends): they do not halve the rate again.
const DECREASE_QUIET: Duration = Duration::from_secs(10);

/// At most `rate` calls in any window (a sliding window, not a token bucket, so that no
/// burst can exceed the tenant's throttle), and none while MCAS asked to wait.
#[derive(Debug)]
pub struct ApiRateLimiter {
    state: Mutex<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// The most calls a minute (`upload.api_calls_per_minute`).
    ceiling: f64,
    /// The fewest a 429 brings the rate down to (`upload.min_api_calls_per_minute`).
    floor: f64,
    /// Calls a minute allowed now, between floor and ceiling.
    rate: f64,
    /// When each of the calls in the window was let through.
    calls: VecDeque<Instant>,
    /// No call before this: MCAS answered 429 with Retry-After.
    hold_until: Option<Instant>,
    /// Until when a 429 does not halve the rate again.
    decrease_quiet_until: Option<Instant>,
    /// Calls that may go now without waiting for the spacing (a token bucket of
    /// [`BURST`], refilled at the rate), and when it was last refilled.
    tokens: f64,
    refilled: Instant,
}

impl State {
    /// Counts a call now if one may be made (`take`), or says until when to wait.
    fn try_take(&mut self, take: bool) -> Result<(), Instant> {
        self.try_take_at(take, Instant::now())
    }

    /// Forgets the calls that left the window by `now`.
    fn forget_old_calls(&mut self, now: Instant) {
        while self.calls.front().is_some_and(|&t| t + WINDOW <= now) {
            self.calls.pop_front();
        }
    }

    /// When the window holds fewer than `allowed` calls again, if it holds that many now
    /// (the old calls forgotten): the leaving of the call that makes room.
    fn window_frees_at(&self, allowed: usize) -> Option<Instant> {
        let len = self.calls.len();
        (len >= allowed).then(|| self.calls[len - allowed] + WINDOW)
    }

    /// [`State::try_take`] as at `now`.
    fn try_take_at(&mut self, take: bool, now: Instant) -> Result<(), Instant> {
        self.forget_old_calls(now);
        let per_second = self.rate / WINDOW.as_secs_f64();
        self.tokens = (self.tokens + (now - self.refilled).as_secs_f64() * per_second).min(BURST);
        self.refilled = now;
        let allowed = self.rate as usize;
        if let Some(until) = self.hold_until.filter(|&until| until > now) {
            return Err(until);
        }
        // After a decrease more calls than allowed may be in the window: wait for the one
        // whose leaving makes room.
        if let Some(frees) = self.window_frees_at(allowed) {
            return Err(frees);
        }
        // A hair under one counts as one: the time the wait computes refills it only up to
        // rounding.
        if self.tokens < 1.0 - 1e-6 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / per_second);
            return Err(now + wait.max(Duration::from_millis(1)));
        }
        if take {
            self.tokens = (self.tokens - 1.0).max(0.0);
            self.calls.push_back(now);
        }
        Ok(())
    }
}

impl ApiRateLimiter {
    /// A limiter of a fixed `per_minute` calls a minute (at least one).
    pub fn new(per_minute: u32) -> ApiRateLimiter {
        ApiRateLimiter::adaptive(per_minute, per_minute)
    }

    /// A limiter starting at `per_minute` calls a minute, halved on each 429 down to
    /// `floor` (at most `per_minute`), growing back while calls succeed.
    pub fn adaptive(per_minute: u32, floor: u32) -> ApiRateLimiter {
        let ceiling = f64::from(per_minute.max(1));
        ApiRateLimiter {
            state: Mutex::new(State {
                ceiling,
                floor: f64::from(floor.max(1)).min(ceiling),
                rate: ceiling,
                calls: VecDeque::new(),
                hold_until: None,
                decrease_quiet_until: None,
                tokens: BURST,
                refilled: Instant::now(),
            }),
        }
    }

    /// Waits until a call may be made, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait_until = match self.state.lock().unwrap().try_take(true) {
                Ok(()) => return,
                Err(until) => until,
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Waits until a call could be made, without making it: the uploader gathers the
    /// batches to send only then, so that those sealed meanwhile go along.
    pub async fn ready(&self) {
        loop {
            let wait_until = match self.state.lock().unwrap().try_take(false) {
                Ok(()) => return,
                Err(until) => until,
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// How long until `calls` more calls could all have gone, one after the other as the
    /// limiter lets them, without making any: the uploader merges the batches waiting
    /// when uploading them one by one would wait long for the limiter.
    pub fn wait_for(&self, calls: u32) -> Duration {
        let mut state = self.state.lock().unwrap().clone();
        let start = Instant::now();
        let mut at = start;
        for _ in 0..calls {
            loop {
                match state.try_take_at(true, at) {
                    Ok(()) => break,
                    Err(until) => at = until.max(at + Duration::from_millis(1)),
                }
            }
        }
        at - start
    }

    /// The most calls that ever go back to back: the burst, or the rate a minute when
    /// lower (at least one).
    pub fn most_back_to_back(&self) -> u32 {
        let state = self.state.lock().unwrap();
        (BURST.min(state.rate).floor() as u32).max(1)
    }

    /// How long until fewer than `share` calls are in the window (61 s), without making
    /// one: while MCAS fails for every batch, the uploader's attempts keep to `share`
    /// calls a minute, counting the calls of every kind the process made.
    pub fn wait_for_share(&self, share: u32) -> Duration {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state.forget_old_calls(now);
        state
            .window_frees_at(share.max(1) as usize)
            .map_or(Duration::ZERO, |frees| frees.saturating_duration_since(now))
    }

    /// Changes the limits (a reload): the calls already made still count, and the rate
    /// this agent has adapted to stays within the new limits.
    pub fn set_limits(&self, per_minute: u32, floor: u32) {
        let mut state = self.state.lock().unwrap();
        state.ceiling = f64::from(per_minute.max(1));
        state.floor = f64::from(floor.max(1)).min(state.ceiling);
        state.rate = state.rate.clamp(state.floor, state.ceiling);
    }

    /// Holds every call for `wait`, as MCAS asked with a 429's Retry-After.
    pub fn hold_for(&self, wait: Duration) {
        // Checked: a server's Retry-After may be absurd; an Instant must not overflow.
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now + WINDOW * 60 * 24);
        let mut state = self.state.lock().unwrap();
        if state.hold_until.is_none_or(|t| t < until) {
            state.hold_until = Some(until);
        }
    }

    /// MCAS answered 429: the tenant is shared; halve this agent's rate (once per burst of
    /// 429s), not below the floor.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        if state.decrease_quiet_until.is_some_and(|t| now < t) {
            return;
        }
        let hold_end = state.hold_until.map_or(now, |t| t.max(now));
        state.decrease_quiet_until = Some(hold_end + DECREASE_QUIET);
        state.rate = (state.rate / 2.0).max(state.floor);
    }

    /// A call went through (MCAS did not throttle it): grow the rate by 1/rate, about one
    /// call a minute for each minute's worth of calls.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap();
        state.rate = (state.rate + 1.0 / state.rate).min(state.ceiling);
    }

    /// Calls a minute allowed now.
    pub fn rate(&self) -> f64 {
        self.state.lock().unwrap().rate
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
        // Four back to back, then one every 61/30 s, the burst made up for once.
        let spacing = WINDOW / 30;
        assert_eq!(times[3], Duration::ZERO);
        for pair in times[3..30].windows(2) {
            assert!(pair[1] - pair[0] >= spacing - Duration::from_millis(1));
        }
        assert!(times[74] <= WINDOW * 5 / 2, "{:?}", times[74]);
    }

    #[tokio::test(start_paused = true)]
    async fn ready_waits_for_a_call_without_making_it() {
        let limiter = ApiRateLimiter::new(30);
        for _ in 0..4 {
            limiter.acquire().await;
        }
        let start = Instant::now();
        limiter.ready().await;
        let waited = Instant::now() - start;
        assert!(
            waited >= WINDOW / 30 - Duration::from_millis(1),
            "{waited:?}"
        );
        limiter.ready().await;
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, waited, "still there");
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_for_one_call_until_the_burst_is_spent() {
        let limiter = ApiRateLimiter::new(30);
        for _ in 0..4 {
            assert!(limiter.wait_for(1).is_zero());
            limiter.acquire().await;
        }
        assert!(!limiter.wait_for(1).is_zero(), "the burst is spent");
        tokio::time::advance(WINDOW / 30).await;
        assert!(limiter.wait_for(1).is_zero());
    }

    #[tokio::test(start_paused = true)]
    async fn the_share_counts_every_call_in_the_window() {
        let limiter = ApiRateLimiter::new(30);
        assert!(limiter.wait_for_share(4).is_zero());
        for _ in 0..3 {
            limiter.acquire().await;
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert!(
            limiter.wait_for_share(4).is_zero(),
            "3 calls: below a share of 4"
        );
        assert_eq!(limiter.wait_for_share(3), Duration::from_secs(31));
        limiter.acquire().await;
        assert_eq!(limiter.wait_for_share(4), Duration::from_secs(31));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            limiter.wait_for_share(4).is_zero(),
            "the first left the window"
        );
        assert_eq!(limiter.wait_for_share(1), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_says_how_long_calls_would_wait_without_making_them() {
        let limiter = ApiRateLimiter::new(30);
        assert_eq!(limiter.wait_for(4), Duration::ZERO, "the burst");
        let spacing = WINDOW / 30;
        let six = limiter.wait_for(6);
        assert!(
            six >= spacing * 2 - Duration::from_millis(5)
                && six <= spacing * 2 + Duration::from_millis(5),
            "two beyond the burst: two spacings, {six:?}"
        );
        assert_eq!(limiter.wait_for(4), Duration::ZERO, "asking took none");
        limiter.hold_for(Duration::from_secs(5));
        assert!(
            limiter.wait_for(1) >= Duration::from_secs(5),
            "MCAS asked to wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_and_successes_bring_it_back() {
        let limiter = ApiRateLimiter::adaptive(30, 4);
        assert_eq!(limiter.rate(), 30.0);
        limiter.throttled();
        assert_eq!(limiter.rate(), 15.0);
        // The answers to calls made at the old rate do not halve it again.
        limiter.throttled();
        assert_eq!(limiter.rate(), 15.0);
        tokio::time::advance(DECREASE_QUIET).await;
        for _ in 0..3 {
            limiter.throttled();
            tokio::time::advance(DECREASE_QUIET).await;
        }
        assert_eq!(limiter.rate(), 4.0, "never below the floor");
        // A 429 asking to wait 46 s: the 429s right after that wait are the same congestion.
        let limiter2 = ApiRateLimiter::adaptive(30, 4);
        limiter2.hold_for(Duration::from_secs(46));
        limiter2.throttled();
        tokio::time::advance(Duration::from_secs(47)).await;
        limiter2.throttled();
        assert_eq!(limiter2.rate(), 15.0);
        tokio::time::advance(DECREASE_QUIET).await;
        limiter2.throttled();
        assert_eq!(limiter2.rate(), 7.5);
        // From 4 to 5 takes about 4 successes, to 30 about (30² - 4²) / 2.
        let mut successes = 0;
        while limiter.rate() < 30.0 {
            limiter.succeeded();
            successes += 1;
        }
        assert!((430..=460).contains(&successes), "{successes}");
        assert_eq!(limiter.rate(), 30.0, "never above the ceiling");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lowered_rate_holds_calls_already_in_the_window() {
        let limiter = ApiRateLimiter::adaptive(30, 4);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..20 {
            limiter.acquire().await;
            times.push(Instant::now() - start);
        }
        limiter.throttled();
        // 20 calls in the window, 15 allowed: the sixth call must leave first.
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, times[5] + WINDOW);
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

    #[test]
    fn a_reload_changes_the_limits_and_keeps_the_adapted_rate_within_them() {
        let limiter = ApiRateLimiter::adaptive(30, 4);
        limiter.throttled();
        assert_eq!(limiter.rate(), 15.0);
        // A larger ceiling: the rate this agent adapted to stays (no fresh 30 a minute).
        limiter.set_limits(60, 4);
        assert_eq!(limiter.rate(), 15.0);
        // A smaller one caps it; a higher floor lifts it.
        limiter.set_limits(10, 4);
        assert_eq!(limiter.rate(), 10.0);
        limiter.set_limits(30, 12);
        assert_eq!(limiter.rate(), 12.0);
    }
}
