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

use crate::batch::DiskGate;
use crate::memory::{MemoryBudget, MemoryPermit};

/// Records cut out of an input's read buffer, in the order read, with the memory they
/// hold from the budget.
pub struct Records {
    pub records: Vec<Bytes>,
    pub permit: MemoryPermit,
}

/// Told when chunks of an input are wholly in sealed batches, or never will be: a tailed
/// file's progress, which moves its checkpoint past them or reads them again.
pub trait SealWatcher: Send + Sync {
    /// The chunks with these ids (as given to [`SealAck::new`]) are in sealed batches.
    fn sealed(&self, ids: &[u64]);
    /// The chunk `id` will not be sealed: the batch it was written into failed.
    fn failed(&self, id: u64);
    /// What the chunks `ids` cover, as JSON lines to keep beside their batch while it is
    /// being sealed: after a crash between the seal and [`SealWatcher::sealed`], recovery
    /// finishes the acknowledgement from them.
    fn claims(&self, ids: &[u64]) -> Vec<u8>;
}

/// A chunk's claim on its input's progress: acknowledged once every record of the chunk
/// is in a sealed batch. Dropped without that (its batch failed), the input hears that
/// the chunk failed, and reads it again.
pub struct SealAck {
    watcher: Arc<dyn SealWatcher>,
    id: u64,
    settled: bool,
}

impl SealAck {
    /// The claim of chunk `id` on `watcher`.
    pub fn new(watcher: Arc<dyn SealWatcher>, id: u64) -> SealAck {
        SealAck {
            watcher,
            id,
            settled: false,
        }
    }

    /// Every record of the chunk is in a sealed batch.
    pub fn sealed(mut self) {
        self.settled = true;
        self.watcher.sealed(&[self.id]);
    }

    /// What these chunks cover, for [`SealWatcher::claims`]: one JSON line a watcher.
    pub fn claims(acks: &[SealAck]) -> Vec<u8> {
        let mut out = Vec::new();
        for (watcher, ids) in Self::by_watcher(acks) {
            out.extend(watcher.claims(&ids));
        }
        out
    }

    /// Every record of these chunks is in a sealed batch. A batch holds hundreds of chunks:
    /// each watcher (each file's checkpoint) hears once, not once a chunk.
    pub fn all_sealed(mut acks: Vec<SealAck>) {
        for (watcher, ids) in Self::by_watcher(&acks) {
            watcher.sealed(&ids);
        }
        for ack in &mut acks {
            ack.settled = true;
        }
    }

    fn by_watcher(acks: &[SealAck]) -> Vec<(Arc<dyn SealWatcher>, Vec<u64>)> {
        let mut groups: Vec<(Arc<dyn SealWatcher>, Vec<u64>)> = Vec::new();
        for ack in acks {
            match groups
                .iter_mut()
                .find(|(w, _)| Arc::ptr_eq(w, &ack.watcher))
            {
                Some((_, ids)) => ids.push(ack.id),
                None => groups.push((ack.watcher.clone(), vec![ack.id])),
            }
        }
        groups
    }
}

impl Drop for SealAck {
    fn drop(&mut self) {
        if !self.settled {
            self.watcher.failed(self.id);
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

    /// The origin of this name in an unsealed batch file's name, if it is one.
    pub fn from_name(name: &str) -> Option<Origin> {
        [Origin::Stream, Origin::File]
            .into_iter()
            .find(|origin| origin.name() == name)
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
    /// Whether the spool's disk takes writes: inputs look before they read.
    disk: DiskGate,
    /// Chunks handed to the writers and not yet flushed to the operating system: few, so
    /// that a killed process loses little of what it read from TCP (the rest is salvaged
    /// from the flushed batch files).
    slots: Arc<Semaphore>,
}

impl RecordSink {
    /// A sink whose queue holds at most `places` chunks, and the end the writers take
    /// chunks from. The writers see the queue closed once every clone of the sink is gone.
    pub fn new(
        places: usize,
        budget: MemoryBudget,
        disk: DiskGate,
    ) -> (RecordSink, Receiver<Chunk>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = RecordSink {
            tx,
            budget,
            disk,
            slots: Arc::new(Semaphore::new(places)),
        };
        (sink, rx)
    }

    /// The memory budget inputs draw on.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Whether the spool's disk takes writes: an input waits while it refuses them
    /// before it reads anything more.
    pub fn disk(&self) -> &DiskGate {
        &self.disk
    }

    /// Hands records and the memory they hold to the batch writers, waiting while the
    /// writers' short queue is full. `ack`, if any, is acknowledged once every record is
    /// in a sealed batch.
    pub async fn send(&self, records: Records, ack: Option<SealAck>) -> Result<(), SinkClosed> {
        let arrived = Instant::now();
        let Records { records, permit } = records;
        if records.is_empty() {
            if let Some(ack) = ack {
                // Saves a checkpoint (fsyncs): not on the async runtime.
                let _ = tokio::task::spawn_blocking(move || ack.sealed()).await;
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
