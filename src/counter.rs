//! The cells the stages count in. Each stage declares its counters once, as a struct of
//! these cells (`FeedCounters`, `SpoolCounters`, `UploadCounters`, `McasCounters`,
//! `SyncCounters`, `ZiaCounters`); the struct is also its section of the status report:
//! every cell serializes as the report's field, and `nss status` reads the daemon's report
//! back into the same types. So a figure is declared in one place, and the report, the
//! metrics (which read the report) and `nss status` cannot disagree on it.
//!
//! Every cell is shared between threads without a lock held across an await, and never
//! panics: a lock poisoned by a panicking writer still gives its value. A clone is a copy
//! of the value at that moment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{rfc3339, unix_millis};

/// A number that grows (a counter) or moves (a gauge), shown as an integer.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` away, never below zero.
    pub fn sub(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// Sets the value.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// Raises the value to `n` if it is below.
    pub fn raise_to(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for Count {
    fn clone(&self) -> Count {
        Count(AtomicU64::new(self.get()))
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Something that holds or does not, shown as `true` or `false`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Flag(AtomicBool);

impl Flag {
    /// Sets the flag.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// The flag now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A number with a fraction (seconds, a rate), shown as a float. Kept as the bits of an
/// `f64`.
#[derive(Debug, Default)]
pub struct Real(AtomicU64);

impl Real {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Raises the value to `value` if it is below. For values of zero and above only:
    /// their bit patterns order as the numbers do, so the integer maximum is the maximum.
    pub fn raise_to(&self, value: f64) {
        self.0
            .fetch_max(value.max(0.0).to_bits(), Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Clone for Real {
    fn clone(&self) -> Real {
        Real(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl Serialize for Real {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Real, D::Error> {
        let real = Real::default();
        real.set(f64::deserialize(deserializer)?);
        Ok(real)
    }
}

/// A point in wall time, or never: shown as RFC 3339 UTC to the second, or `null`. Kept
/// as milliseconds since the epoch; 0 means never.
#[derive(Debug, Default)]
pub struct WallTime(AtomicU64);

impl WallTime {
    /// Sets the time to now.
    pub fn touch(&self) {
        self.set(SystemTime::now());
    }

    /// Sets the time to `at`.
    pub fn set(&self, at: SystemTime) {
        self.0.store(unix_millis(at), Ordering::Relaxed);
    }

    /// Sets the time, or forgets it.
    pub fn set_opt(&self, at: Option<SystemTime>) {
        self.0.store(at.map_or(0, unix_millis), Ordering::Relaxed);
    }

    /// Forgets the time.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The time as the report shows it (RFC 3339), or `None` when never set.
    pub fn text(&self) -> Option<String> {
        self.get().map(rfc3339)
    }

    /// The time, or `None` when never set.
    pub fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

impl Clone for WallTime {
    fn clone(&self) -> WallTime {
        WallTime(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl Serialize for WallTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().map(rfc3339).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WallTime, D::Error> {
        let time = WallTime::default();
        if let Some(text) = Option::<String>::deserialize(deserializer)? {
            let at = humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
            time.set(at);
        }
        Ok(time)
    }
}

/// A value that is replaced whole (a text, a list, a pair), shown as the value itself.
#[derive(Debug, Default)]
pub struct Shared<T>(Mutex<T>);

impl<T> Shared<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Shared<T> {
        Shared(Mutex::new(value))
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        *self.lock() = value;
    }

    /// The value, locked for a change in place.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Clone> Shared<T> {
    /// A copy of the value now.
    pub fn get(&self) -> T {
        self.lock().clone()
    }
}

impl<T> Shared<Option<T>> {
    /// Takes the value out, leaving `None`.
    pub fn take(&self) -> Option<T> {
        self.lock().take()
    }

    /// Whether a value is held.
    pub fn is_some(&self) -> bool {
        self.lock().is_some()
    }
}

impl<T: Clone> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared::new(self.get())
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.lock().serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Shared<T>, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Cells {
        count: Count,
        flag: Flag,
        real: Real,
        time: WallTime,
        text: Shared<Option<String>>,
    }

    #[test]
    fn cells_serialize_as_their_values_and_read_back() {
        let cells = Cells::default();
        let empty = serde_json::to_value(&cells).unwrap();
        assert_eq!(
            empty,
            serde_json::json!({"count": 0, "flag": false, "real": 0.0, "time": null, "text": null})
        );
        cells.count.add(3);
        cells.count.sub(5);
        cells.count.add(7);
        cells.flag.set(true);
        cells.real.raise_to(1.5);
        cells.real.raise_to(0.5);
        cells.time.set(UNIX_EPOCH + Duration::from_secs(86_400));
        cells.text.set(Some("x".into()));
        let json = serde_json::to_string(&cells).unwrap();
        assert_eq!(
            json,
            r#"{"count":7,"flag":true,"real":1.5,"time":"1970-01-02T00:00:00Z","text":"x"}"#
        );
        let back: Cells = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn a_poisoned_cell_still_gives_its_value() {
        let cell = std::sync::Arc::new(Shared::new(Some(1)));
        let writer = cell.clone();
        let _ = std::thread::spawn(move || {
            let _guard = writer.lock();
            panic!("poisons the lock");
        })
        .join();
        assert_eq!(cell.get(), Some(1));
        cell.set(Some(2));
        assert_eq!(cell.get(), Some(2));
    }
}
