//! The spool's disk remounted read-only under a live feed: reading stops before records
//! are taken that could not be kept, the watchdog goes on being pinged while the agent
//! waits for the disk, and after a kill -9, a remount read-write and a restart every
//! record the agent took from the socket is delivered exactly once.
//!
//! "Taken from the socket" is the agent's own count of records read from the connection
//! (`feed.records`, records whose bytes it read out of the kernel's socket buffer). The
//! sender writes one connection in order, so those are its first records; the rest of what
//! it wrote was still in the kernel's buffers when the agent was killed, lost with the
//! connection as with any TCP receiver, and the test sends them again after the restart,
//! as a sender that knows what was received would. A record the agent counted as read and
//! lost shows as missing; one it had not read but delivered shows as doubled.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::harness::*;
use mcas_emulator::{Endpoint, Fault};

/// Records in each burst of the live feed, over TCP and into the tailed file.
const BURST: usize = 2_000;
/// The feed's pause between bursts: longer than `batch.max_age` (1 s), so that between
/// bursts the agent has sealed and closed every batch and the file system can be
/// remounted read-only (a remount is refused while a file is open for writing).
const PAUSE: Duration = Duration::from_millis(2_000);

/// An ext4 file system in a file, loop-mounted at a directory until dropped.
struct LoopMount {
    dir: PathBuf,
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl LoopMount {
    /// A new 256 MiB ext4 image `image` mounted at `dir` (created).
    fn new(image: &Path, dir: &Path) -> Result<LoopMount, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("loop mounts need root".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        run(Command::new("truncate").arg("-s").arg("256M").arg(image))?;
        run(Command::new("mkfs.ext4").arg("-q").arg(image))?;
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(image)
            .arg(dir))?;
        Ok(LoopMount {
            dir: dir.to_path_buf(),
        })
    }

    /// Mounts it for the test, or says why not and returns `None`: the test is skipped,
    /// except under CI=true, where a machine that cannot loop-mount fails it.
    fn for_test(image: &Path, dir: &Path) -> Option<LoopMount> {
        match LoopMount::new(image, dir) {
            Ok(mount) => Some(mount),
            Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("cannot loop-mount a file system (CI=true: no skipping): {reason}")
            }
            Err(reason) => {
                println!("skipped: cannot loop-mount a file system here: {reason}");
                None
            }
        }
    }

    /// The world's state directory (spool and checkpoints) on a file system of its own,
    /// as [`LoopMount::for_test`]. Declared after the world, it is unmounted before the
    /// world's directory goes.
    fn state_dir_of(world: &World) -> Option<LoopMount> {
        let dir = world.dir.path();
        LoopMount::for_test(&dir.join("state.img"), &dir.join("state"))
    }

    /// `mount -o remount,<how>`.
    fn remount(&self, how: &str) -> Result<(), String> {
        run(Command::new("mount")
            .arg("-o")
            .arg(format!("remount,{how}"))
            .arg(&self.dir))
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.dir)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}

/// The NSS service's side: one connection written in bursts of [`BURST`] records every
/// [`PAUSE`], the same burst appended to a tailed file, for as long as `feeding`.
struct LiveFeed {
    feeding: Arc<AtomicBool>,
    /// Held by the sender while it writes a burst; by the test while it remounts.
    between_bursts: Arc<Mutex<Instant>>,
    bursts: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl LiveFeed {
    fn start(addr: SocketAddr, file: PathBuf) -> LiveFeed {
        let feeding = Arc::new(AtomicBool::new(true));
        let between_bursts = Arc::new(Mutex::new(Instant::now()));
        let bursts = Arc::new(AtomicU64::new(0));
        let thread = {
            let (feeding, between_bursts, bursts) =
                (feeding.clone(), between_bursts.clone(), bursts.clone());
            std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(addr).unwrap();
                tcp.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut written = 0;
                let mut sent = 0;
                'feed: while feeding.load(Ordering::Relaxed) {
                    {
                        let mut last = between_bursts.lock().unwrap();
                        let records: Vec<Vec<u8>> =
                            (sent..sent + BURST).map(|n| leef("ro-tcp", n, 0)).collect();
                        let of_file: Vec<Vec<u8>> = (sent..sent + BURST)
                            .map(|n| leef("ro-file", n, 0))
                            .collect();
                        std::fs::OpenOptions::new()
                            .append(true)
                            .open(&file)
                            .unwrap()
                            .write_all(&lines(&of_file))
                            .unwrap();
                        // Each record's end in the burst, to count the whole ones written.
                        let mut ends = Vec::with_capacity(BURST);
                        let mut data = Vec::new();
                        for record in &records {
                            data.extend_from_slice(record);
                            data.push(b'\n');
                            ends.push(data.len());
                        }
                        let mut offset = 0;
                        while offset < data.len() {
                            match tcp.write(&data[offset..]) {
                                Ok(n) => offset += n,
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) && feeding.load(Ordering::Relaxed) => {}
                                Err(_) => {
                                    written += ends.iter().filter(|&&end| end <= offset).count();
                                    sent += BURST;
                                    break 'feed;
                                }
                            }
                        }
                        written += BURST;
                        sent += BURST;
                        *last = Instant::now();
                    }
                    bursts.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(PAUSE);
                }
                (written, sent)
            })
        };
        LiveFeed {
            feeding,
            between_bursts,
            bursts,
            thread: Some(thread),
        }
    }

    /// Remounts `mount` read-only between two bursts, once every batch is sealed: tries in
    /// each pause until the file system lets it (it refuses while a file is open for
    /// writing, such as a checkpoint being saved or a batch being uploaded and removed).
    fn remount_read_only_between_bursts(&self, mount: &LoopMount, agent: &Agent) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let last = *self.between_bursts.lock().unwrap();
            let settled = last + Duration::from_millis(1_400);
            if Instant::now() < settled {
                std::thread::sleep(settled - Instant::now());
            }
            let guard = self.between_bursts.lock().unwrap();
            if Instant::now() < *guard + Duration::from_millis(1_400) {
                continue;
            }
            for _ in 0..8 {
                if mount.remount("ro").is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(guard);
            assert!(
                Instant::now() < deadline,
                "the file system never let itself be remounted read-only; log:\n{}",
                agent.log_text()
            );
        }
    }

    /// Stops the feed: the records written whole to the connection, and the records made
    /// (all of them in the tailed file).
    fn stop(mut self) -> (usize, usize) {
        self.feeding.store(false, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// An empty file to tail, and the world's settings tailing it, batches sealed after 1 s
/// (before each pause of the [`LiveFeed`]).
fn tailing(world: &World) -> (PathBuf, Settings) {
    let file = world.dir.path().join("feed.log");
    std::fs::write(&file, b"").unwrap();
    let mut settings = world.settings();
    settings.tail(&file).set("batch.max_age", &quote("1s"));
    (file, settings)
}

/// WATCHDOG=1 pings as systemd receives them, by when they came.
fn watch_pings(socket: UnixDatagram) -> Arc<Mutex<Vec<Instant>>> {
    let pings = Arc::new(Mutex::new(Vec::new()));
    let seen = pings.clone();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with the test process; its socket file goes with the temporary directory.
        loop {
            if let Ok(n) = socket.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    seen.lock().unwrap().push(Instant::now());
                }
            }
        }
    });
    pings
}

/// The state directory (spool and checkpoints) on a file system of its own, remounted
/// read-only between two bursts of a live feed; the feed goes on for a while, then the
/// agent is killed as a watchdog would, the file system remounted read-write and the
/// agent started again: every record the agent took from the socket, and every record of
/// the tailed file, is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_spool_disk_then_kill_9_loses_nothing_read() {
    let world = World::start().await;
    let Some(mount) = LoopMount::state_dir_of(&world) else {
        return;
    };
    let (file, settings) = tailing(&world);
    let socket_path = world.dir.path().join("notify.sock");
    let pings = watch_pings(UnixDatagram::bind(&socket_path).unwrap());
    let socket_env = socket_path.display().to_string();
    let mut agent = world.agent_with_env(
        &settings,
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "2000000")],
    );
    let feed = LiveFeed::start(agent.feed.unwrap(), file.clone());
    agent.wait_status("three bursts read", |s| {
        s["feed"]["records"].as_u64() >= Some(3 * 2 * BURST as u64)
    });

    feed.remount_read_only_between_bursts(&mount, &agent);
    let bursts = feed.bursts.load(Ordering::Relaxed);
    // The feed goes on: a few more bursts offered, whether the agent reads them or not.
    std::thread::sleep(4 * PAUSE);
    // Reading has stopped: the count no longer moves while the sender goes on offering.
    let before = agent.status()["feed"]["records"].clone();
    std::thread::sleep(PAUSE * 2);
    let status = agent.status();
    let offered_after = feed.bursts.load(Ordering::Relaxed) > bursts;
    // The agent waits for the disk, it is not stuck: the watchdog is still pinged.
    let since = Instant::now() - 2 * PAUSE;
    let recent_pings = pings.lock().unwrap().iter().filter(|&&t| t > since).count();
    let log = agent.log_text();
    println!(
        "spool.write_refused while the disk refuses writes: {}",
        status["spool"]["write_refused"]
    );

    // What the agent took from the socket: every record it read, less the tailed file's
    // (the records of the file up to the offset it read to).
    let offset = status["feed"]["files"][0]["offset"].as_u64().unwrap() as usize;
    let file_read = memchr::memchr_iter(b'\n', &std::fs::read(&file).unwrap()[..offset]).count();
    let tcp_taken = status["feed"]["records"].as_u64().unwrap() as usize - file_read;

    // Killed as the watchdog would; the disk back; started again.
    agent.kill();
    let (written, made) = feed.stop();
    mount.remount("rw").unwrap();
    println!(
        "read-only remount: {made} records made for each input; over TCP {written} written whole to the connection, {tcp_taken} taken from it by the agent; {file_read} read from the file"
    );
    assert!(
        tcp_taken <= written,
        "{tcp_taken} taken of {written} written"
    );
    let agent = world.agent(&settings);
    // The records the agent had not taken, sent again, and one more burst of each input.
    let total = made + BURST;
    let resend: Vec<Vec<u8>> = (tcp_taken..total).map(|n| leef("ro-tcp", n, 0)).collect();
    let after: Vec<Vec<u8>> = (made..total).map(|n| leef("ro-file", n, 0)).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&lines(&after))
        .unwrap();
    send_tcp(agent.feed.unwrap(), &lines(&resend));
    // Missing records show in the count below, with the log.
    if let Err(error) = world
        .emulator
        .wait_for_records(2 * total as u64, Duration::from_secs(60))
        .await
    {
        println!("{error}; log:\n{}", agent.log_text());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_streams_exactly_once(&world, &[("ro-tcp", total), ("ro-file", total)]);

    assert!(
        offered_after,
        "the feed was not offered more after the remount"
    );
    assert_eq!(
        status["feed"]["records"], before,
        "reading did not stop while the disk refused writes"
    );
    assert!(
        status["spool"]["write_refused"].is_string(),
        "the status does not show the disk's refusal: {}",
        status["spool"]
    );
    assert!(
        recent_pings >= 2,
        "{recent_pings} watchdog pings in the last 4 s, while waiting for the disk; log:\n{log}"
    );
    // The stop of reading is logged once (an upload caught by the remount logs its own
    // wait for the disk beside it).
    assert_eq!(
        log.matches("reading stops until it accepts them").count(),
        1,
        "the refusal is logged once:\n{log}"
    );
}

/// Asserts that the records made by [`leef`] for each `(stream, count)`, numbered
/// `0..count`, each arrived exactly once, and nothing else.
fn assert_streams_exactly_once(world: &World, streams: &[(&str, usize)]) {
    let mut seen: Vec<Vec<u8>> = streams.iter().map(|&(_, n)| vec![0u8; n]).collect();
    let mut foreign = 0;
    for upload in world.emulator.uploads() {
        for record in upload.records_decompressed().unwrap() {
            let id = streams.iter().enumerate().find_map(|(i, (stream, _))| {
                let needle = format!("recordid={stream}-");
                let at = memchr::memmem::find(&record, needle.as_bytes())?;
                let rest = &record[at + needle.len()..];
                let n = rest.split(|&b| b == b'\t').next()?;
                Some((i, std::str::from_utf8(n).ok()?.parse::<usize>().ok()?))
            });
            match id {
                Some((i, n)) if n < seen[i].len() => seen[i][n] = seen[i][n].saturating_add(1),
                _ => foreign += 1,
            }
        }
    }
    for ((stream, count), seen) in streams.iter().zip(&seen) {
        let missing = seen.iter().filter(|&&c| c == 0).count();
        let doubled = seen.iter().filter(|&&c| c > 1).count();
        println!("{stream}: {count} records, {missing} missing, {doubled} doubled");
        assert_eq!(
            (missing, doubled),
            (0, 0),
            "{stream}: of {count} records, missing and doubled"
        );
    }
    assert_eq!(foreign, 0, "records that were never sent");
}

/// Remount cycles without a restart: the state directory read-only between two bursts,
/// the feed offered more meanwhile, then read-write again, `NSS_SOAK_READONLY_CYCLES` times
/// (default 2; `scripts/soak` runs more). Reading goes on once the disk takes writes, the
/// status clears, and every record of both inputs arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_remount_cycles_lose_nothing() {
    let cycles: usize = std::env::var("NSS_SOAK_READONLY_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let world = World::start().await;
    let Some(mount) = LoopMount::state_dir_of(&world) else {
        return;
    };
    let (file, settings) = tailing(&world);
    let agent = world.agent(&settings);
    let feed = LiveFeed::start(agent.feed.unwrap(), file.clone());
    for cycle in 0..cycles {
        // The first cycle may come before the agent's first status file.
        let read = agent.wait_status("a status file", |s| s["feed"]["records"].is_u64())["feed"]
            ["records"]
            .as_u64()
            .unwrap();
        agent.wait_status("records read", |s| {
            s["feed"]["records"].as_u64() >= Some(read + 2 * BURST as u64)
        });
        feed.remount_read_only_between_bursts(&mount, &agent);
        agent.wait_status("the disk's refusal", |s| {
            s["spool"]["write_refused"].is_string()
        });
        std::thread::sleep(2 * PAUSE);
        mount.remount("rw").unwrap();
        agent.wait_status("the refusal over", |s| {
            s["spool"]["write_refused"].is_null()
        });
        println!("read-only remount cycle {} of {cycles} done", cycle + 1);
    }
    let read = agent.status()["feed"]["records"].as_u64().unwrap();
    agent.wait_status("records read after the last cycle", |s| {
        s["feed"]["records"].as_u64() >= Some(read + 2 * BURST as u64)
    });
    let (written, made) = feed.stop();
    assert_eq!(written, made, "the agent stopped reading for good");
    if let Err(error) = world
        .emulator
        .wait_for_records(2 * made as u64, Duration::from_secs(120))
        .await
    {
        println!("{error}; log:\n{}", agent.log_text());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("read-only remounts: {cycles} cycles, {made} records of each input");
    assert_streams_exactly_once(&world, &[("ro-tcp", made), ("ro-file", made)]);
    let log = agent.log_text();
    assert!(
        log.matches("the spool's disk accepts writes again").count() >= cycles,
        "{log}"
    );
}

/// A batch goes up while the spool's disk refuses writes: the agent cannot keep the record
/// that its done_upload was sent, nor remove the batch once MCAS has it. So it does not
/// send the done_upload until the disk takes writes again: a kill -9 meanwhile, a remount
/// read-write and a restart deliver the batch once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_not_finished_at_mcas_while_the_spool_cannot_record_it() {
    let world = World::start().await;
    let Some(mount) = LoopMount::state_dir_of(&world) else {
        return;
    };
    // MCAS fails every upload_url until the disk is read-only.
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(503), 1_000_000);
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("1s"))
        .set("upload.outage_retry", &quote("1s"));
    let mut agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..1_000).map(|n| leef("ro-done", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    agent.wait_status("the batch sealed", |s| {
        s["spool"]["sealed_records"].as_u64() == Some(1_000)
    });
    // Sealed and closed: the file system lets itself be remounted once nothing is open
    // for writing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = mount.remount("ro") {
        assert!(Instant::now() < deadline, "{error}");
        std::thread::sleep(Duration::from_millis(100));
    }
    world.emulator.clear_faults();
    // Either MCAS gets the batch (the done_upload went although nothing could record
    // it), or the agent says it waits for the disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waited = loop {
        let error = agent.status()["upload"]["last_error"].clone();
        if error.as_str().is_some_and(|e| e.contains("refuses writes")) {
            break true;
        }
        if !world.emulator.uploads().is_empty() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // What the first done_upload would have delivered, had it gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_mcas_meanwhile = world.emulator.uploads().len();
    agent.kill();
    mount.remount("rw").unwrap();
    let agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(1_000, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log_text()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_streams_exactly_once(&world, &[("ro-done", 1_000)]);
    assert_eq!(
        at_mcas_meanwhile, 0,
        "MCAS finished the batch while the spool was read-only"
    );
    assert!(
        waited,
        "the status did not say that the upload waits for the disk"
    );
}
