//! What the throttle costs in latency: how long batches stay open (arrival of their first
//! record to seal) and how long records wait from arrival to MCAS's acceptance, as
//! histograms for the status report and the metrics. The histograms are the spool's and the
//! uploader's counters; [`Arrivals`] carries each batch's first arrival from its seal to
//! its delivery.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl Serialize for Histogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    /// A histogram as a report shows it, for `nss status`, which reads the daemon's report.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Histogram, D::Error> {
        let report = HistogramReport::deserialize(deserializer)?;
        let bounds: Vec<f64> = report.buckets.iter().map(|b| b.le).collect();
        if bounds != BUCKETS {
            return Err(serde::de::Error::custom(
                "a histogram with other buckets than this version's",
            ));
        }
        let histogram = Histogram::default();
        let mut below = 0;
        for (bucket, count) in report.buckets.iter().zip(&histogram.counts) {
            count.store(bucket.count.saturating_sub(below), Ordering::Relaxed);
            below = bucket.count;
        }
        histogram.counts[BUCKETS.len()]
            .store(report.count.saturating_sub(below), Ordering::Relaxed);
        histogram
            .sum_millis
            .store((report.sum * 1000.0) as u64, Ordering::Relaxed);
        histogram.count.store(report.count, Ordering::Relaxed);
        Ok(histogram)
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

/// When the first record of each sealed batch arrived, from its seal until MCAS accepts
/// it: a merged batch's records waited since the oldest arrival among its parts.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// Sequence number of a sealed batch -> when its first record arrived. Lost on
    /// restart: batches of an earlier run count from their seal.
    arrivals: Mutex<BTreeMap<u64, SystemTime>>,
}

impl Arrivals {
    /// Batch `seq` was sealed after being open for `open_for`.
    pub fn sealed(&self, seq: u64, open_for: Duration) {
        let first_arrival = SystemTime::now() - open_for;
        self.lock().insert(seq, first_arrival);
    }

    /// MCAS accepted the batch holding batches `first..=last_seq` (one, or a merge), sealed
    /// at `sealed_at`: how long its records waited, from the first arrival among them.
    pub fn delivered(&self, first: u64, last_seq: u64, sealed_at: SystemTime) -> Duration {
        let mut arrivals = self.lock();
        let first_arrival = arrivals
            .range(first..=last_seq)
            .map(|(_, &t)| t)
            .min()
            .unwrap_or(sealed_at);
        // Older entries belong to batches that went to quarantine: forget them too.
        *arrivals = arrivals.split_off(&(last_seq + 1));
        drop(arrivals);
        SystemTime::now()
            .duration_since(first_arrival)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, SystemTime>> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let l = Arrivals::default();
        l.sealed(3, Duration::from_secs(50));
        l.sealed(4, Duration::from_secs(10));
        l.sealed(9, Duration::from_secs(1));
        let waited = l.delivered(3, 4, SystemTime::now());
        assert!(waited >= Duration::from_secs(50) && waited < Duration::from_secs(52));
        // Batch 9 is still remembered; 3 and 4 are not.
        assert_eq!(l.lock().keys().copied().collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn a_histogram_reads_back_from_its_report() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(300), 1);
        h.observe(Duration::from_secs(100_000), 2);
        let json = serde_json::to_string(&h).unwrap();
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back.report(), h.report());
    }
}
