//! After a crash: the batches a killed run left unsealed, salvaged or discarded by origin.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;

use super::{BatchFile, Spool};
use crate::fsx::sync_dir;

/// What [`Spool::recover`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// New sealed batches of salvaged TCP records.
    pub salvaged_batches: u64,
    pub salvaged_records: u64,
    /// Unsealed batches of tailed files, deleted (their files are read again).
    pub discarded: u64,
}

impl Spool {
    /// Deals with the batches a killed run left unsealed in `open/`:
    /// - from TCP (`tcp`): the records in them exist nowhere else. Every whole record that
    ///   reads back (the writers flush as they go) is sealed into a new batch.
    /// - from tailed files (`file`): deleted; their records are read again from the files,
    ///   whose checkpoints never moved past an unsealed batch.
    /// - anything else goes to quarantine.
    pub fn recover(&self, level: u32) -> io::Result<Recovery> {
        let mut recovery = Recovery::default();
        for entry in fs::read_dir(&self.unsealed_dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match name.split('-').nth(1) {
                Some("tcp") => {
                    let salvaged = self.salvage(&path, level)?;
                    recovery.salvaged_records += salvaged;
                    recovery.salvaged_batches += (salvaged > 0) as u64;
                }
                Some("file") => {
                    fs::remove_file(&path)?;
                    recovery.discarded += 1;
                }
                // An interrupted salvage: its source is still here and is salvaged again.
                _ if name.starts_with("salvage-") => fs::remove_file(&path)?,
                // An interrupted merge: its sources are still in ready/ and merged again.
                _ if name.starts_with("merge-") => {
                    tracing::info!(file = %path.display(), "deleted the part of an interrupted merge; its batches are still waiting");
                    fs::remove_file(&path)?
                }
                _ => {
                    tracing::warn!(file = %path.display(), "an unknown file in the spool's open batches; moving it to quarantine");
                    self.quarantine(&path, "not a batch the spool writes")?;
                }
            }
        }
        sync_dir(&self.unsealed_dir)?;
        Ok(recovery)
    }

    /// Reads the whole records back from an unsealed TCP batch into a new sealed batch,
    /// then deletes it. Returns how many records were saved.
    fn salvage(&self, path: &Path, level: u32) -> io::Result<u64> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let out = self
            .unsealed_dir
            .join(format!("salvage-{}-{nanos}.gz.part", std::process::id()));
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
                        batch.append(record)?;
                    }
                    carry.drain(..=last);
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
        if records > 0 {
            let (out, records, raw) = batch.finish()?;
            self.seal(&out, records, raw)?;
        } else {
            drop(batch);
            fs::remove_file(&out)?;
        }
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
            }
        }
        Ok(records)
    }
}
