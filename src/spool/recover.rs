//! After a crash: the batches a killed run left unsealed, salvaged or discarded by origin,
//! and the claims of batches sealed just before the crash, handed back to the checkpoints.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::{file_name, BatchFile, BatchName, OpenName, Spool};
use crate::crashpoint;
use crate::durable_fs::sync_dir;
use crate::handoff::Origin;

/// What [`Spool::recover`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// New sealed batches of salvaged TCP records.
    pub salvaged_batches: u64,
    pub salvaged_records: u64,
    /// Unsealed batches of tailed files, deleted (their files are read again).
    pub discarded: u64,
    /// Claims of batches sealed right before the crash, handed to the checkpoints.
    pub settled_claims: u64,
}

impl Spool {
    /// Deals with what a killed run left in `open/`:
    /// - claims (`*.claims`) of a batch whose seal completed: handed to `settle` with their
    ///   file's path, which moves the checkpoints past them, then deleted (kept when
    ///   `settle` fails); claims of a batch still unsealed
    ///   are deleted with it.
    /// - batches from TCP (`tcp`): the records in them exist nowhere else. Every whole
    ///   record that reads back (the writers flush as they go) is sealed into a new batch,
    ///   exactly once even when the salvage itself is interrupted.
    /// - batches from tailed files (`file`): deleted; their records are read again from
    ///   the files, whose checkpoints never moved past an unsealed batch.
    /// - anything else goes to quarantine.
    pub fn recover(
        &self,
        level: u32,
        settle: &mut dyn FnMut(&Path, &[u8]) -> io::Result<()>,
    ) -> io::Result<Recovery> {
        let mut recovery = Recovery::default();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.unsealed_dir)? {
            names.push(file_name(&entry?.path()));
        }
        names.sort();
        let path = |name: &str| self.unsealed_dir.join(name);
        let parsed: Vec<(&String, Option<BatchName>)> =
            names.iter().map(|n| (n, n.parse().ok())).collect();
        // Claims first, while their batches are still where they were.
        for (name, kind) in &parsed {
            let Some(BatchName::Claims(batch)) = kind else {
                continue;
            };
            if !names.contains(&batch.to_string()) {
                // A claims file refused (a newer version's) stops recovery before it is
                // deleted: it is still here for the version that wrote it.
                settle(&path(name), &fs::read(path(name))?)?;
                recovery.settled_claims += 1;
            }
            fs::remove_file(path(name))?;
        }
        // Salvages interrupted after their output was complete: sealed, source deleted.
        for (name, kind) in &parsed {
            let Some(BatchName::Salvaged {
                records,
                raw_bytes,
                source,
            }) = kind
            else {
                continue;
            };
            remove_if_present(&path(&source.to_string()))?;
            sync_dir(&self.unsealed_dir)?;
            self.seal(&path(name), *records, *raw_bytes)?;
            recovery.salvaged_batches += 1;
            recovery.salvaged_records += records;
        }
        for (name, kind) in &parsed {
            let file = path(name);
            if !file.exists() {
                continue;
            }
            match kind {
                Some(BatchName::Claims(_) | BatchName::Salvaged { .. }) => {}
                Some(BatchName::Salvage(_)) => {
                    // Interrupted while written: its source is still here and is salvaged
                    // again.
                    fs::remove_file(&file)?;
                }
                Some(BatchName::Merge(_)) => {
                    // An interrupted merge: its sources are still in ready/ and merged again.
                    tracing::info!(file = %file.display(), "deleted the part of an interrupted merge; its batches are still waiting");
                    fs::remove_file(&file)?;
                }
                Some(BatchName::Open(OpenName {
                    origin: Origin::Stream,
                    ..
                })) => {
                    let salvaged = self.salvage(&file, level, None)?;
                    recovery.salvaged_records += salvaged;
                    recovery.salvaged_batches += (salvaged > 0) as u64;
                }
                Some(BatchName::Open(OpenName {
                    origin: Origin::File,
                    ..
                })) => {
                    fs::remove_file(&file)?;
                    recovery.discarded += 1;
                }
                Some(BatchName::Sealed(_)) | None => {
                    tracing::warn!(file = %file.display(), "an unknown file in the spool's open batches; moving it to quarantine");
                    self.quarantine(&file, "not a batch the spool writes")?;
                }
            }
        }
        sync_dir(&self.unsealed_dir)?;
        Ok(recovery)
    }

    /// A running writer's unsealed TCP batch that the disk failed: its first `records`
    /// records (those flushed before the failure; the writer holds the rest and writes
    /// them again) are sealed into a new batch, and the batch is deleted, as a salvage
    /// after a crash is (exactly once, whenever it is interrupted). Returns how many were
    /// saved.
    pub fn salvage_flushed(&self, path: &Path, records: u64, level: u32) -> io::Result<u64> {
        match self.salvage(path, level, Some(records)) {
            // Nothing of it reached the disk (its creation was not durable).
            Err(error) if error.kind() == io::ErrorKind::NotFound && !path.exists() => Ok(0),
            other => other,
        }
    }

    /// Reads the whole records back (at most `limit`) from an unsealed TCP batch into a
    /// new sealed batch, then deletes it. Returns how many records were saved. The new
    /// batch is complete on disk, under a name that says so and names its source, before
    /// the source goes: a crash at any point salvages the records exactly once.
    fn salvage(&self, path: &Path, level: u32, limit: Option<u64>) -> io::Result<u64> {
        let source: OpenName = file_name(path)
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let out = self
            .unsealed_dir
            .join(BatchName::Salvage(source.clone()).to_string());
        let _ = fs::remove_file(&out);
        let mut batch = BatchFile::create(&out, level)?;
        let mut decoder = GzDecoder::new(io::BufReader::new(File::open(path)?));
        let mut buf = vec![0u8; 256 << 10];
        let mut carry: Vec<u8> = Vec::new();
        let ended = loop {
            match decoder.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    carry.extend_from_slice(&buf[..n]);
                    let Some(last) = memchr::memrchr(b'\n', &carry) else {
                        continue;
                    };
                    for record in carry[..last]
                        .split(|&b| b == b'\n')
                        .filter(|r| !r.is_empty())
                    {
                        if limit.is_some_and(|limit| batch.records() >= limit) {
                            break;
                        }
                        batch.append(record)?;
                    }
                    carry.drain(..=last);
                    if limit.is_some_and(|limit| batch.records() >= limit) {
                        carry.clear();
                        break Ok(());
                    }
                }
                Err(error) => break Err(error),
            }
        };
        let records = batch.records();
        // A stream cut off by the kill ends early; anything else means damage.
        let damaged = match &ended {
            Err(error) if error.kind() != io::ErrorKind::UnexpectedEof => Some(error.to_string()),
            _ => None,
        };
        let complete = if records > 0 {
            // Sealed without its checksum: a salvage interrupted here is sealed by a later
            // run from its name alone, so salvaged batches are all checked by decompressing.
            let written = batch.finish()?;
            let (out, records, raw) = (written.path, written.records, written.raw_bytes);
            let complete = self.unsealed_dir.join(
                BatchName::Salvaged {
                    records,
                    raw_bytes: raw,
                    source,
                }
                .to_string(),
            );
            fs::rename(&out, &complete)?;
            sync_dir(&self.unsealed_dir)?;
            Some((complete, records, raw))
        } else {
            drop(batch);
            fs::remove_file(&out)?;
            None
        };
        crashpoint::here("salvage-written");
        match damaged {
            Some(error) => {
                tracing::warn!(file = %path.display(), records, %error, "salvaged the readable records of a damaged unsealed batch; the batch is kept in quarantine");
                self.quarantine(
                    path,
                    &format!("unsealed batch unreadable after {records} records: {error}"),
                )?;
            }
            None => {
                if records > 0 || !carry.is_empty() {
                    tracing::info!(file = %path.display(), records, partial_bytes = carry.len(), "salvaged an unsealed batch of an interrupted run");
                }
                fs::remove_file(path)?;
                sync_dir(&self.unsealed_dir)?;
            }
        }
        crashpoint::here("salvage-source-removed");
        if let Some((complete, records, raw)) = complete {
            self.seal(&complete, records, raw)?;
        }
        Ok(records)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
