//! Tailing feed files: follows appended data, keeps up with rotation (rename and create,
//! or copy and truncate) and with files that appear later, and resumes after a restart at
//! the checkpoint, which only moves past records in sealed batches.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, CheckpointStore, Identity, FINGERPRINT_BYTES};
use super::progress::{FailedChunk, FileProgress};
use super::rotated::find_rotated;
use super::{Decoded, Framer, RecordDecoder};
use crate::feed::counters::{FeedCounters, FileReport};
use crate::handoff::{RecordSink, Records, SealAck, SealWatcher};

/// How often a file at its end is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a file that was renamed away or deleted must stay without new data before it
/// is taken as finished: the program writing it may append for a while after the
/// rotation. Only then is the new file at the path read, and an unterminated last line
/// of the old one delivered.
pub const ROTATED_QUIET: Duration = Duration::from_secs(3);

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
    /// When data was last read, or the file was last seen replaced: a replaced or deleted
    /// file is finished once this is ROTATED_QUIET ago.
    last_news: Instant,
    /// The path no longer leads to this file (it was renamed away or deleted).
    left_path: bool,
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
    /// The open file was deleted and nothing is at the path.
    Deleted,
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
    pub counters: Arc<FeedCounters>,
    pub checkpoints: Arc<CheckpointStore>,
    /// The inputs that share the memory budget's fair shares of unfinished records.
    pub inputs: u64,
}

impl Tail {
    /// Follows the file until `cancel`. A file never seen before is read from its start;
    /// one with a checkpoint that matches it, from the checkpoint. When the checkpoint's
    /// file was rotated away while the agent was stopped, it is found beside the path and
    /// read to its end first.
    pub async fn follow(self, cancel: CancellationToken) {
        let path = self.path.clone();
        let progress = FileProgress::new(self.checkpoints.clone(), path.clone());
        let mut framer = Framer::new(
            path.display().to_string(),
            self.max_record_bytes,
            self.counters.clone(),
            self.sink.budget().clone(),
            self.inputs,
        );
        let mut current: Option<Open> = None;
        let checkpoints = self.checkpoints.clone();
        let load_path = path.clone();
        let mut checkpoint = match tokio::task::spawn_blocking(move || checkpoints.load(&load_path))
            .await
        {
            Ok(Ok(checkpoint)) => checkpoint,
            // Reading the file from its start would overwrite the checkpoint: the file
            // is left for the version that wrote it.
            Ok(Err(newer)) => {
                tracing::error!(file = %path.display(), error = %newer, "not reading the feed file");
                return;
            }
            Err(_) => None,
        };
        let mut open_error_logged = false;
        self.report(0, false);
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let Some(open) = current.as_mut() else {
                match self.open(checkpoint.take(), &progress).await {
                    Ok(open) => {
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

            // Nothing is read while the spool's disk refuses writes: the file keeps the
            // records, and its checkpoint stays before them.
            if self.sink.disk().refuses() {
                tokio::select! {
                    _ = self.sink.disk().accepting() => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }

            // Chunks whose batch failed are read again, before anything new.
            for failed in progress.take_failed(|i| (i.dev, i.ino) == (open.dev, open.ino)) {
                if !self.reread(open, &progress, failed).await {
                    return;
                }
            }

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
                    // The next read grows while reads come back full.
                    framer.read_done(n);
                    open.offset += n as u64;
                    open.last_news = Instant::now();
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
                // A file that waits for more holds no more of the budget than its
                // unfinished line, as a silent connection.
                framer.release_spare();
                sleep_or_cancel(&cancel).await;
                // Truncated and written again during the sleep: look before reading on,
                // or the new content would be read from the old offset.
                if !truncated(open).await {
                    continue;
                }
                end = AtEnd::Truncated;
            }
            match end {
                AtEnd::Replaced | AtEnd::Deleted => {
                    if !open.left_path {
                        open.left_path = true;
                        open.last_news = Instant::now();
                    }
                    // The writer may still append to the old file: follow it until quiet.
                    if open.last_news.elapsed() < ROTATED_QUIET {
                        sleep_or_cancel(&cancel).await;
                        continue;
                    }
                    if !self.finish(&mut framer, &progress, open).await {
                        return;
                    }
                    match end {
                        AtEnd::Replaced => {
                            tracing::info!(file = %path.display(), "the file was rotated: read the old one to its end, now reading the new one")
                        }
                        _ => {
                            tracing::info!(file = %path.display(), "the file was deleted: read it to its end; waiting for a new one")
                        }
                    }
                    current = None;
                }
                AtEnd::Truncated => {
                    tracing::info!(file = %path.display(), "the file was truncated: reading it again from its start");
                    if !self.finish(&mut framer, &progress, open).await {
                        return;
                    }
                    if open.file.seek(io::SeekFrom::Start(0)).await.is_err() {
                        current = None;
                    } else {
                        open.offset = 0;
                        open.chunk_start = 0;
                        open.head.clear();
                        open.skip.clear();
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

    /// Opens the file. With the checkpoint of an earlier run: resumes at it when it is of
    /// this very file and content; when it is not, looks for the checkpoint's file among
    /// the files beside the path (rotated while the agent was stopped) and resumes in it.
    async fn open(
        &self,
        checkpoint: Option<Checkpoint>,
        progress: &Arc<FileProgress>,
    ) -> io::Result<Open> {
        let at_path = open_file(&self.path).await;
        let Some(checkpoint) = checkpoint else {
            if at_path.is_ok() {
                tracing::info!(file = %self.path.display(), "tailing from the start");
            }
            return at_path;
        };
        if let Ok(open) = &at_path {
            if resumable(&checkpoint.identity, open, checkpoint.offset).await {
                let open = at_path?;
                tracing::info!(file = %self.path.display(), offset = checkpoint.offset, "tailing from the checkpoint");
                return resume(open, &checkpoint, progress).await;
            }
        }
        let path = self.path.clone();
        let wanted = checkpoint.clone();
        let found = tokio::task::spawn_blocking(move || find_rotated(&path, &wanted))
            .await
            .ok()
            .flatten();
        match found {
            Some(rotated) => match open_file(&rotated).await {
                Ok(open) if resumable(&checkpoint.identity, &open, checkpoint.offset).await => {
                    tracing::info!(file = %self.path.display(), rotated = %rotated.display(), offset = checkpoint.offset, "the file was rotated while the agent was stopped: reading the old one from the checkpoint to its end first");
                    let mut open = resume(open, &checkpoint, progress).await?;
                    // Not at the path: finished once quiet, then the path is read.
                    open.left_path = true;
                    return Ok(open);
                }
                _ => self.not_found(&checkpoint),
            },
            None => self.not_found(&checkpoint),
        }
        if at_path.is_ok() {
            tracing::info!(file = %self.path.display(), "tailing the new file from its start");
        }
        at_path
    }

    fn not_found(&self, checkpoint: &Checkpoint) {
        tracing::warn!(
            file = %self.path.display(),
            offset = checkpoint.offset,
            "the file is not the one of the checkpoint, and the checkpoint's file is not beside it (compressed or deleted by the rotation?): records written to it after the checkpoint cannot be read; tailing the file at the path from its start"
        );
    }

    /// The file's end: hands on the records in the buffer and an unterminated last line
    /// (counted and logged) as a record of its own.
    async fn finish(
        &self,
        framer: &mut Framer,
        progress: &Arc<FileProgress>,
        open: &mut Open,
    ) -> bool {
        if !self.deliver(framer, progress, open, false).await {
            return false;
        }
        let fragment = framer.pending();
        if fragment > 0 {
            self.counters.unterminated.add(1);
            tracing::warn!(file = %self.path.display(), bytes = fragment, "the file ended without a newline: its last line is delivered as a record of its own");
        }
        self.deliver(framer, progress, open, true).await
    }

    /// Reads a chunk whose batch failed again from the open file and hands it on under its
    /// id; false when the sink is closed.
    async fn reread(&self, open: &Open, progress: &Arc<FileProgress>, failed: FailedChunk) -> bool {
        let ack = SealAck::new(progress.clone() as Arc<dyn SealWatcher>, failed.id);
        let len = failed.end - failed.start;
        let permit = self.sink.budget().acquire(len).await;
        let bytes = match read_range(&open.file, failed.start, len).await {
            Ok(bytes) => bytes,
            Err(error) => {
                // The ack drops unsealed: tried again at the next turn.
                tracing::warn!(file = %self.path.display(), %error, "cannot read again the records of a failed batch");
                return true;
            }
        };
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = RecordDecoder::new(self.max_record_bytes as usize);
        let mut records = Vec::new();
        while let Ok(Some(frame)) = decoder.decode_eof(&mut buf) {
            if let Decoded::Record(record) = frame {
                records.push(record);
            }
        }
        tracing::info!(file = %self.path.display(), start = failed.start, end = failed.end, records = records.len(), "read again the records of a batch that failed");
        self.sink
            .send(Records { records, permit }, Some(ack))
            .await
            .is_ok()
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
                if records.records.is_empty() && end == open.chunk_start {
                    return true;
                }
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
        let mut files = self.counters.files.lock();
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

/// Opens `path` for reading from its start.
async fn open_file(path: &Path) -> io::Result<Open> {
    let file = File::open(path).await?;
    let meta = file.metadata().await?;
    let head = read_head(&file).await?;
    Ok(Open {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        head,
        offset: 0,
        chunk_start: 0,
        skip: VecDeque::new(),
        last_news: Instant::now(),
        left_path: false,
    })
}

/// Positions `open` at the checkpoint, with the ranges sealed beyond it to skip.
async fn resume(
    mut open: Open,
    checkpoint: &Checkpoint,
    progress: &Arc<FileProgress>,
) -> io::Result<Open> {
    open.file
        .seek(io::SeekFrom::Start(checkpoint.offset))
        .await?;
    open.offset = checkpoint.offset;
    open.chunk_start = checkpoint.offset;
    open.skip = checkpoint.sealed.iter().copied().collect();
    progress.resume(checkpoint.identity, &checkpoint.sealed);
    Ok(open)
}

/// Whether reading may resume at `offset` of the open file: same device and inode, the
/// same first bytes, and not shorter than the offset.
async fn resumable(saved: &Identity, open: &Open, offset: u64) -> bool {
    let len = open.file.metadata().await.map_or(0, |m| m.len());
    let head = &open.head[..open.head.len().min(saved.fingerprint_len as usize)];
    len >= offset && Identity::new(open.dev, open.ino, head) == *saved
}

/// The first bytes of the file, read without moving its position.
async fn read_head(file: &File) -> io::Result<Vec<u8>> {
    read_range(file, 0, FINGERPRINT_BYTES as u64).await
}

/// Up to `len` bytes of the file from `start`, read without moving its position.
async fn read_range(file: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let std_file = file.try_clone().await?.into_std().await;
    tokio::task::spawn_blocking(move || {
        let mut bytes = vec![0; len as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match std_file.read_at(&mut bytes[filled..], start + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        bytes.truncate(filled);
        Ok(bytes)
    })
    .await
    .map_err(io::Error::other)?
}

async fn look_at_end(path: &Path, open: &Open) -> AtEnd {
    match tokio::fs::metadata(path).await {
        Ok(meta) if (meta.dev(), meta.ino()) != (open.dev, open.ino) => AtEnd::Replaced,
        Ok(_) if truncated(open).await => AtEnd::Truncated,
        Ok(_) => AtEnd::Idle,
        // Deleted (no link left): read out, then finished once quiet. Renamed away with
        // no successor yet: keep reading the open handle.
        Err(_) => match open.file.metadata().await {
            Ok(meta) if meta.nlink() == 0 => AtEnd::Deleted,
            _ => AtEnd::Idle,
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::DiskGate;
    use crate::memory::MemoryBudget;
    use crate::spool::counters::SpoolCounters;
    use crate::spool::Spool;

    /// A file that is there whole is read in reads that grow to [`super::super::READ_SIZE`],
    /// as the TCP feed's do: not in the smallest read size, which costs a thread hop of
    /// tokio's file I/O and a chunk through the writers' queue every 16 KiB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_file_is_read_in_large_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.log");
        let line = format!("{}\n", "x".repeat(499));
        let lines = 16_384;
        std::fs::write(&path, line.repeat(lines)).unwrap();
        let spool = Arc::new(Spool::prepare(&dir.path().join("spool")).unwrap());
        let gate = DiskGate::new(spool, Arc::new(SpoolCounters::default()));
        let (sink, chunks) = RecordSink::new(4, MemoryBudget::new(64 << 20), gate);
        let tail = Tail {
            path,
            sink,
            max_record_bytes: 1 << 20,
            counters: Arc::new(FeedCounters::default()),
            checkpoints: Arc::new(CheckpointStore::open(&dir.path().join("ckpt")).unwrap()),
            inputs: 1,
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(tail.follow(cancel.clone()));
        let counted = tokio::task::spawn_blocking(move || {
            let (mut records, mut received) = (0, 0);
            while records < lines {
                let mut chunk = chunks.recv().unwrap();
                records += chunk.records.len();
                received += 1;
                if let Some(ack) = chunk.take_ack() {
                    ack.sealed();
                }
            }
            received
        })
        .await
        .unwrap();
        cancel.cancel();
        task.await.unwrap();
        // 8 MiB: 32 reads of 256 KiB, a few more while the size grows.
        assert!(counted <= 48, "8 MiB came in {counted} chunks");
    }
}
