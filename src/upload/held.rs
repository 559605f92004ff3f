//! Batches that keep failing step aside: after a few failed attempts, or minutes of
//! failing, a batch is held back for a while so that newer batches go on. It stays in the
//! spool and is tried again when its hold ends. The next batch is the probe: should it
//! fail too, MCAS is failing for everyone, the hold is lifted and batches go oldest first
//! again. A batch held back is also tried again, once, as soon as a newer batch is
//! delivered: the failures that held it may have been MCAS's.
//!
//! Only failures of the steps that carry the batch (the blob, done_upload) count here:
//! upload_url carries only a name, so its failures are MCAS's, never the batch's.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts in a row after which a batch is held back.
pub const HOLD_AFTER_ATTEMPTS: u32 = 5;

/// How long a batch may keep failing before it is held back, whatever its attempts.
pub const HOLD_AFTER: Duration = Duration::from_secs(10 * 60);

/// How a batch that failed is doing.
#[derive(Debug)]
struct Failing {
    attempts: u32,
    since: Instant,
    /// Held back until then; `None` while it is still tried in its turn.
    until: Option<Instant>,
    /// Its last error.
    why: String,
    /// Its hold was lifted once by the delivery of a newer batch.
    retried_after_delivery: bool,
}

/// The batches that failed and have not been delivered since, by sequence number.
#[derive(Debug, Default)]
pub struct Holds {
    failing: BTreeMap<u64, Failing>,
    /// The batch held last, until the next attempt at another batch tells whether the
    /// failures were its own.
    probing: Option<u64>,
    /// A hold was lifted because the next batch failed too: MCAS fails for everyone, and
    /// the failures so far say nothing about the batches themselves. Until a delivery.
    everyone_failing: bool,
}

impl Holds {
    /// A failed attempt at batch `seq`. Returns true when the batch is now held back, for
    /// `hold` (then newer batches go first).
    pub fn failed(&mut self, seq: u64, why: String, hold: Duration) -> bool {
        self.failed_elsewhere(seq);
        let now = Instant::now();
        let entry = self.failing.entry(seq).or_insert(Failing {
            attempts: 0,
            since: now,
            until: None,
            why: String::new(),
            retried_after_delivery: false,
        });
        entry.attempts += 1;
        entry.why = why;
        let due = entry.until.is_some()
            || entry.attempts >= HOLD_AFTER_ATTEMPTS
            || now.duration_since(entry.since) >= HOLD_AFTER;
        if due {
            entry.until = Some(now + hold);
            self.probing = Some(seq);
        }
        due
    }

    /// An attempt at batch `seq` failed for a reason that is not the batch's: when another
    /// batch was just held, its hold is lifted (MCAS fails for every batch).
    pub fn failed_elsewhere(&mut self, seq: u64) {
        if let Some(held) = self.probing.filter(|&held| held != seq) {
            self.probing = None;
            self.everyone_failing = true;
            if let Some(entry) = self.failing.get_mut(&held) {
                entry.until = None;
                entry.attempts = 0;
                entry.since = Instant::now();
            }
        }
    }

    /// Batch `seq` was delivered: a batch held back is tried again now, once (MCAS takes
    /// files again, and its failures may have been MCAS's); should it fail again, it is
    /// held again at once, its failures its own.
    pub fn delivered(&mut self, seq: u64) {
        self.left(seq);
        for failing in self.failing.values_mut() {
            if failing.until.is_some() && !failing.retried_after_delivery {
                failing.until = None;
                failing.retried_after_delivery = true;
            }
        }
    }

    /// Batch `seq` left the spool (delivered or quarantined).
    pub fn left(&mut self, seq: u64) {
        self.failing.remove(&seq);
        self.probing = None;
        self.everyone_failing = false;
    }

    /// Whether MCAS was seen failing for every batch since the last delivery.
    pub fn everyone_failing(&self) -> bool {
        self.everyone_failing
    }

    /// Whether batch `seq` may be joined with others into one upload: not while its
    /// failures may be its own (a merged file would fail with it), but once MCAS was seen
    /// failing for every batch.
    pub fn may_join(&self, seq: u64) -> bool {
        !self.is_failing(seq) || self.everyone_failing
    }

    /// Forgets batches no longer in the spool.
    pub fn retain(&mut self, present: impl Fn(u64) -> bool) {
        self.failing.retain(|&seq, _| present(seq));
    }

    /// Whether batch `seq` failed and has not been delivered since.
    pub fn is_failing(&self, seq: u64) -> bool {
        self.failing.contains_key(&seq)
    }

    /// Whether batch `seq` waits out a hold now.
    pub fn is_held_now(&self, seq: u64) -> bool {
        self.failing
            .get(&seq)
            .and_then(|f| f.until)
            .is_some_and(|until| until > Instant::now())
    }

    /// When the first hold ends, if any batch is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.failing.values().filter_map(|f| f.until).min()
    }

    /// How many batches are held back (including one being tried again after its hold),
    /// and the last error of the most recently failed one.
    pub fn summary(&self) -> (u64, Option<String>) {
        let held: Vec<&Failing> = self
            .failing
            .values()
            .filter(|f| f.until.is_some())
            .collect();
        let why = held
            .iter()
            .max_by_key(|f| f.until)
            .map(|f| format!("failed {} times, last: {}", f.attempts, f.why));
        (held.len() as u64, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_held_after_its_attempts_and_released_later() {
        let mut holds = Holds::default();
        for _ in 1..HOLD_AFTER_ATTEMPTS {
            assert!(!holds.failed(7, "HTTP 500".into(), Duration::from_secs(60)));
        }
        assert!(!holds.is_held_now(7));
        assert!(holds.failed(7, "HTTP 500".into(), Duration::from_secs(60)));
        assert!(holds.is_held_now(7));
        assert!(!holds.is_held_now(8));
        let (count, why) = holds.summary();
        assert_eq!(count, 1);
        assert!(why.unwrap().contains("HTTP 500"));
        holds.delivered(8);
        assert!(
            !holds.is_held_now(7),
            "a newer batch went through: 7 is tried again"
        );
        assert!(
            holds.failed(7, "HTTP 500".into(), Duration::from_secs(60)),
            "failing again, it is held again at once"
        );
        holds.delivered(9);
        assert!(holds.is_held_now(7), "lifted once only");
        holds.delivered(7);
        assert_eq!(holds.summary(), (0, None));
        assert!(holds.next_release().is_none());
    }

    #[test]
    fn a_hold_is_lifted_when_the_next_batch_fails_too() {
        let mut holds = Holds::default();
        for _ in 0..HOLD_AFTER_ATTEMPTS {
            holds.failed(3, "HTTP 503".into(), Duration::from_secs(60));
        }
        assert!(holds.is_held_now(3));
        assert!(!holds.failed(4, "HTTP 503".into(), Duration::from_secs(60)));
        assert!(
            !holds.is_held_now(3),
            "MCAS fails for everyone: oldest first again"
        );
        assert_eq!(holds.summary().0, 0);
    }

    #[test]
    fn a_failing_batch_joins_others_only_once_mcas_failed_for_everyone() {
        let mut holds = Holds::default();
        let hold = Duration::from_secs(60);
        holds.failed(0, "503".into(), hold);
        assert!(!holds.may_join(0), "its failure may be its own");
        assert!(holds.may_join(1));
        for _ in 1..HOLD_AFTER_ATTEMPTS {
            holds.failed(0, "503".into(), hold);
        }
        // The next batch fails too: MCAS fails for everyone.
        holds.failed(1, "503".into(), hold);
        assert!(holds.may_join(0) && holds.may_join(1));
        // A delivery ends that: batch 0's later failures are its own again.
        holds.delivered(2);
        assert!(!holds.may_join(0));
    }
}
