//! The done_upload of a batch that was sent: a record in `sent/` (the batch's file name,
//! `.json`) kept until the batch leaves the spool, holding the upload URL. A run that
//! ends while MCAS has not answered (a shutdown, a crash) leaves it, and the next run
//! repeats that done_upload instead of uploading the batch anew, which could give MCAS
//! the file twice.
//!
//! Written durably before the done_upload is sent; an unknown future `version` is
//! ignored with a warning (the batch is then uploaded anew), never deleted.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{file_name, SealedBatch, Spool};
use crate::durable_fs::AtomicWrite;
use crate::versioned::{self, ReadError};

/// The directory under the spool's root.
pub const SENT_DIR: &str = "sent";

/// The version of the record this build writes, and the newest it reads.
const DONE_SENT_VERSION: u32 = 1;

/// A done_upload sent for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneSent {
    /// The upload URL the done_upload named (it carries a signature: the file is 0600).
    pub upload_url: String,
    /// The storage behind it: `azure` or `aws`.
    pub provider: String,
}

impl Spool {
    fn sent_path(&self, batch: &SealedBatch) -> PathBuf {
        self.sent_dir
            .join(format!("{}.json", file_name(&batch.path)))
    }

    /// Records durably that a done_upload of `sent` is about to be sent for `batch`.
    pub fn record_done_sent(&self, batch: &SealedBatch, sent: &DoneSent) -> io::Result<()> {
        fs::create_dir_all(&self.sent_dir)?;
        let json = versioned::to_vec(DONE_SENT_VERSION, sent).map_err(io::Error::other)?;
        AtomicWrite::durable(0o600).write(&self.sent_path(batch), &json)
    }

    /// The done_upload sent for `batch` by this run or an earlier one, if any.
    pub fn done_sent(&self, batch: &SealedBatch) -> Option<DoneSent> {
        let path = self.sent_path(batch);
        let text = fs::read(&path).ok()?;
        match versioned::from_slice(&path, &text, DONE_SENT_VERSION) {
            Ok((_, sent)) => Some(sent),
            Err(ReadError::Newer(newer)) => {
                tracing::warn!(error = %newer, "a done_upload record ignored: the batch is uploaded anew");
                None
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "an unreadable done_upload record: ignored");
                None
            }
        }
    }

    /// Forgets the done_upload of a batch that left the spool.
    pub fn forget_done_sent(&self, batch: &SealedBatch) {
        let path = self.sent_path(batch);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot remove a done_upload record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_run_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let batch = SealedBatch {
            path: dir.path().join("ready/00000000000000000003-1-1r-1b.gz"),
            seq: 3,
            sealed_at: std::time::UNIX_EPOCH,
            records: 1,
            raw_bytes: 1,
            gzip_bytes: 20,
            checksum: None,
            last: None,
        };
        assert_eq!(spool.done_sent(&batch), None);
        let sent = DoneSent {
            upload_url: "https://blob/x?sig=1".into(),
            provider: "azure".into(),
        };
        spool.record_done_sent(&batch, &sent).unwrap();
        let again = Spool::prepare(dir.path()).unwrap();
        assert_eq!(again.done_sent(&batch), Some(sent));
        fs::write(
            again.sent_path(&batch),
            br#"{"version": 2, "upload_url": "u", "provider": "azure"}"#,
        )
        .unwrap();
        assert_eq!(
            again.done_sent(&batch),
            None,
            "a future version is not read"
        );
        assert!(again.sent_path(&batch).exists(), "nor deleted");
        again.forget_done_sent(&batch);
        assert_eq!(again.done_sent(&batch), None);
    }
}
