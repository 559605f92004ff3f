//! The feed: bytes in from the NSS MCAS feed over TCP or from tailed files, records out.

pub(crate) mod checkpoint;
pub(crate) mod codec;
pub(crate) mod counters;
pub(crate) mod descriptors;
pub(crate) mod progress;
mod rotated;
pub(crate) mod tail;
pub(crate) mod tcp;
mod throttle;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Decoder;

pub use checkpoint::fnv1a;
pub use codec::{Decoded, RecordDecoder};
pub use throttle::Throttle;

use crate::feed::counters::FeedCounters;
use crate::handoff::Records;
use crate::memory::{MemoryBudget, MemoryPermit};

/// The most bytes asked of the operating system in one read.
pub const READ_SIZE: usize = 256 << 10;

/// The least: an input that reads little (a trickle) reserves little of the budget.
const MIN_READ_SIZE: usize = 16 << 10;

/// Inputs that wait for the memory budget are logged at most once a minute.
static WAIT_LOG: Throttle = Throttle::new(Duration::from_secs(60));

/// One input's read buffer and decoder: bytes in, records out, oversize records counted.
pub struct Framer {
    decoder: RecordDecoder,
    buf: BytesMut,
    /// Names the input in log lines: `tcp 127.0.0.1:5000` or a file path.
    label: String,
    /// An input logs its first oversize record only, so a flood of them cannot fill the log.
    oversize_logged: bool,
    max_record_bytes: u64,
    counters: Arc<FeedCounters>,
    budget: MemoryBudget,
    /// The budget's bytes for the read buffer; records cut out of it take their share along.
    held: MemoryPermit,
    /// The right to hold more of an unfinished record than `fair_share`, while it does.
    big_record: Option<OwnedSemaphorePermit>,
    /// What this input may hold of an unfinished record without that right.
    fair_share: usize,
    /// Bytes to ask for in the next read: grows while reads fill it, shrinks when they do not.
    read_size: usize,
}

impl Framer {
    /// A framer for the input named `label`, whose buffer draws on `budget`, one of at
    /// most `inputs` inputs that share it.
    pub fn new(
        label: String,
        max_record_bytes: u64,
        counters: Arc<FeedCounters>,
        budget: MemoryBudget,
        inputs: u64,
    ) -> Framer {
        Framer {
            decoder: RecordDecoder::new(max_record_bytes as usize),
            buf: BytesMut::new(),
            label,
            oversize_logged: false,
            max_record_bytes,
            counters,
            fair_share: budget.fair_share(inputs) as usize,
            budget,
            held: MemoryPermit::default(),
            big_record: None,
            read_size: MIN_READ_SIZE,
        }
    }

    /// Moves the framer to another pipeline's budget and record limit (after a reload):
    /// what the buffer holds is claimed from the new budget, then let go of in the old.
    pub async fn adopt(&mut self, budget: &MemoryBudget, max_record_bytes: u64, inputs: u64) {
        if max_record_bytes != self.max_record_bytes {
            self.max_record_bytes = max_record_bytes;
            self.decoder.set_max_record_bytes(max_record_bytes as usize);
        }
        self.fair_share = budget.fair_share(inputs) as usize;
        if MemoryBudget::same(&self.budget, budget) {
            return;
        }
        let mut held = MemoryPermit::default();
        budget.top_up(&mut held, self.held.bytes()).await;
        self.held = held;
        self.big_record = None;
        self.budget = budget.clone();
    }

    /// Waits until this input may hold what its buffer may hold of an unfinished record
    /// after the next read: at once within its fair share; beyond it, once no other input
    /// holds a record that long.
    pub async fn partial_room(&mut self) {
        if self.big_record.is_some() || self.within_fair_share() {
            return;
        }
        if let Some(right) = self.budget.try_big_record() {
            self.big_record = Some(right);
            return;
        }
        let _waiting = self.waiting("another input's long unfinished record");
        self.big_record = Some(self.budget.big_record().await);
    }

    /// Whether the buffer, after a read of the least size, stays within the fair share.
    fn within_fair_share(&self) -> bool {
        self.buf.len() + MIN_READ_SIZE <= self.fair_share
    }

    /// Bytes to ask for in the next read: within the fair share unless this input has the
    /// right to a long record.
    fn next_read(&self) -> usize {
        if self.big_record.is_some() {
            self.read_size
        } else {
            self.read_size
                .min(self.fair_share.saturating_sub(self.buf.len()))
                .max(MIN_READ_SIZE)
        }
    }

    /// The buffer to read into, with room for one read, once the memory budget covers it:
    /// while the budget is spent this waits, and so the input stops reading.
    pub async fn buffer(&mut self) -> &mut BytesMut {
        self.partial_room().await;
        let read = self.next_read();
        if self.buf.capacity() - self.buf.len() < read / 4 {
            self.buf.reserve(read);
        }
        let want = self.buf.capacity() as u64;
        if !self.budget.try_top_up(&mut self.held, want) {
            let _waiting = self.waiting("the memory budget");
            self.budget.top_up(&mut self.held, want).await;
        }
        &mut self.buf
    }

    /// Counts this input as waiting for memory until the guard is dropped; logs it (once a
    /// minute for all inputs together).
    fn waiting(&self, what: &'static str) -> WaitGuard {
        if let Some(held_back) = WAIT_LOG.pass() {
            tracing::warn!(
                input = %self.label,
                memory_limit = self.budget.limit(),
                in_use = self.budget.in_use(),
                others_since_last_line = held_back,
                "an input waits for {what}: it stops reading until memory is returned"
            );
        }
        self.counters.waiting_for_memory.add(1);
        WaitGuard(self.counters.clone())
    }

    /// Gives back what the buffer reserved beyond the bytes it holds: called while the
    /// input waits for more, so that an idle input holds no more than its unread fragment.
    pub fn release_spare(&mut self) {
        let pending = self.buf.len();
        if self.buf.capacity() > pending + MIN_READ_SIZE {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        let keep = self.buf.capacity() as u64;
        drop(self.held.split(self.held.bytes().saturating_sub(keep)));
        self.settle_unfinished();
    }

    /// Bytes read but not yet part of a complete record.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Notes how much the last read brought, to size the next one.
    pub fn read_done(&mut self, bytes: usize) {
        if bytes >= self.read_size / 2 {
            self.read_size = (self.read_size * 2).min(READ_SIZE);
        } else if bytes < self.read_size / 8 {
            self.read_size = (self.read_size / 2).max(MIN_READ_SIZE);
        }
    }

    /// Lets go of the right to a long unfinished record once the buffer is back within its
    /// fair share.
    fn settle_unfinished(&mut self) {
        if self.within_fair_share() {
            self.big_record = None;
        }
    }

    /// The complete records in the buffer. At the end of the input (`eof`), an
    /// unterminated last line counts as a record too.
    pub fn records(&mut self, eof: bool) -> io::Result<Records> {
        let mut records = Vec::new();
        loop {
            let frame = if eof {
                self.decoder.decode_eof(&mut self.buf)?
            } else {
                self.decoder.decode(&mut self.buf)?
            };
            match frame {
                Some(Decoded::Record(record)) => records.push(record),
                Some(Decoded::Oversize { bytes }) => self.oversize(bytes),
                None => break,
            }
        }
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        self.counters.records.add(records.len() as u64);
        self.counters.bytes.add(bytes);
        if !records.is_empty() {
            self.counters.last_record.touch();
        }
        self.settle_unfinished();
        // The records' memory was the buffer's: its permit goes along with them.
        let permit = self.held.split(bytes + records.len() as u64);
        Ok(Records { records, permit })
    }

    fn oversize(&mut self, bytes: u64) {
        self.counters.oversize_dropped.add(1);
        if !self.oversize_logged {
            self.oversize_logged = true;
            tracing::warn!(
                input = %self.label,
                bytes,
                limit = self.max_record_bytes,
                "dropped a record longer than feed.max_record_bytes (further ones from this input are only counted)"
            );
        }
    }
}

/// Counts an input as waiting for memory while it lives.
struct WaitGuard(Arc<FeedCounters>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.waiting_for_memory.sub(1);
    }
}
