//! Whether the spool's disk takes writes. The batch writers say when it refuses (a
//! read-only remount, EIO, a failed rename) and when it accepts again; the inputs look
//! before they take records from a socket or a file, so that nothing is read that cannot
//! be kept: while it refuses, TCP pushes back to the sender and the tails wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::spool::counters::SpoolCounters;
use crate::spool::Spool;

/// How often a waiting input looks again.
const POLL: Duration = Duration::from_millis(200);

/// The spool's disk's answer to writes, shared by the writers and the inputs.
#[derive(Clone)]
pub struct DiskGate {
    spool: Arc<Spool>,
    counters: Arc<SpoolCounters>,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Inputs stop reading.
    refused: AtomicBool,
    /// The refusal came from seeing the file system mounted read-only, not from a write:
    /// it ends when the mount is writable again.
    seen_read_only: AtomicBool,
    /// The refusal was logged; the next is logged only after a write succeeded.
    announced: AtomicBool,
}

impl DiskGate {
    /// The gate of `spool`'s disk, reported in `counters`.
    pub fn new(spool: Arc<Spool>, counters: Arc<SpoolCounters>) -> DiskGate {
        DiskGate {
            spool,
            counters,
            state: Arc::default(),
        }
    }

    /// A write, a flush, a seal or a rename failed: inputs stop reading. Logged once until
    /// writes succeed again.
    pub fn refused(&self, error: &dyn std::fmt::Display) {
        let state = &self.state;
        self.counters.write_refused.set(Some(error.to_string()));
        state.refused.store(true, Ordering::Relaxed);
        if !state.announced.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "the spool's disk refuses writes: {error}; reading stops until it accepts them (what was read is kept)"
            );
        }
    }

    /// Nothing of the writers waits for the disk any more, without a write having
    /// succeeded yet: inputs may read again, and the next write tells.
    pub fn released(&self) {
        if self.state.refused.swap(false, Ordering::Relaxed) {
            self.counters.write_refused.set(None);
        }
    }

    /// A write succeeded: reading goes on.
    pub fn accepted(&self) {
        let state = &self.state;
        if state.refused.load(Ordering::Relaxed) || state.announced.load(Ordering::Relaxed) {
            state.refused.store(false, Ordering::Relaxed);
            state.seen_read_only.store(false, Ordering::Relaxed);
            self.counters.write_refused.set(None);
            if state.announced.swap(false, Ordering::Relaxed) {
                tracing::info!("the spool's disk accepts writes again: reading goes on");
            }
        }
    }

    /// Whether inputs must wait: a writer found the disk refusing, or the spool's file
    /// system is mounted read-only now (seen before any write fails, so that records are
    /// not taken from the socket only to find no place on disk).
    pub fn refuses(&self) -> bool {
        let state = &self.state;
        if state.refused.load(Ordering::Relaxed) && !state.seen_read_only.load(Ordering::Relaxed) {
            return true;
        }
        // Whichever writer's write succeeded meanwhile: sealed batches still wait for a
        // sync of the spool's directories.
        if self.spool.sync_failed() {
            return true;
        }
        let read_only = self.spool.is_read_only();
        if read_only && !state.refused.load(Ordering::Relaxed) {
            state.seen_read_only.store(true, Ordering::Relaxed);
            self.refused(&"the spool's file system is mounted read-only");
        } else if !read_only && state.seen_read_only.load(Ordering::Relaxed) {
            state.seen_read_only.store(false, Ordering::Relaxed);
            self.accepted();
        }
        read_only || state.refused.load(Ordering::Relaxed)
    }

    /// Returns once the disk takes writes again (at once when it does now).
    pub async fn accepting(&self) {
        while self.refuses() {
            tokio::time::sleep(POLL).await;
        }
    }
}
