//! ZIA's API rate limits: writes 1 a second and 400 an hour, reads 2 a second and 1,000
//! an hour, activations 10 a minute and 40 an hour, DELETE ("heavy") 1 a minute and 4 an
//! hour.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which limits a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read,
    Write,
    Activate,
    /// DELETE, which ZIA counts as heavy.
    Delete,
}

/// One limit: `max` calls in any `period`, named as ZIA names it (`1/SECOND`).
#[derive(Debug, Clone, Copy)]
struct Limit {
    max: usize,
    period: Duration,
    name: &'static str,
}

const HOUR: Duration = Duration::from_secs(3600);

fn limits(class: Class) -> [Limit; 2] {
    match class {
        Class::Read => [
            Limit {
                max: 2,
                period: Duration::from_secs(1),
                name: "2/SECOND",
            },
            Limit {
                max: 1000,
                period: HOUR,
                name: "1000/HOUR",
            },
        ],
        Class::Write => [
            Limit {
                max: 1,
                period: Duration::from_secs(1),
                name: "1/SECOND",
            },
            Limit {
                max: 400,
                period: HOUR,
                name: "400/HOUR",
            },
        ],
        Class::Activate => [
            Limit {
                max: 10,
                period: Duration::from_secs(60),
                name: "10/MINUTE",
            },
            Limit {
                max: 40,
                period: HOUR,
                name: "40/HOUR",
            },
        ],
        Class::Delete => [
            Limit {
                max: 1,
                period: Duration::from_secs(60),
                name: "1/MINUTE",
            },
            Limit {
                max: 4,
                period: HOUR,
                name: "4/HOUR",
            },
        ],
    }
}

/// A refused call: which limit, and how long until a call would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: &'static str,
    pub wait: Duration,
}

/// The accepted calls of the last hour, by class.
#[derive(Debug, Default)]
pub struct RateLimits {
    reads: VecDeque<Instant>,
    writes: VecDeque<Instant>,
    activations: VecDeque<Instant>,
    deletes: VecDeque<Instant>,
}

impl RateLimits {
    /// Counts a call of `class` made now, or tells which limit it would pass.
    pub fn admit(&mut self, class: Class, now: Instant) -> Result<(), Exceeded> {
        let calls = match class {
            Class::Read => &mut self.reads,
            Class::Write => &mut self.writes,
            Class::Activate => &mut self.activations,
            Class::Delete => &mut self.deletes,
        };
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            calls.pop_front();
        }
        for limit in limits(class) {
            let in_window: Vec<&Instant> = calls
                .iter()
                .filter(|t| now.duration_since(**t) < limit.period)
                .collect();
            if in_window.len() >= limit.max {
                let oldest = *in_window[in_window.len() - limit.max];
                let wait = limit.period - now.duration_since(oldest);
                return Err(Exceeded {
                    limit: limit.name,
                    wait,
                });
            }
        }
        calls.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_a_second_two_reads() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        assert!(limits.admit(Class::Write, t0).is_ok());
        let refused = limits
            .admit(Class::Write, t0 + Duration::from_millis(900))
            .unwrap_err();
        assert_eq!(refused.limit, "1/SECOND");
        assert_eq!(refused.wait, Duration::from_millis(100));
        assert!(limits
            .admit(Class::Write, t0 + Duration::from_secs(1))
            .is_ok());
        assert!(limits.admit(Class::Read, t0).is_ok());
        assert!(limits.admit(Class::Read, t0).is_ok());
        assert!(limits.admit(Class::Read, t0).is_err());
    }

    #[test]
    fn deletes_one_a_minute_four_an_hour() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(limits.admit(Class::Delete, t0).is_ok());
        let refused = limits
            .admit(Class::Delete, t0 + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(refused.limit, "1/MINUTE");
        assert_eq!(refused.wait, Duration::from_secs(30));
        for i in 1..4 {
            assert!(limits.admit(Class::Delete, t0 + minute * i).is_ok());
        }
        let refused = limits.admit(Class::Delete, t0 + minute * 4).unwrap_err();
        assert_eq!(refused.limit, "4/HOUR");
        assert!(limits.admit(Class::Delete, t0 + minute * 60).is_ok());
    }
}
