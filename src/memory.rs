//! The one memory budget, in bytes, that every buffer between socket and spool draws on.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limit;

/// The smallest and largest budget `memory.limit = "auto"` chooses.
const AUTO_MIN: u64 = 256 << 20;
const AUTO_MAX: u64 = 1 << 30;

/// A budget of bytes. Readers take permits for what they hold and give them back when the
/// bytes are in a spool file; when the budget is spent, readers wait, and so TCP flow
/// control pushes back to the sender.
///
/// Unfinished records (a line whose newline has not arrived) may hold at most half of it
/// together, so that they can never take the memory complete records need to move on:
/// each input a fair share of a quarter of the budget, and one input at a time (holding
/// [`MemoryBudget::big_record`]) up to another quarter for a record longer than that.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    limit: u64,
    /// The one right to hold an unfinished record longer than a fair share.
    big_record: Arc<Semaphore>,
}

/// Bytes taken from the budget, returned when dropped.
#[derive(Debug, Default)]
pub struct MemoryPermit {
    permit: Option<OwnedSemaphorePermit>,
    /// The bytes this permit stands for (more than its permits when a request was larger
    /// than the whole budget).
    bytes: u64,
}

impl MemoryPermit {
    /// How many bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves `bytes` of this permit (or all it has, if less) into a new one: the memory
    /// changes hands, say from a read buffer to the records cut out of it.
    pub fn split(&mut self, bytes: u64) -> MemoryPermit {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        // Keep as many permits as the bytes left need; hand over the rest.
        let moved = held.saturating_sub(self.bytes).min(bytes);
        let permit = match moved {
            0 => None,
            n => self.permit.as_mut().and_then(|p| p.split(n as usize)),
        };
        MemoryPermit { permit, bytes }
    }

    /// Adds another permit's bytes to this one.
    pub fn merge(&mut self, other: MemoryPermit) {
        self.bytes += other.bytes;
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS as u64);
        MemoryBudget {
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            limit,
            big_record: Arc::new(Semaphore::new(1)),
        }
    }

    /// The quarter of a budget of `limit` bytes that inputs' fair shares of unfinished
    /// records add up to; as much again is the most one record may hold.
    pub fn unfinished_quarter(limit: u64) -> u64 {
        limit / 4
    }

    /// What one of `inputs` inputs may hold of an unfinished record without waiting.
    pub fn fair_share(&self, inputs: u64) -> u64 {
        Self::unfinished_quarter(self.limit) / inputs.max(1)
    }

    /// The right to hold an unfinished record beyond a fair share, if no other input has
    /// it now.
    pub fn try_big_record(&self) -> Option<OwnedSemaphorePermit> {
        self.big_record.clone().try_acquire_owned().ok()
    }

    /// The right to hold an unfinished record beyond a fair share, once the input that has
    /// it completes its record (or is closed).
    pub async fn big_record(&self) -> OwnedSemaphorePermit {
        self.big_record
            .clone()
            .acquire_owned()
            .await
            .expect("the memory budget's semaphores are never closed")
    }

    /// Whether `a` and `b` are the same budget (not merely of the same size).
    pub fn same(a: &MemoryBudget, b: &MemoryBudget) -> bool {
        Arc::ptr_eq(&a.semaphore, &b.semaphore)
    }

    /// The budget `memory.limit` asks for: given bytes, or for `auto` a sixteenth of the
    /// machine's memory, clamped to [256 MiB, 1 GiB] (512 MiB on an 8 GB appliance).
    pub fn resolve(limit: Limit, ram_total: Option<u64>) -> u64 {
        match limit {
            Limit::Bytes(bytes) => bytes,
            Limit::Auto => ram_total.map_or(AUTO_MIN, |ram| (ram / 16).clamp(AUTO_MIN, AUTO_MAX)),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes currently taken.
    pub fn in_use(&self) -> u64 {
        self.limit - self.semaphore.available_permits() as u64
    }

    /// Takes `bytes` from the budget, waiting while it is spent. A request larger than the
    /// whole budget takes the whole budget, so that it waits for everything else to drain
    /// instead of forever.
    pub async fn acquire(&self, bytes: u64) -> MemoryPermit {
        take(&self.semaphore, self.limit, bytes).await
    }

    /// Grows `permit` to `bytes` (at most the whole budget, which a permit can always get
    /// once the others are returned), waiting while the budget is spent.
    pub async fn top_up(&self, permit: &mut MemoryPermit, bytes: u64) {
        top_up(&self.semaphore, self.limit, permit, bytes).await
    }

    /// Like [`MemoryBudget::top_up`] without waiting: whether `permit` now holds `bytes`.
    pub fn try_top_up(&self, permit: &mut MemoryPermit, bytes: u64) -> bool {
        try_top_up(&self.semaphore, self.limit, permit, bytes)
    }
}

/// The permits a request of `bytes` takes from a pool of `limit`: at most all of it.
fn permits_for(limit: u64, bytes: u64) -> u32 {
    bytes.min(limit).min(u32::MAX as u64) as u32
}

async fn take(semaphore: &Arc<Semaphore>, limit: u64, bytes: u64) -> MemoryPermit {
    if bytes == 0 {
        return MemoryPermit::default();
    }
    let permit = semaphore
        .clone()
        .acquire_many_owned(permits_for(limit, bytes))
        .await
        .expect("the memory budget's semaphores are never closed");
    MemoryPermit {
        permit: Some(permit),
        bytes,
    }
}

async fn top_up(semaphore: &Arc<Semaphore>, limit: u64, permit: &mut MemoryPermit, bytes: u64) {
    let bytes = bytes.min(limit);
    if permit.bytes < bytes {
        let more = take(semaphore, limit, bytes - permit.bytes).await;
        permit.merge(more);
    }
}

fn try_top_up(
    semaphore: &Arc<Semaphore>,
    limit: u64,
    permit: &mut MemoryPermit,
    bytes: u64,
) -> bool {
    let bytes = bytes.min(limit);
    if permit.bytes >= bytes {
        return true;
    }
    let more = bytes - permit.bytes;
    match semaphore
        .clone()
        .try_acquire_many_owned(permits_for(limit, more))
    {
        Ok(taken) => {
            permit.merge(MemoryPermit {
                permit: Some(taken),
                bytes: more,
            });
            true
        }
        Err(_) => false,
    }
}

/// The machine's memory in bytes (sysinfo(2): works where /proc is hidden, as in the
/// hardened systemd unit).
pub fn ram_total() -> Option<u64> {
    nix::sys::sysinfo::sysinfo()
        .ok()
        .map(|info| info.ram_total())
}

/// The least memory the MCAS feed is documented to need.
pub const RAM_FLOOR: u64 = 8 * 1000 * 1000 * 1000;

/// Whether a machine with `ram_total` bytes has the memory the MCAS feed needs. An "8 GB"
/// VM reports a little less than 8 GB as MemTotal (the kernel keeps some): allow 5%.
pub fn meets_ram_floor(ram_total: u64) -> bool {
    ram_total >= RAM_FLOOR * 95 / 100
}

/// `memory` of the status report: the machine's memory and the budget's use.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MemoryReport {
    pub ram_total: u64,
    pub meets_8gb_floor: bool,
    pub limit: u64,
    pub in_use: u64,
}

impl MemoryReport {
    /// The memory part of the report for a machine with `ram_total` bytes.
    pub fn new(ram_total: u64, limit: u64, in_use: u64) -> MemoryReport {
        MemoryReport {
            ram_total,
            meets_8gb_floor: meets_ram_floor(ram_total),
            limit,
            in_use,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn auto_is_a_sixteenth_of_ram_clamped() {
        let gib = 1u64 << 30;
        assert_eq!(MemoryBudget::resolve(Limit::Auto, Some(8 * gib)), 512 << 20);
        assert_eq!(MemoryBudget::resolve(Limit::Auto, Some(2 * gib)), 256 << 20);
        assert_eq!(MemoryBudget::resolve(Limit::Auto, Some(64 * gib)), gib);
        assert_eq!(
            MemoryBudget::resolve(Limit::Bytes(1234), Some(8 * gib)),
            1234
        );
    }

    #[tokio::test]
    async fn waits_while_spent() {
        let budget = MemoryBudget::new(100);
        let first = budget.acquire(80).await;
        assert_eq!(budget.in_use(), 80);
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.acquire(30)).await;
        assert!(blocked.is_err(), "the budget was overdrawn");
        drop(first);
        let second = budget.acquire(30).await;
        assert_eq!(second.bytes(), 30);
        // Larger than the whole budget: takes all of it instead of waiting forever.
        drop(second);
        let huge = budget.acquire(1000).await;
        assert_eq!(budget.in_use(), 100);
        drop(huge);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn permits_change_hands() {
        let budget = MemoryBudget::new(200);
        let mut buffer = MemoryPermit::default();
        budget.top_up(&mut buffer, 64).await;
        assert_eq!((buffer.bytes(), budget.in_use()), (64, 64));
        let records = buffer.split(40);
        assert_eq!((buffer.bytes(), records.bytes()), (24, 40));
        budget.top_up(&mut buffer, 64).await;
        // The buffer's 64 again, and the records' 40.
        assert_eq!(budget.in_use(), 104);
        drop(records);
        assert_eq!(budget.in_use(), 64);
        let all = buffer.split(1000);
        assert_eq!((all.bytes(), buffer.bytes()), (64, 0));
        drop(all);
        assert_eq!(budget.in_use(), 0);
    }
}
