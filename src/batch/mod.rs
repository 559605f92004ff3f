//! Batching: records from every input into gzip files in the spool, sealed by count,
//! size or age, compressed on threads of their own so that both cores compress when the
//! feed is fast while the async runtime only moves bytes.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock::{self, MonoStamp};
use crate::config::BatchSettings;
use crate::crashpoint;
use crate::handoff::{Chunk, Origin, RecordSink, SealAck};
use crate::latency::Arrivals;
use crate::memory::MemoryBudget;
use crate::spool::counters::SpoolCounters;
use crate::spool::{BatchFile, Filling, Spool, DISK_RETRY};

mod disk_gate;
mod sizing;
pub use disk_gate::DiskGate;
use sizing::SealRules;

/// The running batch writer threads.
pub struct BatchWriters {
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    heartbeats: Heartbeats,
}

/// When each batch writer last went round its loop, on the monotonic clock; a writer
/// stuck in a write or an fsync stops beating, and the watchdog stops pinging systemd. A
/// wall-clock step moves nothing here.
#[derive(Debug, Clone)]
pub struct Heartbeats(Arc<Vec<MonoStamp>>);

impl Heartbeats {
    /// `count` writers' heartbeats, each as if it had just beaten: a writer thread that
    /// has not been scheduled yet when the watchdog first looks is starting, not stalled.
    fn starting_now(count: usize) -> Heartbeats {
        let now = Instant::now();
        Heartbeats(Arc::new(
            (0..count)
                .map(|_| {
                    let stamp = MonoStamp::default();
                    stamp.set(now);
                    stamp
                })
                .collect(),
        ))
    }

    /// Whether every writer went round within `within`.
    pub fn all_within(&self, within: Duration) -> bool {
        self.all_within_at(within, Instant::now())
    }

    /// Whether every writer went round within `within` before `now`.
    pub fn all_within_at(&self, within: Duration, now: Instant) -> bool {
        self.0
            .iter()
            .all(|beat| beat.age_at(now).is_some_and(|age| age <= within))
    }

    fn beat(&self, writer: usize) {
        self.0[writer].touch();
    }
}

/// A writer goes round its loop at least this often, even idle.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// When writers wait for uploads to make room.
#[derive(Debug, Clone)]
struct SpoolRoom {
    /// While the spool holds this many bytes,
    cap: u64,
    /// or while its disk has less than this free.
    disk_reserve: u64,
}

impl BatchWriters {
    /// Starts the writers (`settings.writers`, or one per core) and returns the sink that
    /// feeds them. They stop, sealing what they hold, once every clone of the sink is dropped.
    pub fn start(
        settings: &BatchSettings,
        spool_cap: u64,
        budget: MemoryBudget,
        spool: Arc<Spool>,
        counters: Arc<SpoolCounters>,
        arrivals: Arc<Arrivals>,
    ) -> io::Result<(RecordSink, BatchWriters)> {
        let count = match settings.writers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let rules = SealRules {
            max_records: settings.max_records,
            max_bytes: settings.max_bytes,
            max_age: settings.max_age,
            busy_max_bytes: settings.busy_max_bytes,
            level: settings.gzip_level,
        };
        let room = SpoolRoom {
            cap: spool_cap,
            disk_reserve: spool.disk().map_or(0, |(size, _)| disk_reserve(size)),
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let heartbeats = Heartbeats::starting_now(count);
        let gate = DiskGate::new(spool.clone(), counters.clone());
        let (sink, rx) = RecordSink::new(count * QUEUE_PER_WRITER, budget, gate.clone());
        let mut threads = Vec::with_capacity(count);
        for id in 0..count {
            let writer = Writer {
                id,
                rules: rules.clone(),
                room: room.clone(),
                spool: spool.clone(),
                counters: counters.clone(),
                arrivals: arrivals.clone(),
                current: [None, None],
                held: Vec::new(),
                held_arrived: Instant::now(),
                broken: Vec::new(),
                unsynced: Vec::new(),
                gate: gate.clone(),
                stopping: stopping.clone(),
                heartbeats: heartbeats.clone(),
            };
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("batch-writer-{id}"))
                    .spawn(move || writer.run(rx))?,
            );
        }
        Ok((
            sink,
            BatchWriters {
                threads,
                stopping,
                heartbeats,
            },
        ))
    }

    /// The writers' heartbeats, for the watchdog.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeats.clone()
    }

    /// Shutdown has begun: writers waiting for room in a full spool write anyway (a little
    /// over the cap rather than losing what was read), so that they can stop.
    pub fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Waits until every writer has sealed its batch and stopped. Blocks: call it from a
    /// blocking context.
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a batch writer panicked");
            }
        }
    }
}

/// Chunks a writer may have queued or in hand.
const QUEUE_PER_WRITER: usize = 2;

/// A stream batch is flushed at least this often under load (uncompressed bytes); when
/// the writer has caught up, after every chunk.
const FLUSH_BYTES: u64 = 1 << 20;

/// The batch a writer is filling, not yet sealed.
struct CurrentBatch {
    file: BatchFile,
    /// Counts it among the batches being filled until it is sealed or set aside.
    _filling: Filling,
    /// When its first record arrived: it is sealed `batch.max_age` after.
    first_arrival: Instant,
    /// Chunks whose last record is in this batch.
    acks: Vec<SealAck>,
    /// Its records already counted in `spool.stream_records_on_disk`.
    counted_on_disk: u64,
    /// Records (of TCP) appended since the last flush, which only the writer has until the
    /// next: should the disk fail the batch, they are written again elsewhere.
    unflushed: Vec<Bytes>,
    /// Records handed to the operating system by the last flush, which the batch file
    /// keeps whatever happens to it next.
    flushed_records: u64,
}

/// A batch file the disk failed, left where it is until the disk takes writes again.
struct Broken {
    path: std::path::PathBuf,
    /// Of TCP: its first records, to be sealed into a batch of their own (the writer
    /// holds the rest). Of tailed files: `None`, deleted (the tails read them again).
    flushed_records: Option<u64>,
}

/// A batch in `ready/` whose rename is not yet known to be durable (the sync after it
/// failed): the chunks it completes stay unacknowledged, and its claims beside it, until a
/// sync succeeds. A crash meanwhile finds it in `ready/` (the claims settle the
/// checkpoints) or back in `open/` (deleted with its claims, its records read again).
struct Unsynced {
    /// Where it was written, for its claims.
    unsealed: std::path::PathBuf,
    acks: Vec<SealAck>,
}

/// What a failed [`Writer::write_records`] got done.
struct Failure {
    /// Records of the slice in sealed batches.
    sealed: usize,
    /// Records of the slice appended to batch files, sealed or not.
    appended: usize,
    error: io::Error,
}

/// One writer thread: takes chunks, appends their records to the batches it is filling, one
/// per origin.
struct Writer {
    id: usize,
    rules: SealRules,
    room: SpoolRoom,
    spool: Arc<Spool>,
    counters: Arc<SpoolCounters>,
    /// When each sealed batch's first record arrived, for the delivery latency.
    arrivals: Arc<Arrivals>,
    current: [Option<CurrentBatch>; 2],
    /// Records of TCP taken out of a batch the disk failed, in order: written before
    /// anything else once the disk takes writes again.
    held: Vec<Bytes>,
    held_arrived: Instant,
    /// Batch files the disk failed, to be dealt with once it takes writes again.
    broken: Vec<Broken>,
    /// Sealed batches whose rename is not yet durable, oldest first.
    unsynced: Vec<Unsynced>,
    gate: DiskGate,
    stopping: Arc<AtomicBool>,
    heartbeats: Heartbeats,
}

/// The free disk space writers keep: a twentieth of the file system, within 1 MiB to
/// 256 MiB, so that the disk answers ENOSPC to nobody, the appliance's own logs included.
fn disk_reserve(size: u64) -> u64 {
    (size / 20).clamp(1 << 20, 256 << 20)
}

/// How often a writer waiting for room in the spool looks again.
const ROOM_POLL: Duration = Duration::from_millis(200);

/// At shutdown, how many times a writer tries a disk that refuses its writes before it
/// gives up what it holds.
const DISK_TRIES_AT_STOP: u32 = 5;

const ORIGINS: [Origin; 2] = [Origin::Stream, Origin::File];

impl Writer {
    fn run(mut self, rx: Receiver<Chunk>) {
        loop {
            self.heartbeats.beat(self.id);
            let wait = self
                .current
                .iter()
                .flatten()
                .map(|b| clock::remaining(b.first_arrival, self.rules.max_age, Instant::now()))
                .min()
                .unwrap_or(HEARTBEAT)
                .min(HEARTBEAT);
            match rx.recv_timeout(wait) {
                Ok(mut chunk) => {
                    self.spool.fed();
                    let origin = chunk.origin();
                    self.wait_for_room();
                    self.write_chunk(origin, &mut chunk);
                    if origin == Origin::Stream {
                        self.flush_stream(rx.is_empty());
                    }
                    // Only now is its place in the queue free: written and, when it counts,
                    // flushed.
                    drop(chunk);
                    // Under load the queue is never empty long enough for a timeout: the
                    // other origin's batch, or this one's, may be due meanwhile.
                    self.seal_due();
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Idle: what the last chunk left unflushed (the queue was not empty
                    // then, another writer's chunk in it) is handed to the system now,
                    // so that a kill -9 cannot take it however long the batch stays open.
                    self.flush_stream(true);
                    self.retry_disk();
                    self.seal_due();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let mut tries = 0;
                    while self.waits_for_disk() && tries < DISK_TRIES_AT_STOP {
                        tries += 1;
                        self.heartbeats.beat(self.id);
                        std::thread::sleep(DISK_RETRY);
                        self.retry_disk();
                    }
                    for origin in ORIGINS {
                        self.seal(origin);
                    }
                    if !self.held.is_empty() {
                        tracing::error!(
                            writer = self.id,
                            records = self.held.len(),
                            "stopping while the spool's disk refuses writes: these records read from TCP are lost"
                        );
                    }
                    if !self.unsynced.is_empty() {
                        // Their claims stay beside them: the next start settles them.
                        tracing::warn!(
                            writer = self.id,
                            batches = self.unsynced.len(),
                            "stopping before the spool's directories synced after these seals: the next start finds each batch sealed or not, and loses nothing"
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Waits while the spool is at its cap or its disk nearly full. The chunks queue
    /// behind, the memory budget runs out, and the inputs stop reading: TCP pushes back to
    /// the sender, the tail pauses. Nothing is dropped. Batches due by age are still sealed
    /// meanwhile, so that uploads can make room.
    fn wait_for_room(&mut self) {
        let mut waited = false;
        loop {
            let unsealed: u64 = self
                .current
                .iter()
                .flatten()
                .map(|b| b.file.compressed_bytes())
                .sum();
            let used = self.spool.ready_bytes() + unsealed;
            let free = self.spool.disk().map_or(u64::MAX, |(_, free)| free);
            let full = if used >= self.room.cap {
                Some(format!(
                    "the spool is full ({used} of spool.max_bytes = {} bytes)",
                    self.room.cap
                ))
            } else if free < self.room.disk_reserve {
                Some(format!(
                    "the disk is almost full ({free} bytes free, {} kept in reserve)",
                    self.room.disk_reserve
                ))
            } else {
                None
            };
            let Some(why) = full.filter(|_| !self.stopping.load(Ordering::Relaxed)) else {
                if waited {
                    tracing::info!(
                        writer = self.id,
                        "the spool has room again: reading goes on"
                    );
                    self.counters.full.set(false);
                }
                return;
            };
            if !waited {
                waited = true;
                self.counters.full.set(true);
                self.counters.full_events.add(1);
                tracing::warn!(
                    writer = self.id,
                    "{why}: reading is paused until uploads make room; nothing is dropped"
                );
            }
            self.seal_due();
            self.heartbeats.beat(self.id);
            std::thread::sleep(ROOM_POLL);
        }
    }

    /// Seals the current batches whose age is up, and those past the quiet limits once no
    /// sealed batch waits any more.
    fn seal_due(&mut self) {
        let now = Instant::now();
        let max_age = self.rules.max_age;
        let behind = self.behind();
        for origin in ORIGINS {
            if self.current[origin as usize].as_ref().is_some_and(|b| {
                clock::reached(b.first_arrival, max_age, now)
                    || self
                        .rules
                        .is_full(b.file.records(), b.file.raw_bytes(), behind)
            }) {
                self.seal(origin);
            }
        }
    }

    /// Whether sealed batches wait for upload: batches then grow to the busy ceiling.
    fn behind(&self) -> bool {
        self.spool.ready_bytes() > 0
    }

    fn current(&mut self, origin: Origin) -> &mut Option<CurrentBatch> {
        &mut self.current[origin as usize]
    }

    /// Flushes the stream batch when the writer has caught up, or enough is unflushed.
    fn flush_stream(&mut self, caught_up: bool) {
        let Some(batch) = self.current[Origin::Stream as usize].as_mut() else {
            return;
        };
        if batch.file.unflushed() == 0 {
            return;
        }
        if caught_up || batch.file.unflushed() >= FLUSH_BYTES {
            match batch.file.flush() {
                Ok(()) => {
                    let new = batch.file.flushed_records() - batch.counted_on_disk;
                    batch.counted_on_disk += new;
                    self.counters.stream_records_on_disk.add(new);
                    batch.flushed_records = batch.file.records();
                    batch.unflushed.clear();
                }
                Err(error) => {
                    // What it holds unflushed is kept in memory, the file as it is on
                    // disk; reading stops until the disk takes writes again.
                    self.set_aside(Origin::Stream);
                    self.gate
                        .refused(&format!("flushing a batch failed: {error}"));
                }
            }
        }
    }

    /// Writes every record of the chunk, sealing batches as they fill. A disk error does
    /// not drop the chunk: the broken batch is set aside (see [`Writer::set_aside`]),
    /// reading stops, and the chunk waits in the writer's hand, tried again every second
    /// (the writer goes on beating: waiting for the disk is not being stuck), until the
    /// disk takes writes again. Only at shutdown does a writer give up after a few tries.
    fn write_chunk(&mut self, origin: Origin, chunk: &mut Chunk) {
        let mut next = 0;
        let mut tries = 0;
        loop {
            let result = self.restore().and_then(|()| {
                self.write_records(origin, &chunk.records[next..], chunk.arrived)
                    .map_err(|failure| {
                        // Records of TCP appended to the broken batch are held with it;
                        // those of tailed files are written again from this chunk.
                        next += match origin {
                            Origin::Stream => failure.appended,
                            Origin::File => failure.sealed,
                        };
                        failure.error
                    })
            });
            match result {
                Ok(()) => {
                    if let Some(ack) = chunk.take_ack() {
                        match (
                            self.current[origin as usize].as_mut(),
                            self.unsynced.last_mut(),
                        ) {
                            (Some(batch), _) => batch.acks.push(ack),
                            // The last record sealed its batch, whose sync failed: its
                            // claims say so too, for a crash before the sync.
                            (None, Some(unsynced)) => {
                                unsynced.acks.push(ack);
                                let claims = SealAck::claims(&unsynced.acks);
                                if let Err(error) =
                                    self.spool.rewrite_claims(&unsynced.unsealed, &claims)
                                {
                                    tracing::warn!(writer = self.id, %error, "cannot add a chunk to the claims of a batch waiting for its sync: a crash before the sync would read that chunk again");
                                }
                            }
                            // The last record sealed its batch: all of the chunk is sealed.
                            (None, None) => ack.sealed(),
                        }
                    }
                    if !self.waits_for_disk() {
                        self.gate.accepted();
                    }
                    return;
                }
                Err(error) => {
                    self.set_aside(origin);
                    self.gate.refused(&error);
                    if self.stopping.load(Ordering::Relaxed) && tries >= DISK_TRIES_AT_STOP {
                        if origin == Origin::Stream {
                            tracing::error!(writer = self.id, records = chunk.records.len() - next, "stopping while the spool's disk refuses writes: these records read from TCP are lost");
                        }
                        return;
                    }
                    tries += 1;
                    self.heartbeats.beat(self.id);
                    std::thread::sleep(DISK_RETRY);
                    self.heartbeats.beat(self.id);
                }
            }
        }
    }

    /// Whether the writer holds records, broken batches or unsynced seals for a disk that
    /// failed it.
    fn waits_for_disk(&self) -> bool {
        !self.held.is_empty() || !self.broken.is_empty() || !self.unsynced.is_empty()
    }

    /// Idle, with something held for the disk: tries again.
    fn retry_disk(&mut self) {
        if !self.waits_for_disk() {
            return;
        }
        match self.restore() {
            Ok(()) => {
                self.flush_stream(true);
                if !self.waits_for_disk() {
                    self.gate.accepted();
                }
            }
            Err(error) => {
                self.set_aside(Origin::Stream);
                self.gate.refused(&error);
            }
        }
    }

    /// Takes the current batch of `origin` out of use after the disk failed it. Of TCP:
    /// the file stays where it is, holding what its last flush handed to the operating
    /// system (what a restart would salvage), and the records appended since are held in
    /// memory, to be written again. Of tailed files: the file is to be deleted, and its
    /// chunks' acknowledgements drop, so that the tails read them again.
    fn set_aside(&mut self, origin: Origin) {
        let Some(batch) = self.current(origin).take() else {
            return;
        };
        let CurrentBatch {
            file,
            first_arrival,
            acks,
            unflushed,
            flushed_records,
            // Those counted are in the file, which stays where a restart salvages it.
            counted_on_disk: _,
            _filling,
        } = batch;
        let path = file.path().to_path_buf();
        drop(file);
        drop(acks);
        self.set_aside_file(origin, path, first_arrival, unflushed, flushed_records);
    }

    fn set_aside_file(
        &mut self,
        origin: Origin,
        path: std::path::PathBuf,
        first_arrival: Instant,
        unflushed: Vec<Bytes>,
        flushed_records: u64,
    ) {
        match origin {
            Origin::Stream => {
                if self.held.is_empty() {
                    self.held_arrived = first_arrival;
                }
                self.held.splice(0..0, unflushed);
                self.broken.push(Broken {
                    path,
                    flushed_records: Some(flushed_records),
                });
            }
            Origin::File => self.broken.push(Broken {
                path,
                flushed_records: None,
            }),
        }
    }

    /// Once the disk takes writes: the broken batches dealt with (the flushed records of
    /// TCP sealed into a batch of their own, files' batches deleted), then the held
    /// records written, in order, before anything newer.
    fn restore(&mut self) -> io::Result<()> {
        if !self.unsynced.is_empty() {
            self.spool.sync_withheld()?;
            self.synced();
        }
        while let Some(broken) = self.broken.first() {
            // Its claims (a batch of tailed records has them) go first: left without their
            // batch (a crash before it is dealt with), they would move the checkpoints past
            // records that no batch holds.
            self.spool.drop_claims(&broken.path)?;
            match broken.flushed_records {
                Some(records) if records > 0 => {
                    let saved =
                        self.spool
                            .salvage_flushed(&broken.path, records, self.rules.level)?;
                    if saved < records {
                        tracing::error!(writer = self.id, file = %broken.path.display(), flushed = records, saved, "the disk lost records of a batch it had accepted");
                    }
                }
                _ => {
                    crashpoint::here("broken-batch-half-removed");
                    match std::fs::remove_file(&broken.path) {
                        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                        _ => {}
                    }
                }
            }
            self.broken.remove(0);
        }
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let arrived = self.held_arrived;
        match self.write_records(Origin::Stream, &held, arrived) {
            Ok(()) => Ok(()),
            Err(failure) => {
                // Those appended are in the current batch, set aside by the caller.
                self.held = held[failure.appended..].to_vec();
                self.set_aside(Origin::Stream);
                Err(failure.error)
            }
        }
    }

    /// Appends records that arrived at `arrived`, returning on error how many were sealed
    /// and how many appended before it.
    fn write_records(
        &mut self,
        origin: Origin,
        records: &[Bytes],
        arrived: Instant,
    ) -> Result<(), Failure> {
        let mut sealed = 0;
        let fail = |sealed: usize, appended: usize| {
            move |error: io::Error| Failure {
                sealed,
                appended,
                error,
            }
        };
        for (i, record) in records.iter().enumerate() {
            let size = record.len() as u64 + 1;
            let behind = self.behind();
            let rules = &self.rules;
            if self.current[origin as usize].as_ref().is_some_and(|b| {
                b.file.records() > 0 && rules.overflows(b.file.raw_bytes(), size, behind)
            }) {
                self.try_seal(origin).map_err(fail(sealed, i))?;
                sealed = i;
            }
            if self.current(origin).is_none() {
                let path = self.spool.new_batch_path(self.id, origin);
                let file = BatchFile::create(&path, self.rules.level).map_err(fail(sealed, i))?;
                *self.current(origin) = Some(CurrentBatch {
                    file,
                    _filling: self.spool.start_filling(),
                    first_arrival: arrived,
                    acks: Vec::new(),
                    counted_on_disk: 0,
                    unflushed: Vec::new(),
                    flushed_records: 0,
                });
            }
            let batch = self.current[origin as usize]
                .as_mut()
                .expect("opened above");
            batch.file.append(record).map_err(fail(sealed, i))?;
            if origin == Origin::Stream {
                batch.unflushed.push(record.clone());
            }
            if self
                .rules
                .is_full(batch.file.records(), batch.file.raw_bytes(), behind)
            {
                self.try_seal(origin).map_err(fail(sealed, i + 1))?;
                sealed = i + 1;
            }
        }
        Ok(())
    }

    /// Seals the current batch; a failure sets it aside and stops reading until the disk
    /// takes writes again.
    fn seal(&mut self, origin: Origin) {
        if let Err(error) = self.try_seal(origin) {
            self.gate.refused(&error);
        }
    }

    fn try_seal(&mut self, origin: Origin) -> io::Result<()> {
        let Some(current) = self.current(origin).take() else {
            return Ok(());
        };
        let path = current.file.path().to_path_buf();
        let open_for = current.first_arrival.elapsed();
        let counted_on_disk = current.counted_on_disk;
        // What the batch holds of tailed files, kept beside it while it is sealed: a crash
        // between the seal and the checkpoints' save is settled at the next start.
        let claims = SealAck::claims(&current.acks);
        let result = current
            .file
            .finish()
            .and_then(|written| self.spool.seal_written(&written, &claims));
        match result {
            Ok(sealed) => {
                let spool = &self.counters;
                let batch = &sealed.batch;
                spool.sealed.add(1);
                spool.sealed_records.add(batch.records);
                if origin == Origin::Stream {
                    spool
                        .stream_records_on_disk
                        .add(batch.records - counted_on_disk);
                }
                spool.seal_latency_max.raise_to(open_for.as_secs_f64());
                spool.seal_latency.observe(open_for, 1);
                self.arrivals.sealed(batch.seq, open_for);
                tracing::debug!(
                    writer = self.id,
                    seq = batch.seq,
                    records = batch.records,
                    raw = batch.raw_bytes,
                    gzip = batch.gzip_bytes,
                    "sealed a batch"
                );
                if let Some(error) = sealed.unsynced {
                    // Sealed, but not yet for sure: held like the rest until the disk
                    // syncs. Not an error of this write: the records are in the batch.
                    tracing::error!(writer = self.id, seq = batch.seq, %error, "the spool's directory failed to sync after a seal: the batch waits, unacknowledged and not uploaded, and reading stops until a sync succeeds");
                    self.unsynced.push(Unsynced {
                        unsealed: path,
                        acks: current.acks,
                    });
                    crashpoint::here("sealed-unsynced");
                    self.gate
                        .refused(&format!("syncing the spool after a seal failed: {error}"));
                    return Ok(());
                }
                // This seal's sync made every earlier rename durable too.
                self.synced();
                crashpoint::here("sealed-before-checkpoint");
                SealAck::all_sealed(current.acks);
                self.spool.settled(&path);
                Ok(())
            }
            Err(error) => {
                // Still in open/: the acknowledgements drop unsealed, and the tail reads
                // those records again.
                drop(current.acks);
                self.set_aside_file(
                    origin,
                    path,
                    current.first_arrival,
                    current.unflushed,
                    current.flushed_records,
                );
                Err(io::Error::new(
                    error.kind(),
                    format!("sealing a batch failed: {error}"),
                ))
            }
        }
    }

    /// A sync of the spool's directories succeeded: the seals that waited for one are
    /// acknowledged, oldest first, and their claims go.
    fn synced(&mut self) {
        for unsynced in self.unsynced.drain(..) {
            SealAck::all_sealed(unsynced.acks);
            self.spool.settled(&unsynced.unsealed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_not_yet_scheduled_are_not_stalled() {
        let beats = Heartbeats::starting_now(4);
        assert!(beats.all_within(Duration::from_secs(3)));
        let later = Instant::now() + Duration::from_secs(10);
        assert!(!beats.all_within_at(Duration::from_secs(3), later));
    }

    #[test]
    fn a_silent_writer_fails_the_heartbeat_check() {
        let beats = Heartbeats(Arc::new(vec![MonoStamp::default(), MonoStamp::default()]));
        assert!(!beats.all_within(Duration::from_secs(60)), "never beat");
        beats.beat(0);
        beats.beat(1);
        assert!(beats.all_within(Duration::from_secs(1)));
        // Writer 1 stuck for ten seconds, say in an fsync, while writer 0 goes on.
        let now = Instant::now() + Duration::from_secs(10);
        beats.0[0].set(now);
        assert!(!beats.all_within_at(Duration::from_secs(3), now));
        assert!(beats.all_within_at(Duration::from_secs(30), now));
    }

    /// The wall clock steps an hour forward, or a day back (NTP at boot, a VM resumed),
    /// while one second passes: heartbeats and batch ages are kept and compared only as
    /// monotonic instants (their API takes no wall time), so the watchdog still sees every
    /// writer alive and the batch is neither sealed early nor held late.
    #[test]
    fn a_wall_clock_step_neither_stalls_the_watchdog_nor_seals_a_batch() {
        let mono_before = Instant::now();
        let beats = Heartbeats(Arc::new(vec![MonoStamp::default()]));
        beats.0[0].set(mono_before);
        let first_arrival = mono_before;
        let max_age = Duration::from_secs(30);
        // One second of monotonic time, whatever the wall clock did meanwhile.
        let mono_after = mono_before + Duration::from_secs(1);
        assert!(beats.all_within_at(Duration::from_secs(3), mono_after));
        assert!(!clock::reached(first_arrival, max_age, mono_after));
        assert_eq!(
            clock::remaining(first_arrival, max_age, mono_after),
            Duration::from_secs(29)
        );
        let mono_later = mono_before + Duration::from_secs(31);
        assert!(clock::reached(first_arrival, max_age, mono_later));
        assert!(!beats.all_within_at(Duration::from_secs(3), mono_later));
    }
}
