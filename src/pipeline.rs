//! What the stages of the data path hand each other, declared once so that each stage
//! knows only the next: records cut from a read buffer ([`Records`]), the sink inputs hand
//! them to ([`RecordSink`]), the queued form a batch writer takes ([`Chunk`]), and the
//! acknowledgement that a chunk's records sit in a sealed batch ([`SealAck`]).
//!
//! ```text
//! feed ──Records──▶ RecordSink ──Chunk──▶ batch writers ──sealed──▶ SealAck ──▶ (the input)
//! ```

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::memory::{MemoryBudget, MemoryPermit};

/// Records cut out of an input's read buffer, in the order read, with the memory they
/// hold from the budget.
pub struct Records {
    pub records: Vec<Bytes>,
    pub permit: MemoryPermit,
}

/// Told when chunks of an input are wholly in sealed batches: a tailed file's progress,
/// which moves its checkpoint past them.
pub trait SealWatcher: Send + Sync {
    /// The chunks with these ids (as given to [`SealAck::new`]) are in sealed batches.
    fn sealed(&self, ids: &[u64]);
}

/// A chunk's claim on its input's progress: acknowledged once every record of the chunk
/// is in a sealed batch. Dropped without that, the input's checkpoint stays before it.
pub struct SealAck {
    watcher: Arc<dyn SealWatcher>,
    id: u64,
}

impl SealAck {
    /// The claim of chunk `id` on `watcher`.
    pub fn new(watcher: Arc<dyn SealWatcher>, id: u64) -> SealAck {
        SealAck { watcher, id }
    }

    /// Every record of the chunk is in a sealed batch.
    pub fn sealed(self) {
        self.watcher.sealed(&[self.id]);
    }

    /// Every record of these chunks is in a sealed batch. A batch holds hundreds of chunks:
    /// each watcher (each file's checkpoint) hears once, not once a chunk.
    pub fn all_sealed(mut acks: Vec<SealAck>) {
        while let Some(first) = acks.first() {
            let watcher = first.watcher.clone();
            let (same, rest): (Vec<SealAck>, Vec<SealAck>) = acks
                .into_iter()
                .partition(|a| Arc::ptr_eq(&a.watcher, &watcher));
            let ids: Vec<u64> = same.iter().map(|a| a.id).collect();
            watcher.sealed(&ids);
            acks = rest;
        }
    }
}

/// Where a chunk's records came from, which decides what a crash does to their batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The TCP feed: the records exist nowhere else. Their batch is flushed to the
    /// operating system as the writer catches up, and salvaged after a crash.
    Stream,
    /// A tailed file: the file keeps the records. An unsealed batch is discarded after a
    /// crash and its records read again from the file's checkpoint.
    File,
}

impl Origin {
    /// The name in unsealed batch files' names.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Stream => "tcp",
            Origin::File => "file",
        }
    }
}

/// Records of one input on their way to a batch writer.
pub struct Chunk {
    pub records: Vec<Bytes>,
    /// When the records arrived: a batch's age counts from its first record's arrival.
    pub arrived: Instant,
    /// For a tailed file: acknowledged once the records are in a sealed batch.
    ack: Option<SealAck>,
    /// Held until the records are in a batch file.
    _permit: MemoryPermit,
    /// One of the few places in the writers' queue, held until the records are flushed.
    _slot: OwnedSemaphorePermit,
}

impl Chunk {
    /// Where the records came from.
    pub fn origin(&self) -> Origin {
        if self.ack.is_some() {
            Origin::File
        } else {
            Origin::Stream
        }
    }

    /// The acknowledgement to give once the records are sealed, taken once.
    pub fn take_ack(&mut self) -> Option<SealAck> {
        self.ack.take()
    }
}

/// The batch writers are gone: the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the batch writers have stopped")]
pub struct SinkClosed;

/// Where inputs hand their records. Cheap to clone: one per input.
#[derive(Clone)]
pub struct RecordSink {
    tx: Sender<Chunk>,
    budget: MemoryBudget,
    /// Chunks handed to the writers and not yet flushed to the operating system: few, so
    /// that a killed process loses little of what it read from TCP (the rest is salvaged
    /// from the flushed batch files).
    slots: Arc<Semaphore>,
}

impl RecordSink {
    /// A sink whose queue holds at most `places` chunks, and the end the writers take
    /// chunks from. The writers see the queue closed once every clone of the sink is gone.
    pub fn new(places: usize, budget: MemoryBudget) -> (RecordSink, Receiver<Chunk>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = RecordSink {
            tx,
            budget,
            slots: Arc::new(Semaphore::new(places)),
        };
        (sink, rx)
    }

    /// The memory budget inputs draw on.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Hands records and the memory they hold to the batch writers, waiting while the
    /// writers' short queue is full. `ack`, if any, is acknowledged once every record is
    /// in a sealed batch.
    pub async fn send(&self, records: Records, ack: Option<SealAck>) -> Result<(), SinkClosed> {
        let arrived = Instant::now();
        let Records { records, permit } = records;
        if records.is_empty() {
            if let Some(ack) = ack {
                ack.sealed();
            }
            return Ok(());
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SinkClosed)?;
        self.tx
            .send(Chunk {
                records,
                arrived,
                ack,
                _permit: permit,
                _slot: slot,
            })
            .map_err(|_| SinkClosed)
    }
}
