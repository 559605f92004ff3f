//! Tailing feed files: follows appended data, keeps up with rotation (rename and create,
//! or copy and truncate) and with files that appear later, and resumes after a restart at
//! the checkpoint, which only moves past records in sealed batches.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{CheckpointStore, FileProgress, Identity, FINGERPRINT_BYTES};
use super::Framer;
use crate::pipeline::RecordSink;
use crate::status::{FileReport, Stats};

/// How often a file at its end is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The file being read and where.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    /// The file's first bytes (up to FINGERPRINT_BYTES), for its identity.
    head: Vec<u8>,
    offset: u64,
    /// Where the next chunk's records start.
    chunk_start: u64,
    /// Ranges ahead already in sealed batches (from the checkpoint): skipped.
    skip: VecDeque<(u64, u64)>,
}

impl Open {
    fn identity(&self) -> Identity {
        Identity::new(self.dev, self.ino, &self.head)
    }

    /// Reads the first bytes again while they are fewer than a fingerprint's worth.
    async fn refresh_head(&mut self) -> io::Result<()> {
        if self.head.len() < FINGERPRINT_BYTES {
            self.head = read_head(&self.file).await?;
        }
        Ok(())
    }
}

/// What the path shows when the open file has no more data.
enum AtEnd {
    /// Another file is at the path now: the open one was renamed or deleted and replaced.
    Replaced,
    /// The open file is shorter than what was read: it was truncated.
    Truncated,
    /// Nothing changed: wait for more data.
    Idle,
}

/// One tailed file: where it is, how it is read, where its records go.
pub struct Tail {
    pub path: PathBuf,
    pub sink: RecordSink,
    pub max_record_bytes: u64,
    pub stats: Arc<Stats>,
    pub checkpoints: Arc<CheckpointStore>,
}

impl Tail {
    /// Follows the file until `cancel`. A file never seen before is read from its start;
    /// one with a checkpoint that matches it, from the checkpoint.
    pub async fn follow(self, cancel: CancellationToken) {
        let path = self.path.clone();
        let progress = FileProgress::new(self.checkpoints.clone(), path.clone());
        let mut framer = Framer::new(
            path.display().to_string(),
            self.max_record_bytes,
            self.stats.clone(),
            self.sink.budget().clone(),
        );
        let mut current: Option<Open> = None;
        let mut first_open = true;
        let mut open_error_logged = false;
        self.report(0, false);
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let Some(open) = current.as_mut() else {
                match self.open(first_open).await {
                    Ok(open) => {
                        first_open = false;
                        open_error_logged = false;
                        self.report(open.offset, true);
                        current = Some(open);
                    }
                    Err(error) => {
                        if !open_error_logged && error.kind() != io::ErrorKind::NotFound {
                            tracing::warn!(file = %path.display(), %error, "cannot open the feed file; trying again");
                        }
                        open_error_logged = true;
                        sleep_or_cancel(&cancel).await;
                    }
                }
                continue;
            };

            if let Some(&(start, end)) = open.skip.front() {
                if open.offset >= start {
                    open.skip.pop_front();
                    if open.file.seek(io::SeekFrom::Start(end)).await.is_err() {
                        current = None;
                        continue;
                    }
                    open.offset = end;
                    open.chunk_start = end;
                    continue;
                }
            }
            // Read no further than the next range to skip.
            let limit = open
                .skip
                .front()
                .map_or(u64::MAX, |&(start, _)| start - open.offset);
            let mut limited = (&mut open.file).take(limit);
            let read = tokio::select! {
                // Waits for the memory budget first: the tail pauses while it is spent.
                read = async { limited.read_buf(framer.buffer().await).await } => read,
                _ = cancel.cancelled() => break,
            };
            match read {
                Ok(0) => {}
                Ok(n) => {
                    open.offset += n as u64;
                    if let Err(error) = open.refresh_head().await {
                        tracing::warn!(file = %path.display(), %error, "cannot read the file's first bytes");
                    }
                    if !self.deliver(&mut framer, &progress, open, false).await {
                        return;
                    }
                    self.report(open.offset, true);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "reading the feed file failed; reopening it");
                    current = None;
                    sleep_or_cancel(&cancel).await;
                    continue;
                }
            }

            let mut end = look_at_end(&path, open).await;
            if let AtEnd::Idle = end {
                sleep_or_cancel(&cancel).await;
                // Truncated and written again during the sleep: look before reading on,
                // or the new content would be read from the old offset.
                if !truncated(open).await {
                    continue;
                }
                end = AtEnd::Truncated;
            }
            match end {
                AtEnd::Replaced => {
                    tracing::info!(file = %path.display(), "the file was rotated: read the old one to its end, now reading the new one");
                    if !self.deliver(&mut framer, &progress, open, true).await {
                        return;
                    }
                    current = None;
                }
                AtEnd::Truncated => {
                    tracing::info!(file = %path.display(), "the file was truncated: reading it again from its start");
                    if !self.deliver(&mut framer, &progress, open, true).await {
                        return;
                    }
                    if open.file.seek(io::SeekFrom::Start(0)).await.is_err() {
                        current = None;
                    } else {
                        open.offset = 0;
                        open.chunk_start = 0;
                        open.head.clear();
                        self.report(0, true);
                    }
                }
                AtEnd::Idle => {}
            }
        }
        // Complete records still in the buffer go on; an unfinished last line stays
        // unread, after the checkpoint, for the next start.
        if let Some(open) = current.as_mut() {
            self.deliver(&mut framer, &progress, open, false).await;
        }
    }

    /// Opens the file; on the first open, resumes at its checkpoint when the checkpoint
    /// is of this very file and content.
    async fn open(&self, first_open: bool) -> io::Result<Open> {
        let file = File::open(&self.path).await?;
        let meta = file.metadata().await?;
        let head = read_head(&file).await?;
        let mut open = Open {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            head,
            offset: 0,
            chunk_start: 0,
            skip: VecDeque::new(),
        };
        let checkpoint = if first_open {
            self.checkpoints.load(&self.path)
        } else {
            None
        };
        match checkpoint {
            Some(checkpoint)
                if resumable(&checkpoint.identity, &open, meta.len(), checkpoint.offset) =>
            {
                open.file
                    .seek(io::SeekFrom::Start(checkpoint.offset))
                    .await?;
                open.offset = checkpoint.offset;
                tracing::info!(file = %self.path.display(), offset = open.offset, "tailing from the checkpoint");
            }
            Some(_) => {
                tracing::info!(file = %self.path.display(), "the file is not the one of the checkpoint (rotated or rewritten): tailing from its start")
            }
            None => tracing::info!(file = %self.path.display(), "tailing from the start"),
        }
        Ok(open)
    }

    /// Hands the framer's records to the sink with an acknowledgement of where they end;
    /// false when the sink is closed.
    async fn deliver(
        &self,
        framer: &mut Framer,
        progress: &Arc<FileProgress>,
        open: &mut Open,
        at_end: bool,
    ) -> bool {
        match framer.records(at_end) {
            Ok(records) => {
                let end = open.offset - framer.pending() as u64;
                let ack = progress.register(open.identity(), open.chunk_start, end);
                open.chunk_start = end;
                self.sink.send(records, Some(ack)).await.is_ok()
            }
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "cannot frame the feed file");
                true
            }
        }
    }

    fn report(&self, offset: u64, open: bool) {
        let mut files = self.stats.feed.files.lock().unwrap();
        match files.iter_mut().find(|f| f.path == self.path) {
            Some(file) => {
                file.offset = offset;
                file.open = open;
            }
            None => files.push(FileReport {
                path: self.path.clone(),
                offset,
                open,
            }),
        }
    }
}

/// Whether reading may resume at `offset` of the open file: same device and inode, the
/// same first bytes, and not shorter than the offset.
fn resumable(saved: &Identity, open: &Open, len: u64, offset: u64) -> bool {
    let head = &open.head[..open.head.len().min(saved.fingerprint_len as usize)];
    len >= offset && Identity::new(open.dev, open.ino, head) == *saved
}

/// The first bytes of the file, read without moving its position.
async fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let std_file = file.try_clone().await?.into_std().await;
    tokio::task::spawn_blocking(move || {
        let mut head = vec![0; FINGERPRINT_BYTES];
        let mut filled = 0;
        while filled < head.len() {
            match std_file.read_at(&mut head[filled..], filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        head.truncate(filled);
        Ok(head)
    })
    .await
    .map_err(io::Error::other)?
}

async fn look_at_end(path: &Path, open: &Open) -> AtEnd {
    match tokio::fs::metadata(path).await {
        Ok(meta) if (meta.dev(), meta.ino()) != (open.dev, open.ino) => AtEnd::Replaced,
        Ok(_) if truncated(open).await => AtEnd::Truncated,
        // Renamed away or deleted with no successor yet: keep reading the open handle.
        _ => AtEnd::Idle,
    }
}

/// Whether the open file was truncated: shorter than what was read, or (truncated and
/// written past the old offset between two looks) its first bytes changed.
async fn truncated(open: &Open) -> bool {
    if open
        .file
        .metadata()
        .await
        .is_ok_and(|meta| meta.len() < open.offset)
    {
        return true;
    }
    !open.head.is_empty()
        && read_head(&open.file)
            .await
            .is_ok_and(|head| !head.starts_with(&open.head))
}

async fn sleep_or_cancel(cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(POLL_INTERVAL) => {}
        _ = cancel.cancelled() => {}
    }
}
