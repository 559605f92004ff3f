//! What the throttle costs in latency: how long batches stay open (arrival of their first
//! record to seal) and how long records wait from arrival to MCAS's acceptance, as
//! histograms for the status report and the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The buckets' upper bounds, in seconds: from a busy feed's second to a day.
pub const BUCKETS: [f64; 16] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    21600.0, 86400.0,
];

/// A histogram of durations, filled from any thread.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is beyond every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_millis: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Counts `weight` observations of `value`.
    pub fn observe(&self, value: Duration, weight: u64) {
        let seconds = value.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(weight, Ordering::Relaxed);
        self.sum_millis.fetch_add(
            (value.as_millis() as u64).saturating_mul(weight),
            Ordering::Relaxed,
        );
        self.count.fetch_add(weight, Ordering::Relaxed);
    }

    /// The histogram as the status report shows it: cumulative counts per bound.
    pub fn report(&self) -> HistogramReport {
        let mut total = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(&le, count)| {
                total += count.load(Ordering::Relaxed);
                Bucket { le, count: total }
            })
            .collect();
        HistogramReport {
            buckets,
            sum: self.sum_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// A histogram in `nss status --json`: observations at or under each bound (cumulative,
/// as Prometheus counts them; `count` is the +Inf bucket), their sum in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    pub buckets: Vec<Bucket>,
    pub sum: f64,
    pub count: u64,
}

/// Observations at or under `le` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub le: f64,
    pub count: u64,
}

/// The latency histograms, and when the first record of each waiting batch arrived.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Per sealed batch: from its first record's arrival to its seal.
    pub seal: Histogram,
    /// Per record delivered: from the arrival of the first record of its batch to MCAS's
    /// acceptance (an upper bound of each record's own wait).
    pub delivery: Histogram,
    /// Sequence number of a sealed batch -> when its first record arrived. Lost on
    /// restart: batches of an earlier run count from their seal.
    arrivals: Mutex<BTreeMap<u64, SystemTime>>,
}

impl Latencies {
    /// Batch `seq` was sealed after being open for `open_for`.
    pub fn sealed(&self, seq: u64, open_for: Duration) {
        self.seal.observe(open_for, 1);
        let first_arrival = SystemTime::now() - open_for;
        self.arrivals.lock().unwrap().insert(seq, first_arrival);
    }

    /// MCAS accepted the batch holding batches `first..=last_seq` (one, or a merge), of
    /// `records` records, sealed at `sealed_at`.
    pub fn delivered(&self, first: u64, last_seq: u64, records: u64, sealed_at: SystemTime) {
        let mut arrivals = self.arrivals.lock().unwrap();
        let first_arrival = arrivals
            .range(first..=last_seq)
            .map(|(_, &t)| t)
            .min()
            .unwrap_or(sealed_at);
        // Older entries belong to batches that went to quarantine: forget them too.
        *arrivals = arrivals.split_off(&(last_seq + 1));
        drop(arrivals);
        let waited = SystemTime::now()
            .duration_since(first_arrival)
            .unwrap_or_default();
        self.delivery.observe(waited, records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(300), 1);
        h.observe(Duration::from_secs(4), 2);
        h.observe(Duration::from_secs(100_000), 1);
        let r = h.report();
        assert_eq!(r.count, 4);
        assert_eq!(r.sum, 0.3 + 8.0 + 100_000.0);
        let at = |le: f64| r.buckets.iter().find(|b| b.le == le).unwrap().count;
        assert_eq!((at(0.5), at(2.0), at(5.0), at(86400.0)), (1, 1, 3, 3));
    }

    #[test]
    fn a_merged_batch_counts_from_its_oldest_arrival() {
        let l = Latencies::default();
        l.sealed(3, Duration::from_secs(50));
        l.sealed(4, Duration::from_secs(10));
        l.sealed(9, Duration::from_secs(1));
        l.delivered(3, 4, 10, SystemTime::now());
        let r = l.delivery.report();
        assert_eq!(r.count, 10);
        assert!(r.sum >= 500.0 && r.sum < 520.0, "{}", r.sum);
        // Batch 9 is still remembered; 3 and 4 are not.
        assert_eq!(
            l.arrivals
                .lock()
                .unwrap()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [9]
        );
    }
}
