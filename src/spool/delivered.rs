//! Batches MCAS accepted leave the spool, and are never offered again even when their
//! removal fails: a marker in `delivered/` is written before the batch is removed.

use std::fs::{self, File};
use std::io;

use super::{file_name, SealedBatch, Spool};
use crate::durable_fs::sync_dir;

impl Spool {
    /// Removes a batch MCAS accepted: first a marker in `delivered/` (so that no later
    /// scan, nor a later run, offers it again), then the batch, then the marker. When the
    /// batch cannot be removed, the error is returned and the batch stays known as
    /// delivered: left out of [`Spool::scan_ready`], its removal tried again at each scan
    /// and at the next start.
    pub fn delivered(&self, batch: &SealedBatch) -> io::Result<()> {
        let name = file_name(&batch.path);
        let marker = self.delivered_dir.join(&name);
        let marked = File::create(&marker).and_then(|_| sync_dir(&self.delivered_dir));
        if let Err(error) = &marked {
            tracing::error!(seq = batch.seq, %error, "cannot mark the delivered batch in spool/delivered: should its removal fail too, a restart would send it again");
        }
        match remove_batch(batch) {
            Ok(()) => {
                self.forget_ready_bytes(batch.gzip_bytes);
                if let Err(error) = sync_dir(&self.ready_dir) {
                    tracing::warn!(%error, "cannot make the removal of a delivered batch durable");
                }
                if marked.is_ok() {
                    let _ = fs::remove_file(&marker);
                }
                Ok(())
            }
            Err(error) => {
                self.undeleted.lock().unwrap().insert(name, batch.clone());
                Err(error)
            }
        }
    }

    /// Batches MCAS accepted that are still in `ready/` because their removal failed.
    pub fn undeleted(&self) -> u64 {
        self.undeleted.lock().unwrap().len() as u64
    }

    /// Tries again to remove the delivered batches whose removal failed.
    pub(super) fn retry_removals(&self) {
        let mut undeleted = self.undeleted.lock().unwrap();
        undeleted.retain(|name, batch| match remove_batch(batch) {
            Ok(()) => {
                self.forget_ready_bytes(batch.gzip_bytes);
                let _ = sync_dir(&self.ready_dir);
                let _ = fs::remove_file(self.delivered_dir.join(name));
                tracing::info!(
                    seq = batch.seq,
                    "removed a delivered batch whose removal had failed"
                );
                false
            }
            Err(_) => true,
        });
    }

    /// At start: the batches an earlier run delivered (marked in `delivered/`) are removed
    /// from `ready`, or, when that fails, kept out of uploads.
    pub(super) fn remove_delivered(&self, ready: &[SealedBatch]) -> io::Result<()> {
        for entry in fs::read_dir(&self.delivered_dir)? {
            let marker = entry?.path();
            let name = file_name(&marker);
            match ready.iter().find(|b| file_name(&b.path) == name) {
                Some(batch) => match remove_batch(batch) {
                    Ok(()) => {
                        tracing::info!(seq = batch.seq, "removed a batch an earlier run delivered");
                        self.forget_ready_bytes(batch.gzip_bytes);
                        fs::remove_file(&marker)?;
                    }
                    Err(error) => {
                        tracing::error!(seq = batch.seq, file = %batch.path.display(), %error, "cannot remove a batch an earlier run delivered; it is not sent again, and its removal is retried");
                        self.undeleted.lock().unwrap().insert(name, batch.clone());
                    }
                },
                None => fs::remove_file(&marker)?,
            }
        }
        sync_dir(&self.ready_dir)?;
        sync_dir(&self.delivered_dir)
    }
}

/// Removes a batch's file; already gone counts as removed.
fn remove_batch(batch: &SealedBatch) -> io::Result<()> {
    match fs::remove_file(&batch.path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
