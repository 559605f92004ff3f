//! The feed: bytes in from the NSS MCAS feed over TCP or from tailed files, records out.

pub mod checkpoint;
pub mod codec;
pub mod tail;
pub mod tcp;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

pub use codec::{Decoded, RecordDecoder};

use crate::memory::{MemoryBudget, MemoryPermit};
use crate::pipeline::Records;
use crate::status::Stats;

/// Bytes asked of the operating system in one read.
pub const READ_SIZE: usize = 256 << 10;

/// One input's read buffer and decoder: bytes in, records out, oversize records counted.
pub struct Framer {
    decoder: RecordDecoder,
    buf: BytesMut,
    /// Names the input in log lines: `tcp 127.0.0.1:5000` or a file path.
    label: String,
    /// An input logs its first oversize record only, so a flood of them cannot fill the log.
    oversize_logged: bool,
    max_record_bytes: u64,
    stats: Arc<Stats>,
    budget: MemoryBudget,
    /// The budget's bytes for the read buffer; records cut out of it take their share along.
    held: MemoryPermit,
}

impl Framer {
    /// A framer for the input named `label`, whose buffer draws on `budget`.
    pub fn new(
        label: String,
        max_record_bytes: u64,
        stats: Arc<Stats>,
        budget: MemoryBudget,
    ) -> Framer {
        Framer {
            decoder: RecordDecoder::new(max_record_bytes as usize),
            buf: BytesMut::new(),
            label,
            oversize_logged: false,
            max_record_bytes,
            stats,
            budget,
            held: MemoryPermit::default(),
        }
    }

    /// The buffer to read into, with room for one read, once the memory budget covers it:
    /// while the budget is spent this waits, and so the input stops reading.
    pub async fn buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        self.budget
            .top_up(&mut self.held, self.buf.capacity() as u64)
            .await;
        &mut self.buf
    }

    /// Bytes read but not yet part of a complete record.
    pub fn pending(&self) -> usize {
        self.buf.len()
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
        self.stats
            .feed
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.stats.feed.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !records.is_empty() {
            self.stats.feed.last_record.touch();
        }
        // The records' memory was the buffer's: its permit goes along with them.
        let permit = self.held.split(bytes + records.len() as u64);
        Ok(Records { records, permit })
    }

    fn oversize(&mut self, bytes: u64) {
        self.stats
            .feed
            .oversize_dropped
            .fetch_add(1, Ordering::Relaxed);
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
