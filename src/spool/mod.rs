//! Sealed batches on disk: the only place data waits between the feed and MCAS.
//!
//! # Directories
//!
//! ```text
//! <state_dir>/spool/
//!   open/        batches being written, one per batch writer; merges and salvages in
//!                progress; the claims of a batch being sealed
//!   ready/       sealed batches, uploaded oldest first
//!   quarantine/  files MCAS refused, that failed a check, or that the spool did not name,
//!                each with a <NAME>.reason file saying why
//!   delivered/   an empty marker per batch MCAS accepted whose removal from ready/ is due
//!   sent/        <READY NAME>.json: the upload URL of a batch whose done_upload was sent,
//!                until the batch leaves (see `done_sent`; created when first needed)
//! <state_dir>/checkpoints/<FNV-1a of the path, 16 hex>.json
//!                where each tailed file was read to (see `crate::feed::checkpoint`)
//! ```
//!
//! # Names
//!
//! Built, printed and parsed by [`BatchName`] only. Numbers are decimal without leading
//! zeros, except `SEQ` and `LAST` (20 digits) and `CRC` (8 lowercase hex digits): a name
//! that parses prints back to itself.
//!
//! ```text
//! open/   w<WRITER>-<ORIGIN>-<PID>-<NANOS>.gz.part   ORIGIN: tcp | file
//!         <OPEN NAME>.claims                         JSON lines, one per tailed file
//!         merge-<PID>-<NANOS>.gz.part
//!         salvage-<OPEN NAME>
//!         salvaged-<RECORDS>r-<RAW>b-<OPEN NAME>
//! ready/  <SEQ>-<SEALEDMS>-<RECORDS>r-<RAW>b[-<CRC>c][-<LAST>m].gz
//! quarantine/  <ORIGINAL NAME>[.<N>]  and  <that>.reason
//! ```
//!
//! `SEQ` orders the batches; `SEALEDMS` is the seal's time in milliseconds since the epoch;
//! `RAW` counts uncompressed bytes with a newline after every record. `CRC` is the CRC-32
//! of the file's bytes as they were written: the name and the bytes arrive in `ready/` by
//! the same rename, and the check before upload compares them. A name without it (salvaged
//! batches, older versions) is checked by decompressing. `LAST` marks a merged batch: the
//! sequence number of its newest source (its `SEQ` is its oldest's).
//!
//! # States of a batch
//!
//! ```text
//!  open/w…gz.part ──seal (fsync, rename, fsync dir)──▶ ready/SEQ…gz ──MCAS accepted──▶ gone
//!     │  (claims written beside it first,                │   │  (delivered/ marker, remove,
//!     │   deleted once the checkpoints are saved)        │   │   marker removed)
//!     │                                                  │   └──refused / damaged──▶ quarantine/
//!     └──crash──▶ recovery: tcp ▶ salvaged into ready/   └──merge──▶ ready/SEQ…-LASTm.gz
//!                           file ▶ deleted (read again)       (written in open/merge-…, renamed,
//!                                                              then the sources deleted)
//! ```
//!
//! A file enters `ready/` only by rename after its gzip trailer is written and fsynced,
//! and leaves it only after MCAS accepted it, so a crash never uploads half a batch.
//! Between the rename and a successful sync of `ready/` and `open/` after it, a batch (a
//! merged one with its sources) is withheld from upload (see `withheld`): a failed sync
//! keeps it so until one succeeds. A merge also grows source by source while the uploader
//! sends it ahead (see `growing_merge`): the same `open/merge-…` part, sealed the same way.
//!
//! # Crash points
//!
//! A crash between two steps of a change leaves a state the next start finishes or undoes
//! ([`Spool::prepare`], then [`Spool::recover`]). The debug builds' crash points
//! (`NSS_CRASH_AT`, see [`crate::crashpoint`]) kill the process exactly there, and the
//! integration tests start again after each:
//!
//! | point | between | what the next start does |
//! |---|---|---|
//! | `sealed-before-checkpoint` | a batch of tailed records sealed, its checkpoints not yet saved | its claims in `open/` have no batch beside them: they move the checkpoints past their ranges, then go |
//! | `checkpoint-with-sealed-ranges` | a checkpoint saved with ranges sealed beyond its offset | the tail resumes at the offset and skips those ranges |
//! | `salvage-written` | a complete `salvaged-…` written, its unsealed source still there | the source is deleted, the salvage sealed: its records once |
//! | `salvage-source-removed` | the source deleted, the salvage not yet sealed | the salvage is sealed |
//! | `sealed-unsynced` | a batch of tailed records renamed into `ready/`, the sync after the rename failed (`NSS_FAIL_AT=seal-sync-ready`): unacknowledged, its claims beside it | as after `sealed-before-checkpoint` when the rename reached the disk; when it did not, the batch is back in `open/` and deleted with its claims, its records read again |
//! | `broken-batch-half-removed` | a batch of tailed records the disk failed to seal, being removed once it takes writes again: its claims deleted, the batch not yet | the batch is deleted, its records read again (claims deleted first: left alone, they would move the checkpoints past those records) |
//!
//! Steps without a named point are guarded the same way: a merge killed before its rename
//! leaves `open/merge-…` (deleted; its sources still wait), after it leaves sources beside
//! the merged batch (deleted by the scan, never uploaded twice); a batch removed after
//! delivery is marked in `delivered/` first; a salvage killed while written leaves
//! `salvage-…` (deleted, its source salvaged again).
//!
//! # JSON files
//!
//! The claims, the checkpoints and the `sent/` records carry a version tag (see
//! [`crate::versioned`]): a file of a newer version than this build reads is refused,
//! naming it, and left as it is.

mod batch_file;
mod checksum;
pub(crate) mod counters;
mod delivered;
mod done_sent;
mod growing_merge;
mod merge;
mod name;
mod recover;
mod verify;
mod withheld;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

pub use batch_file::{BatchFile, Written};
pub use done_sent::DoneSent;
pub use growing_merge::GrowingMerge;
pub use merge::{merge_run, MergeFailed, MCAS_MAX_FILE};
pub use name::{BatchName, ForeignName, MergeName, OpenName, QuarantineName, SealedName};
pub use recover::Recovery;
pub use verify::Damage;

use crate::durable_fs::{sync_dir, AtomicWrite};
use crate::handoff::Origin;

use crate::clock::unix_millis;
use crate::crashpoint;

/// One sealed batch waiting in `ready/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    pub path: PathBuf,
    /// Order of sealing: lower goes first.
    pub seq: u64,
    pub sealed_at: SystemTime,
    pub records: u64,
    /// Uncompressed bytes, with a newline after every record.
    pub raw_bytes: u64,
    /// Bytes of the gzip file.
    pub gzip_bytes: u64,
    /// CRC-32 of the file's bytes recorded at its seal; `None` for a file whose bytes were
    /// not checksummed as they were written (a salvage, an older version's batch).
    pub checksum: Option<u32>,
    /// For a merged batch, the sequence number of its newest source.
    pub last: Option<u64>,
}

impl SealedBatch {
    /// The batch named `name` in `dir`, of `gzip_bytes`.
    fn named(dir: &Path, name: &SealedName, gzip_bytes: u64) -> SealedBatch {
        SealedBatch {
            path: dir.join(name.to_string()),
            seq: name.seq,
            sealed_at: name.sealed_at(),
            records: name.records,
            raw_bytes: name.raw_bytes,
            gzip_bytes,
            checksum: name.checksum,
            last: name.last,
        }
    }

    /// Reads a batch back from its file name; `None` when the name is not one the spool wrote.
    fn parse(path: &Path, gzip_bytes: u64) -> Option<SealedBatch> {
        let name: SealedName = path.file_name()?.to_str()?.parse().ok()?;
        Some(SealedBatch::named(path.parent()?, &name, gzip_bytes))
    }

    /// The sequence number of the last batch this one holds: its own, or for a merged
    /// batch that of its newest source.
    pub fn last_seq(&self) -> u64 {
        self.last.unwrap_or(self.seq)
    }
}

/// How long what waits for the spool's disk to take writes again (a batch writer's
/// records, a done_upload's record) waits between tries.
pub const DISK_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The unsealed batches' directory under the spool's root.
pub const OPEN_DIR: &str = "open";
/// The sealed batches' directory under the spool's root.
pub const READY_DIR: &str = "ready";
/// The quarantine's directory under the spool's root.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The directory of the markers of delivered batches under the spool's root.
pub const DELIVERED_DIR: &str = "delivered";

/// What the spool holds, as the status reports it (`spool.batches`, `bytes`, `oldest`,
/// `quarantined`): the daemon's from its own scans ([`Spool::view`]), `nss status`'s from
/// the directories alone ([`SpoolView::peek`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolView {
    /// The sealed batches to upload, oldest first.
    pub ready: Vec<SealedBatch>,
    /// Files in quarantine, earlier runs' too (their reasons not counted).
    pub quarantined: u64,
}

impl SpoolView {
    /// The spool at `root` as its directories show it, only read: nothing is created,
    /// moved or deleted (for `nss status`, often run as root). Files whose names the spool
    /// did not write, and the sources a crashed merge left beside the merged batch, are
    /// left out, as the daemon's next scan would move or delete them.
    pub fn peek(root: &Path) -> SpoolView {
        let mut ready: Vec<SealedBatch> = fs::read_dir(root.join(READY_DIR))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| SealedBatch::parse(&e.path(), e.metadata().ok()?.len()))
                    .collect()
            })
            .unwrap_or_default();
        ready.sort_by_key(|b| b.seq);
        let merged = merge::merged_sources(&ready);
        let ready = ready
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !merged.contains(i))
            .map(|(_, b)| b)
            .collect();
        SpoolView {
            ready,
            quarantined: count_quarantined(&root.join(QUARANTINE_DIR)).unwrap_or(0),
        }
    }

    /// Sealed batches waiting.
    pub fn batches(&self) -> u64 {
        self.ready.len() as u64
    }

    /// Bytes of the sealed batches waiting, as stored (gzip).
    pub fn bytes(&self) -> u64 {
        self.ready.iter().map(|b| b.gzip_bytes).sum()
    }

    /// When the oldest batch waiting was sealed.
    pub fn oldest(&self) -> Option<SystemTime> {
        self.ready.first().map(|b| b.sealed_at)
    }
}

/// How many files are in the quarantine directory `dir` (their reasons not counted).
fn count_quarantined(dir: &Path) -> io::Result<u64> {
    let mut count = 0;
    for entry in fs::read_dir(dir)? {
        if !QuarantineName::is_reason(&entry?.file_name().to_string_lossy()) {
            count += 1;
        }
    }
    Ok(count)
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    unsealed_dir: PathBuf,
    ready_dir: PathBuf,
    quarantine_dir: PathBuf,
    delivered_dir: PathBuf,
    /// Created when first needed: see [`done_sent`].
    sent_dir: PathBuf,
    /// Batches MCAS accepted that are still in `ready/` because removing them failed, by
    /// file name: never offered for upload again, their removal retried at each scan.
    undeleted: Mutex<BTreeMap<String, SealedBatch>>,
    next_seq: AtomicU64,
    sealed: Arc<Notify>,
    /// Bytes of the sealed batches, kept up to date by every change and every scan.
    ready_bytes: AtomicU64,
    /// Batches the writers are filling now (each holds a [`Filling`]).
    filling: Arc<AtomicU64>,
    /// Batches in `ready/` whose rename is not yet known to be durable: left out of scans.
    withheld: withheld::Withheld,
    /// When a writer last took a chunk, in milliseconds after `opened` (0: never).
    fed_ms: AtomicU64,
    opened: std::time::Instant,
}

/// A batch sealed by [`Spool::seal_written`].
#[derive(Debug)]
pub struct Sealed {
    pub batch: SealedBatch,
    /// The sync of `ready/` or `open/` after the rename failed: the batch is in `ready/`,
    /// but a crash could still undo its rename. It is kept from upload (and what it holds
    /// of tailed files is to stay unacknowledged, its claims beside it) until
    /// [`Spool::sync_withheld`], or another seal's sync, succeeds.
    pub unsynced: Option<io::Error>,
}

/// A batch being filled: counted in [`Spool::filling`] until dropped (once sealed, or set
/// aside), which wakes [`Spool::wait_sealed`]: the uploader then sees the seal and the end
/// of the filling together.
#[derive(Debug)]
pub struct Filling {
    count: Arc<AtomicU64>,
    sealed: Arc<Notify>,
}

impl Drop for Filling {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.sealed.notify_one();
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `root`. Files in `ready/` the spool did not
    /// name are moved to quarantine; batches an earlier run delivered are removed, never
    /// offered again; batches a previous run left unsealed wait for [`Spool::recover`].
    pub fn prepare(root: &Path) -> io::Result<Spool> {
        let spool = Spool {
            unsealed_dir: root.join(OPEN_DIR),
            ready_dir: root.join(READY_DIR),
            quarantine_dir: root.join(QUARANTINE_DIR),
            delivered_dir: root.join(DELIVERED_DIR),
            sent_dir: root.join(done_sent::SENT_DIR),
            undeleted: Mutex::new(BTreeMap::new()),
            next_seq: AtomicU64::new(0),
            sealed: Arc::new(Notify::new()),
            ready_bytes: AtomicU64::new(0),
            filling: Arc::default(),
            withheld: withheld::Withheld::default(),
            fed_ms: AtomicU64::new(0),
            opened: std::time::Instant::now(),
        };
        for dir in [
            &spool.unsealed_dir,
            &spool.ready_dir,
            &spool.quarantine_dir,
            &spool.delivered_dir,
        ] {
            fs::create_dir_all(dir)?;
        }
        let (ready, _) = spool.scan_ready_all()?;
        spool.remove_delivered(&ready)?;
        let next = ready.iter().map(|b| b.last_seq() + 1).max().unwrap_or(0);
        spool.next_seq.store(next, Ordering::Relaxed);
        Ok(spool)
    }

    /// A path in `open/` for a new batch of writer `writer`, of records from `origin`
    /// (its name in the file's name says what [`Spool::recover`] does with it after a
    /// crash).
    pub fn new_batch_path(&self, writer: usize, origin: Origin) -> PathBuf {
        self.unsealed_dir
            .join(OpenName::new(writer, origin).to_string())
    }

    /// Moves a complete, fsynced batch file from `open/` into `ready/` and makes the
    /// rename itself durable. Wakes the uploader. The file's bytes were not checksummed as
    /// they were written: the check before upload decompresses it whole. Used for batches
    /// of TCP records salvaged (at a start, or from a batch the disk failed): when only the
    /// sync after the rename fails, the batch counts as sealed, withheld from upload until
    /// a later sync succeeds (its source is gone; a crash meanwhile finds the salvage in
    /// `open/` or in `ready/`, and seals or uploads it once).
    pub fn seal(&self, unsealed: &Path, records: u64, raw_bytes: u64) -> io::Result<SealedBatch> {
        let sealed = self.seal_file(unsealed, records, raw_bytes, None, &[])?;
        if let Some(error) = sealed.unsynced {
            tracing::warn!(file = %sealed.batch.path.display(), %error, "a sealed batch's directory could not be synced: it waits until a sync succeeds");
        }
        Ok(sealed.batch)
    }

    /// Seals a batch file as [`Spool::seal`] does, with the checksum of its bytes in its
    /// name, and `claims` (what the batch holds of tailed files, see
    /// [`crate::handoff::SealWatcher::claims`]) kept durably beside it until
    /// [`Spool::settled`]: a crash after the seal and before the checkpoints are saved
    /// leaves them for [`Spool::recover`]. An error means the batch is still in `open/`;
    /// a failed sync after the rename is [`Sealed::unsynced`].
    pub fn seal_written(&self, written: &Written, claims: &[u8]) -> io::Result<Sealed> {
        self.seal_file(
            &written.path,
            written.records,
            written.raw_bytes,
            Some(written.checksum),
            claims,
        )
    }

    fn seal_file(
        &self,
        unsealed: &Path,
        records: u64,
        raw_bytes: u64,
        checksum: Option<u32>,
        claims: &[u8],
    ) -> io::Result<Sealed> {
        if !claims.is_empty() {
            AtomicWrite::durable(0o644).write(&claims_path(unsealed), claims)?;
        }
        let gzip_bytes = fs::metadata(unsealed)?.len();
        let name = SealedName {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            sealed_ms: unix_millis(SystemTime::now()),
            records,
            raw_bytes,
            checksum,
            last: None,
        };
        let batch = SealedBatch::named(&self.ready_dir, &name, gzip_bytes);
        let unsynced = self
            .rename_into_ready(unsealed, &batch, "seal-sync-ready")?
            .err();
        self.ready_bytes.fetch_add(gzip_bytes, Ordering::Relaxed);
        self.sealed.notify_one();
        Ok(Sealed { batch, unsynced })
    }

    /// Renames `from` to `batch` in `ready/`, then syncs `ready/` and `open/`, the batch
    /// withheld from scans until that sync succeeds (see [`withheld`]). The outer error is
    /// the rename's (nothing moved); the inner one the sync's (`crash_point` names it for
    /// `NSS_FAIL_AT`).
    fn rename_into_ready(
        &self,
        from: &Path,
        batch: &SealedBatch,
        crash_point: &str,
    ) -> io::Result<io::Result<()>> {
        let name = file_name(&batch.path);
        self.withheld.renaming(&name, batch.seq, batch.last_seq());
        if let Err(error) = fs::rename(from, &batch.path) {
            if from.exists() || !batch.path.exists() {
                self.withheld.release(&name);
                return Err(error);
            }
            // Done all the same (a network file system's lost answer): as durable as a
            // rename whose sync failed.
            self.withheld.sync_failed(&name);
            return Ok(Err(error));
        }
        // Renames whose sync failed before this one's: made durable by it too.
        let earlier = self.withheld.failed();
        let synced = crashpoint::fail_once(crash_point)
            .and_then(|()| sync_dir(&self.ready_dir))
            .and_then(|()| sync_dir(&self.unsealed_dir));
        match &synced {
            Ok(()) => {
                self.withheld.release(&name);
                self.withheld.synced(&earlier);
            }
            Err(_) => self.withheld.sync_failed(&name),
        }
        Ok(synced)
    }

    /// Tries again the syncs that failed after renames into `ready/` (see
    /// [`Sealed::unsynced`]); once one succeeds, those batches are offered for upload
    /// again, and the uploader woken.
    pub fn sync_withheld(&self) -> io::Result<()> {
        let failed = self.withheld.failed();
        if failed.is_empty() {
            return Ok(());
        }
        sync_dir(&self.ready_dir)?;
        sync_dir(&self.unsealed_dir)?;
        self.withheld.synced(&failed);
        tracing::info!(
            batches = failed.len(),
            "the spool's directories synced again: the batches withheld meanwhile are offered for upload"
        );
        self.sealed.notify_one();
        Ok(())
    }

    /// Whether a sync after a rename into `ready/` failed and no sync succeeded since: the
    /// inputs stop reading meanwhile.
    pub fn sync_failed(&self) -> bool {
        self.withheld.any_failed()
    }

    /// Replaces the claims kept beside the batch sealed from `unsealed` (see
    /// [`Spool::seal_written`]), durably: a chunk whose last record sealed it joins them.
    pub fn rewrite_claims(&self, unsealed: &Path, claims: &[u8]) -> io::Result<()> {
        AtomicWrite::durable(0o644).write(&claims_path(unsealed), claims)
    }

    /// The batch `unsealed` failed to seal and is about to be deleted (its records are read
    /// again): its claims go first, durably, so that a crash never leaves them without it.
    pub fn drop_claims(&self, unsealed: &Path) -> io::Result<()> {
        match fs::remove_file(claims_path(unsealed)) {
            Ok(()) => sync_dir(&self.unsealed_dir),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The checkpoints of the batch sealed from `unsealed` are saved: its claims go.
    pub fn settled(&self, unsealed: &Path) {
        let claims = claims_path(unsealed);
        if claims.exists() {
            if let Err(error) = fs::remove_file(&claims) {
                tracing::warn!(file = %claims.display(), %error, "cannot remove a sealed batch's claims");
            }
        }
    }

    /// The sealed batches to upload, oldest first: those MCAS accepted but that could not
    /// be removed are left out (and their removal tried again). Files whose names the
    /// spool did not write are moved to quarantine.
    pub fn scan_ready(&self) -> io::Result<Vec<SealedBatch>> {
        self.retry_removals();
        // The writers try this too, and say when it fails.
        let _ = self.sync_withheld();
        let (ready, _) = self.scan_ready_all()?;
        let undeleted = self.undeleted.lock().unwrap();
        Ok(ready
            .into_iter()
            .filter(|b| !undeleted.contains_key(&file_name(&b.path)))
            .collect())
    }

    /// Every batch in `ready/`, oldest first, and their bytes.
    fn scan_ready_all(&self) -> io::Result<(Vec<SealedBatch>, u64)> {
        let mut batches = Vec::new();
        for entry in fs::read_dir(&self.ready_dir)? {
            let entry = entry?;
            let path = entry.path();
            let len = entry.metadata()?.len();
            match SealedBatch::parse(&path, len) {
                Some(batch) => batches.push(batch),
                None => {
                    tracing::warn!(file = %path.display(), "not a batch the spool wrote; moving it to quarantine");
                    self.quarantine(&path, "file name is not one the spool writes")?;
                }
            }
        }
        batches.sort_by_key(|b| b.seq);
        // Withheld batches take room all the same; before their sync they are neither
        // uploaded nor, as a merge's sources, deleted.
        let (withheld, mut batches): (Vec<_>, Vec<_>) =
            batches.into_iter().partition(|b| self.withheld.hides(b));
        self.drop_merged_sources(&mut batches)?;
        let bytes = batches.iter().chain(&withheld).map(|b| b.gzip_bytes).sum();
        self.ready_bytes.store(bytes, Ordering::Relaxed);
        Ok((batches, bytes))
    }

    /// A writer starts filling a batch: more records are on their way to a seal while the
    /// returned guard lives.
    pub fn start_filling(&self) -> Filling {
        self.filling.fetch_add(1, Ordering::Relaxed);
        Filling {
            count: self.filling.clone(),
            sealed: self.sealed.clone(),
        }
    }

    /// Whether a writer is filling a batch now: the uploader keeps an upload's calls back
    /// for it.
    pub fn filling(&self) -> bool {
        self.filling.load(Ordering::Relaxed) > 0
    }

    /// A writer took a chunk of records.
    pub fn fed(&self) {
        self.fed_ms.store(self.ms_open(), Ordering::Relaxed);
    }

    /// Milliseconds since the spool was opened, from 1.
    fn ms_open(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    /// Whether more records are on their way to a seal: a writer is filling a batch, or
    /// took a chunk within `within` (in a steady feed, after a batch sealed by age and
    /// before the next chunk, none may be filling for a moment).
    pub fn more_coming(&self, within: Duration) -> bool {
        if self.filling() {
            return true;
        }
        let fed = self.fed_ms.load(Ordering::Relaxed);
        fed > 0 && Duration::from_millis(self.ms_open() - fed) < within
    }

    /// Waits until a batch is sealed after this call (or one was sealed since the last
    /// wait), or a writer stops filling one.
    pub async fn wait_sealed(&self) {
        self.sealed.notified().await
    }

    fn forget_ready_bytes(&self, bytes: u64) {
        let _ = self
            .ready_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// The size of the spool's file system and the bytes free on it, if they can be seen.
    pub fn disk(&self) -> Option<(u64, u64)> {
        let fs = nix::sys::statvfs::statvfs(&self.unsealed_dir).ok()?;
        Some((
            fs.blocks() * fs.fragment_size(),
            fs.blocks_available() * fs.fragment_size(),
        ))
    }

    /// Whether the spool's file system is mounted read-only now.
    pub fn is_read_only(&self) -> bool {
        nix::sys::statvfs::statvfs(&self.unsealed_dir)
            .is_ok_and(|fs| fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    }

    /// Bytes of the sealed batches waiting.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes.load(Ordering::Relaxed)
    }

    /// Moves a file into quarantine, with a `.reason` file beside it saying why.
    pub fn quarantine(&self, path: &Path, reason: &str) -> io::Result<PathBuf> {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        // Never over another quarantined file of the same name.
        let mut name = QuarantineName {
            original: base,
            copy: 0,
        };
        while self.quarantine_dir.join(name.to_string()).exists() {
            name.copy += 1;
        }
        let target = self.quarantine_dir.join(name.to_string());
        let from_ready = path.parent() == Some(self.ready_dir.as_path());
        let len = fs::metadata(path).map_or(0, |m| m.len());
        fs::rename(path, &target)?;
        if from_ready {
            self.forget_ready_bytes(len);
        }
        fs::write(
            self.quarantine_dir.join(name.reason()),
            format!("{reason}\n"),
        )?;
        sync_dir(&self.quarantine_dir)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(target)
    }

    /// How many batches are in quarantine.
    pub fn quarantined(&self) -> io::Result<u64> {
        count_quarantined(&self.quarantine_dir)
    }

    /// What the spool holds now: a scan as [`Spool::scan_ready`] does it (strangers moved
    /// to quarantine, batches delivered but not yet removed left out), and the quarantine.
    pub fn view(&self) -> io::Result<SpoolView> {
        Ok(SpoolView {
            ready: self.scan_ready()?,
            quarantined: self.quarantined()?,
        })
    }

    /// The quarantine directory.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine_dir
    }
}

/// Where the claims of the batch being sealed from `unsealed` are kept.
fn claims_path(unsealed: &Path) -> PathBuf {
    let mut name = unsealed.as_os_str().to_owned();
    name.push(name::CLAIMS_SUFFIX);
    PathBuf::from(name)
}

/// A path's file name as text.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;

    #[test]
    fn seals_in_order_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        for i in 0..3u64 {
            let open = spool.new_batch_path(0, Origin::Stream);
            fs::write(&open, vec![0u8; 10 + i as usize]).unwrap();
            spool.seal(&open, i + 1, 100 * (i + 1)).unwrap();
        }
        let ready = spool.scan_ready().unwrap();
        assert_eq!(
            ready.iter().map(|b| b.records).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(ready[2].raw_bytes, 300);
        assert_eq!(ready[2].gzip_bytes, 12);

        spool.delivered(&ready[0]).unwrap();
        drop(spool);
        let spool = Spool::prepare(dir.path()).unwrap();
        let open = spool.new_batch_path(1, Origin::Stream);
        fs::write(&open, b"x").unwrap();
        let fourth = spool.seal(&open, 4, 4).unwrap();
        assert_eq!(
            fourth.seq, 3,
            "a reopened spool keeps counting after the newest batch"
        );
        assert_eq!(spool.scan_ready().unwrap().len(), 3);
    }

    #[test]
    fn a_peek_sees_what_the_daemon_sees_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        for i in 0..3u64 {
            let mut file = BatchFile::create(&spool.new_batch_path(0, Origin::Stream), 6).unwrap();
            file.append(format!("record {i}").as_bytes()).unwrap();
            spool.seal_written(&file.finish().unwrap(), &[]).unwrap();
        }
        let ready = spool.scan_ready().unwrap();
        // A crash after a merge was sealed and before its sources were deleted, a stranger
        // in ready/, and a quarantined file with its reason.
        let merged = spool
            .merge_oldest(&ready[..2], 1 << 30, 6)
            .unwrap()
            .unwrap();
        fs::copy(&merged.path, &ready[0].path).unwrap();
        fs::write(dir.path().join("ready/notes.txt"), b"?").unwrap();
        let junk = dir.path().join("open/junk");
        fs::write(&junk, b"?").unwrap();
        spool.quarantine(&junk, "a test").unwrap();
        let files = |d: &str| fs::read_dir(dir.path().join(d)).unwrap().count();
        let before = (files("ready"), files("quarantine"));

        let peeked = SpoolView::peek(dir.path());
        assert_eq!(peeked.ready, vec![merged.clone(), ready[2].clone()]);
        assert_eq!(peeked.quarantined, 1);
        assert_eq!(peeked.batches(), 2);
        assert_eq!(peeked.bytes(), merged.gzip_bytes + ready[2].gzip_bytes);
        assert_eq!(peeked.oldest(), Some(merged.sealed_at));
        assert_eq!((files("ready"), files("quarantine")), before, "only read");

        // The daemon's own scan deletes the source, moves the stranger, and agrees.
        let view = spool.view().unwrap();
        assert_eq!(view.ready, peeked.ready);
        assert_eq!(view.quarantined, 2);
        assert_eq!(SpoolView::peek(dir.path()), view);
    }

    #[test]
    fn verify_catches_a_cut_or_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let open = spool.new_batch_path(0, Origin::Stream);
        let mut file = BatchFile::create(&open, 6).unwrap();
        file.append(b"a record").unwrap();
        let written = file.finish().unwrap();
        // The same bytes sealed without their checksum, as a salvage or an older version.
        let copy = spool.new_batch_path(0, Origin::Stream);
        fs::copy(&written.path, &copy).unwrap();
        let unchecked = spool
            .seal(&copy, written.records, written.raw_bytes)
            .unwrap();
        let batch = spool.seal_written(&written, &[]).unwrap().batch;
        assert_eq!(batch.checksum, Some(written.checksum));
        assert_eq!(unchecked.checksum, None);
        for batch in [&batch, &unchecked] {
            spool.verify(batch).unwrap();
            let bytes = fs::read(&batch.path).unwrap();
            fs::write(&batch.path, &bytes[..bytes.len() - 3]).unwrap();
            let cut = spool.verify(batch).unwrap_err();
            assert!(
                matches!(cut, Damage::Checksum { .. } | Damage::CutShort(_)),
                "{cut:?}"
            );
            fs::write(&batch.path, vec![b'x'; 100]).unwrap();
            let foreign = spool.verify(batch).unwrap_err();
            assert!(
                matches!(foreign, Damage::Checksum { .. } | Damage::NotGzip),
                "{foreign:?}"
            );
        }
        assert!(matches!(
            spool.verify(&unchecked).unwrap_err(),
            Damage::NotGzip
        ));
    }

    #[test]
    fn the_checksum_catches_a_byte_the_gzip_stream_does_not_check() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        let mut file = BatchFile::create(&spool.new_batch_path(0, Origin::Stream), 6).unwrap();
        file.append(b"a record").unwrap();
        let batch = spool
            .seal_written(&file.finish().unwrap(), &[])
            .unwrap()
            .batch;
        // The gzip header's OS byte: decompressing never looks at it.
        let mut bytes = fs::read(&batch.path).unwrap();
        bytes[9] ^= 0x01;
        fs::write(&batch.path, &bytes).unwrap();
        assert!(matches!(
            spool.verify(&batch).unwrap_err(),
            Damage::Checksum { .. }
        ));
        // The name is read back with its checksum, as the uploader's scan sees it.
        assert_eq!(spool.scan_ready().unwrap(), vec![batch]);
    }

    #[test]
    fn recover_salvages_tcp_batches_and_drops_file_batches() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::prepare(dir.path()).unwrap();
        // A TCP batch killed after a flush and in the middle of the next record.
        let tcp = spool.new_batch_path(0, Origin::Stream);
        let mut batch = BatchFile::create(&tcp, 6).unwrap();
        batch.append(b"one").unwrap();
        batch.append(b"two").unwrap();
        batch.flush().unwrap();
        std::mem::forget(batch);
        let file = spool.new_batch_path(1, Origin::File);
        fs::write(&file, b"records the file still has").unwrap();
        let junk = spool.new_batch_path(1, Origin::Stream);
        fs::write(&junk, b"not gzip at all").unwrap();
        fs::write(dir.path().join("open/notes.txt"), b"?").unwrap();
        fs::write(dir.path().join("ready/notes.txt"), b"?").unwrap();
        drop(spool);

        let spool = Spool::prepare(dir.path()).unwrap();
        let recovery = spool.recover(6, &mut |_, _| Ok(())).unwrap();
        assert_eq!(
            recovery,
            Recovery {
                salvaged_batches: 1,
                salvaged_records: 2,
                discarded: 1,
                settled_claims: 0,
            }
        );
        let ready = spool.scan_ready().unwrap();
        assert_eq!(ready.len(), 1);
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(File::open(&ready[0].path).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, b"one\ntwo\n");
        assert!(fs::read_dir(dir.path().join("open"))
            .unwrap()
            .next()
            .is_none());
        // The junk "batch" and the two strangers.
        assert_eq!(spool.quarantined().unwrap(), 3);
    }
}
