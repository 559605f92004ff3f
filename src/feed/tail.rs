//! Tailing feed files: follows appended data, and keeps up with rotation (rename and
//! create, or copy and truncate) and with files that appear later.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::Framer;
use crate::batch::RecordSink;
use crate::status::{FileReport, Stats};

/// How often a file at its end is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The file being read and where.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
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

/// Follows the file at `path` until `cancel`. A file never seen before is read from its
/// start.
pub async fn follow(
    path: PathBuf,
    sink: RecordSink,
    max_record_bytes: u64,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let mut framer = Framer::new(path.display().to_string(), max_record_bytes, stats.clone());
    let mut current: Option<Open> = None;
    let mut open_error_logged = false;
    let report = |offset: u64, open: bool| set_report(&stats, &path, offset, open);
    report(0, false);
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let Some(open) = current.as_mut() else {
            match open_file(&path).await {
                Ok(open) => {
                    tracing::info!(file = %path.display(), "tailing from the start");
                    open_error_logged = false;
                    current = Some(open);
                    report(0, true);
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

        let read = tokio::select! {
            read = open.file.read_buf(framer.buffer()) => read,
            _ = cancel.cancelled() => break,
        };
        match read {
            Ok(0) => {}
            Ok(n) => {
                open.offset += n as u64;
                let offset = open.offset;
                if !deliver(&mut framer, &sink, false, &path).await {
                    return;
                }
                report(offset, true);
                continue;
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "reading the feed file failed; reopening it");
                current = None;
                sleep_or_cancel(&cancel).await;
                continue;
            }
        }

        match look_at_end(&path, open).await {
            AtEnd::Replaced => {
                tracing::info!(file = %path.display(), "the file was rotated: read the old one to its end, now reading the new one");
                if !deliver(&mut framer, &sink, true, &path).await {
                    return;
                }
                current = None;
            }
            AtEnd::Truncated => {
                tracing::info!(file = %path.display(), "the file was truncated: reading it again from its start");
                if !deliver(&mut framer, &sink, true, &path).await {
                    return;
                }
                if open.file.seek(io::SeekFrom::Start(0)).await.is_err() {
                    current = None;
                } else {
                    open.offset = 0;
                    report(0, true);
                }
            }
            AtEnd::Idle => sleep_or_cancel(&cancel).await,
        }
    }
    // Complete records still in the buffer go on; an unfinished last line stays unread.
    deliver(&mut framer, &sink, false, &path).await;
}

/// Hands the framer's records to the sink; false when the sink is closed.
async fn deliver(framer: &mut Framer, sink: &RecordSink, at_end: bool, path: &Path) -> bool {
    match framer.records(at_end) {
        Ok(records) => sink.send(records).await.is_ok(),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot frame the feed file");
            true
        }
    }
}

async fn open_file(path: &Path) -> io::Result<Open> {
    let file = File::open(path).await?;
    let meta = file.metadata().await?;
    Ok(Open {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        offset: 0,
    })
}

async fn look_at_end(path: &Path, open: &Open) -> AtEnd {
    match tokio::fs::metadata(path).await {
        Ok(meta) if (meta.dev(), meta.ino()) != (open.dev, open.ino) => AtEnd::Replaced,
        Ok(_) => match open.file.metadata().await {
            Ok(meta) if meta.len() < open.offset => AtEnd::Truncated,
            _ => AtEnd::Idle,
        },
        // Renamed away or deleted with no successor yet: keep reading the open handle.
        Err(_) => AtEnd::Idle,
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(POLL_INTERVAL) => {}
        _ = cancel.cancelled() => {}
    }
}

fn set_report(stats: &Stats, path: &Path, offset: u64, open: bool) {
    let mut files = stats.feed.files.lock().unwrap();
    match files.iter_mut().find(|f| f.path == path) {
        Some(file) => {
            file.offset = offset;
            file.open = open;
        }
        None => files.push(FileReport {
            path: path.to_path_buf(),
            offset,
            open,
        }),
    }
}
