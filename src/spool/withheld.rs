//! Batches renamed into `ready/` whose rename is not yet known to be durable: from just
//! before the rename until a sync of `ready/` and `open/` succeeds after it. A crash in
//! between can leave a batch back in `open/` (where recovery deletes it, its records read
//! again, or salvages it) or a merged batch's part deleted and its sources waiting: had it
//! been uploaded meanwhile, its records would reach MCAS twice. So the scan leaves such a
//! batch out, and with a merged batch the sources it holds, until the sync succeeds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::SealedBatch;

/// The batches withheld from upload, by file name in `ready/`.
#[derive(Debug, Default)]
pub(super) struct Withheld {
    entries: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The sequence numbers the batch holds (a merged batch holds its sources').
    first: u64,
    last: u64,
    /// Its sync failed: tried again by [`super::Spool::sync_withheld`].
    failed: bool,
}

impl Withheld {
    /// The batch `name`, holding sequence numbers `first..=last`, is about to be renamed
    /// into `ready/`.
    pub(super) fn renaming(&self, name: &str, first: u64, last: u64) {
        self.entries.lock().unwrap().insert(
            name.to_owned(),
            Entry {
                first,
                last,
                failed: false,
            },
        );
    }

    /// The rename of `name` did not happen, or was made durable: it is no longer withheld.
    pub(super) fn release(&self, name: &str) {
        self.entries.lock().unwrap().remove(name);
    }

    /// The sync after the rename of `name` failed: withheld until a sync succeeds.
    pub(super) fn sync_failed(&self, name: &str) {
        if let Some(entry) = self.entries.lock().unwrap().get_mut(name) {
            entry.failed = true;
        }
    }

    /// The batches whose sync failed, now. A sync of both directories that starts after
    /// this call makes their renames durable.
    pub(super) fn failed(&self) -> Vec<String> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|(_, e)| e.failed)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether a batch's sync failed.
    pub(super) fn any_failed(&self) -> bool {
        self.entries.lock().unwrap().values().any(|e| e.failed)
    }

    /// A sync that started after [`Withheld::failed`] returned `names` succeeded.
    pub(super) fn synced(&self, names: &[String]) {
        let mut entries = self.entries.lock().unwrap();
        for name in names {
            entries.remove(name);
        }
    }

    /// Whether `batch` is kept from upload: it is withheld, or its sequence numbers lie
    /// within a withheld merged batch's.
    pub(super) fn hides(&self, batch: &SealedBatch) -> bool {
        let entries = self.entries.lock().unwrap();
        entries
            .values()
            .any(|e| batch.seq >= e.first && batch.last_seq() <= e.last)
    }
}
