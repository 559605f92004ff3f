//! Failures in the middle of a step: crashes between two writes, a rotation while the
//! agent is down or while the old file is still written, a removal or a seal that fails,
//! a batch damaged inside its deflate stream or outside it, a salvage interrupted.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::harness::*;
use crate::support::tally::tally;

/// How many times this file's kill -9 tests kill the agent, unless NSS_SOAK_KILLS says.
const KILLS: usize = 12;

/// Two batch writers (the 2-core default), a tailed file, no TCP feed.
fn two_writers_tailing(world: &World, file: &Path) -> Settings {
    let mut settings = world.settings();
    settings
        .set("feed.listen", &quote(""))
        .tail(file)
        .set("batch.writers", "2")
        .set("batch.max_age", &quote("300ms"));
    settings
}

/// An agent of two writers (with `env`) tailing `file`, created empty, once it has the
/// file open.
fn tailing_an_empty_file(world: &World, file: &Path, env: &[(&str, &str)]) -> Agent {
    let settings = two_writers_tailing(world, file);
    std::fs::write(file, b"").unwrap();
    let agent = world.agent_with_env(&settings, env);
    agent.wait_status("the file open", |s| s["feed"]["files"][0]["open"] == true);
    agent
}

/// Waits (30 s at most) until `crashing` has killed itself at its crash point.
async fn until_crashed(mut crashing: Agent) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crashing.running() {
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the crash point:\n{}",
            crashing.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append(file: &Path, bytes: &[u8]) {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    out.write_all(bytes).unwrap();
}

fn burst(stream: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|n| leef(stream, n, 20)).collect()
}

/// kill -9 at random moments while a file is tailed by two writers, whose batches seal
/// out of order: no record is lost, and a record arrives twice only in a batch MCAS
/// received twice (a crash between done_upload and the batch's removal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_two_writers_reads_no_sealed_record_again() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = two_writers_tailing(&world, &file);
    let writer_file = file.clone();
    let mut settings = settings;
    // Each writer's batch spans several chunks, and the two seal at different times: the
    // checkpoint often has sealed ranges beyond its offset when the crash comes.
    settings.set("batch.max_age", &quote("1s"));
    // Records are appended for as long as the agent is killed: every crash has some in
    // flight.
    let per_burst = 150;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let appender = std::thread::spawn(move || {
        let mut bursts = 0;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            append(
                &writer_file,
                &lines(&burst(&format!("two{bursts}"), per_burst)),
            );
            bursts += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        bursts
    });
    let mut rng = fastrand::Rng::with_seed(11);
    let mut kills = 0;
    while kills < kill_cycles(KILLS) {
        let mut agent = world.agent(&settings);
        std::thread::sleep(Duration::from_millis(rng.u64(300..1500)));
        agent.kill();
        kills += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let bursts = appender.join().unwrap();
    let agent = world.agent(&settings);
    let total = (bursts * per_burst) as u64;
    world
        .emulator
        .wait_for_records(total, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let streams: Vec<(String, usize)> = (0..bursts)
        .map(|b| (format!("two{b}"), per_burst))
        .collect();
    let tally = tally(&world.emulator, &streams);
    eprintln!("kill -9 x{kills}, two writers, tailed file: {tally}");
    assert_eq!((tally.missing, tally.foreign), (0, 0), "{tally}");
    assert_eq!(tally.unexplained, 0, "records read twice: {tally}");
    assert!(tally.batches_twice <= kills, "{tally}");
}

/// A crash right after a checkpoint was saved with ranges sealed beyond its offset (the
/// two writers sealed out of order): the next start skips those ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_out_of_order_seals_reads_no_sealed_range_again() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let mut settings = two_writers_tailing(&world, &file);
    settings.set("batch.max_age", &quote("1s"));
    let writer_file = file.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let appender = std::thread::spawn(move || {
        let mut b = 0;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            append(&writer_file, &lines(&burst(&format!("ooo{b}"), 100)));
            b += 1;
            std::thread::sleep(Duration::from_millis(150));
        }
        b
    });
    world.run_to_crash(&settings, "checkpoint-with-sealed-ranges");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let bursts = appender.join().unwrap();
    let agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(bursts as u64 * 100, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let streams: Vec<(String, usize)> = (0..bursts).map(|b| (format!("ooo{b}"), 100)).collect();
    let tally = tally(&world.emulator, &streams);
    assert_eq!(
        (tally.missing, tally.duplicated, tally.foreign),
        (0, 0, 0),
        "{tally}"
    );
}

/// A crash right after a batch of file records is sealed, before the checkpoint is saved:
/// the next start moves the checkpoint past the batch instead of reading it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_seal_and_its_checkpoint_reads_nothing_twice() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = two_writers_tailing(&world, &file);
    let first = burst("sealed", 500);
    append(&file, &lines(&first));
    world.run_to_crash(&settings, "sealed-before-checkpoint");
    let second = burst("later", 300);
    append(&file, &lines(&second));
    let agent = world.agent(&settings);
    wait_exactly_once(
        &world,
        &agent,
        [first, second].concat(),
        Duration::from_secs(30),
    )
    .await;
}

/// The program writing the file keeps appending to it for a while after it was renamed
/// (and finishes a line it had begun): the old file is followed until it is quiet, then
/// the new one is read; no record is cut or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renamed_file_is_followed_while_its_writer_appends() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = two_writers_tailing(&world, &file);
    let before = burst("before", 300);
    append(&file, &lines(&before));
    let agent = world.agent(&settings);
    agent.wait_status("the file read", |s| s["feed"]["records"] == 300);

    let mut old = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    let rotated = world.dir.path().join("feed.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    let fresh = burst("fresh", 200);
    append(&file, &lines(&fresh));
    // Half a line, then, a second later, its rest, then more lines, then a last line that
    // never gets its newline.
    let late = burst("late", 101);
    let (head, tail) = late[0].split_at(40);
    old.write_all(head).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    old.write_all(tail).unwrap();
    old.write_all(b"\n").unwrap();
    for part in late[1..100].chunks(33) {
        std::thread::sleep(Duration::from_millis(700));
        old.write_all(&lines(part)).unwrap();
    }
    old.write_all(&late[100]).unwrap();
    drop(old);

    let expected = [before, fresh, late].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    let status = agent.status();
    assert_eq!(status["feed"]["unterminated"], 1, "{status}");
    assert!(agent.log_text().contains("ended without a newline"));
}

/// Rotated while the agent was stopped, after the old file had grown: the old file is
/// found beside the path (feed.log.1) and read from the checkpoint to its end, then the
/// new one from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_stopped_reads_the_rest_of_the_old_file_first() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = two_writers_tailing(&world, &file);
    let first = burst("first", 400);
    append(&file, &lines(&first));
    let mut agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(400, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(agent.stop().success());

    let grown = burst("grown", 3000);
    append(&file, &lines(&grown));
    std::fs::rename(&file, world.dir.path().join("feed.log.1")).unwrap();
    let new = burst("new", 500);
    append(&file, &lines(&new));

    let agent = world.agent(&settings);
    let expected = [first, grown, new].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    assert!(agent
        .log_text()
        .contains("rotated while the agent was stopped"));
}

/// The old file is gone (compressed by logrotate): the log says what could not be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_that_is_gone_is_reported() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = two_writers_tailing(&world, &file);
    append(&file, &lines(&burst("first", 100)));
    let mut agent = world.agent(&settings);
    agent.wait_status("the file read", |s| s["feed"]["records"] == 100);
    std::thread::sleep(Duration::from_millis(800));
    assert!(agent.stop().success());
    std::fs::remove_file(&file).unwrap();
    let new = burst("new", 50);
    append(&file, &lines(&new));
    let agent = world.agent(&settings);
    agent.wait_log("the checkpoint's file is not beside it");
}

/// Removing a delivered batch fails (its directory immutable): it is not sent again,
/// neither by this run nor after a restart; the status says so, and the removal succeeds
/// once the directory allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_batch_that_cannot_be_removed_is_not_sent_again() {
    use mcas_emulator::{Endpoint, Fault};
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(401), 1000);
    let mut settings = world.settings();
    // One writer: the 200 records in one batch, whichever writer chunks would go to.
    settings
        .set("batch.max_age", &quote("300ms"))
        .set("batch.writers", "1");
    let agent = world.agent(&settings);
    let records = burst("kept", 200);
    send_tcp(agent.feed.unwrap(), &lines(&records));
    agent.wait_status("a sealed batch", |s| s["spool"]["batches"] == 1);
    let ready = agent.state_dir.join("spool/ready");
    let lock = Immutable::new(&ready);
    world.emulator.clear_faults();
    world
        .emulator
        .wait_for_records(200, Duration::from_secs(30))
        .await
        .unwrap();
    let status = agent.wait_status("the undeleted batch", |s| {
        s["spool"]["delivered_undeleted"] == 1
    });
    assert_eq!(status["spool"]["batches"], 0, "{status}");
    assert!(agent.log_text().contains("cannot remove the batch"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        world.emulator.uploads().len(),
        1,
        "sent again by the same run"
    );

    let mut agent = agent;
    agent.kill();
    let agent = world.agent(&settings);
    agent.wait_status("the undeleted batch after a restart", |s| {
        s["spool"]["delivered_undeleted"] == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        world.emulator.uploads().len(),
        1,
        "sent again after a restart"
    );

    drop(lock);
    agent.wait_status("the batch removed", |s| {
        s["spool"]["delivered_undeleted"] == 0
    });
    assert_eq!(std::fs::read_dir(&ready).unwrap().count(), 0);
    assert_exactly_once(&world.emulator, records);
}

/// Sealing fails (the ready directory refuses the rename) while a file is tailed: the
/// records of the failed batches are read again from the file, without a restart, and
/// the checkpoint reaches the file's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_batch_that_failed_to_seal_are_read_again() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let agent = tailing_an_empty_file(&world, &file, &[]);
    let ready = agent.state_dir.join("spool/ready");
    let lock = Immutable::new(&ready);
    let first = burst("unsealable", 400);
    append(&file, &lines(&first));
    agent.wait_log("sealing a batch failed");
    std::thread::sleep(Duration::from_millis(500));
    drop(lock);
    let second = burst("after", 100);
    append(&file, &lines(&second));
    let expected = [first, second].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    let len = std::fs::metadata(&file).unwrap().len();
    let checkpoints: Vec<_> = std::fs::read_dir(agent.state_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoints[0]).unwrap()).unwrap();
    assert_eq!(checkpoint["offset"], len, "{checkpoint}");
}

/// The disk refuses a seal of tailed records (the ready directory refuses the rename),
/// then takes writes again, and the agent is killed half-way through removing that
/// batch: the next start reads its records again from the file, none lost, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_failed_seal_is_removed_loses_nothing() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let crashing = tailing_an_empty_file(
        &world,
        &file,
        &[("NSS_CRASH_AT", "broken-batch-half-removed")],
    );
    let lock = Immutable::new(&crashing.state_dir.join("spool/ready"));
    let first = burst("unsealable", 400);
    append(&file, &lines(&first));
    crashing.wait_log("sealing a batch failed");
    drop(lock);
    until_crashed(crashing).await;
    let second = burst("after", 100);
    append(&file, &lines(&second));
    let agent = world.agent(&two_writers_tailing(&world, &file));
    let expected = [first, second].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
}

/// An agent whose ready directory's fsync fails once after a seal's rename (`env`), sent
/// a burst then, after the failure, another: MCAS has each record once within `within`.
async fn a_failed_sync_delivers_once(env: &[(&str, &str)], within: Duration) {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let agent = tailing_an_empty_file(&world, &file, env);
    let first = burst("before-the-failure", 400);
    append(&file, &lines(&first));
    agent.wait_log("failure point reached");
    let second = burst("after-the-failure", 100);
    append(&file, &lines(&second));
    let expected = [first, second].concat();
    wait_exactly_once(&world, &agent, expected, within).await;
}

/// The ready directory's fsync fails once after a seal's rename (`NSS_FAIL_AT`: a disk
/// error when the batch is already in `ready/`): the batch waits, unacknowledged and kept
/// from upload, until a later fsync succeeds; its records are not read again, reading
/// resumes, and MCAS has each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_whose_directory_sync_fails_after_the_rename_delivers_once() {
    a_failed_sync_delivers_once(
        &[("NSS_FAIL_AT", "seal-sync-ready")],
        Duration::from_secs(30),
    )
    .await;
}

/// As above, with a fsync that takes 6 s to fail (longer than the uploader's rescan of the
/// spool, and the other writer sealing meanwhile): the batch is kept from upload while its
/// rename is not known to be durable, and MCAS has each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_whose_directory_sync_fails_slowly_is_not_uploaded_meanwhile() {
    a_failed_sync_delivers_once(
        &[
            ("NSS_FAIL_AT", "seal-sync-ready"),
            ("NSS_FAIL_SLOW_MS", "6000"),
        ],
        Duration::from_secs(40),
    )
    .await;
}

/// The agent is killed while a seal's directory sync has failed (the batch in `ready/`,
/// unacknowledged, its claims beside it): the next start settles the claims, uploads the
/// batch once and reads on from after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_seal_waits_for_its_directory_sync_loses_nothing() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let crashing = tailing_an_empty_file(
        &world,
        &file,
        &[
            ("NSS_FAIL_AT", "seal-sync-ready"),
            ("NSS_CRASH_AT", "sealed-unsynced"),
        ],
    );
    let first = burst("unsynced", 400);
    append(&file, &lines(&first));
    until_crashed(crashing).await;
    let second = burst("after", 100);
    append(&file, &lines(&second));
    let agent = world.agent(&two_writers_tailing(&world, &file));
    let expected = [first, second].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
}

/// A batch damaged in the middle of its deflate stream (size and trailer intact) goes to
/// quarantine with the reason before upload; the other batches are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_damaged_inside_its_deflate_stream_is_quarantined() {
    let reason = a_damaged_batch_is_quarantined(|bytes| {
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 16] {
            *b ^= 0x5a;
        }
    })
    .await;
    assert!(
        reason.contains("damaged") || reason.contains("decompresses"),
        "{reason}"
    );
}

/// One byte changed outside the deflate stream, in the gzip header's OS field (which no
/// decompression checks): the batch is no longer what was sealed, and it never reaches MCAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_byte_changed_in_its_header_is_quarantined() {
    let reason = a_damaged_batch_is_quarantined(|bytes| bytes[9] ^= 0x01).await;
    assert!(
        reason.contains("integrity") && reason.contains("damaged"),
        "{reason}"
    );
}

/// Seals two batches while MCAS refuses uploads, applies `damage` to the older one's file
/// while the agent is down, then lets MCAS take uploads: the damaged batch must go to
/// quarantine (its reason is returned) and only the other batch's records reach MCAS.
async fn a_damaged_batch_is_quarantined(damage: impl FnOnce(&mut Vec<u8>)) -> String {
    use mcas_emulator::{Endpoint, Fault};
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(401), 1000);
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("300ms"))
        .set("batch.writers", "1")
        // Batches as sealed: no merge of the waiting ones while uploads are refused.
        .set("batch.busy_max_bytes", &quote("256MiB"));
    let mut agent = world.agent(&settings);
    let damaged = burst("damaged", 2000);
    send_tcp(agent.feed.unwrap(), &lines(&damaged));
    agent.wait_status("a sealed batch", |s| s["spool"]["batches"] == 1);
    let kept = burst("kept", 300);
    send_tcp(agent.feed.unwrap(), &lines(&kept));
    agent.wait_status("two sealed batches", |s| s["spool"]["batches"] == 2);
    assert!(agent.stop().success());

    let ready = agent.state_dir.join("spool/ready");
    let batches = files_in(&ready);
    let mut bytes = std::fs::read(&batches[0]).unwrap();
    damage(&mut bytes);
    std::fs::write(&batches[0], &bytes).unwrap();

    world.emulator.clear_faults();
    let agent = world.agent(&settings);
    agent.wait_status("the damaged batch in quarantine", |s| {
        s["spool"]["quarantined"] == 1
    });
    let quarantined = agent.quarantined();
    let reason = std::fs::read_to_string(format!("{}.reason", quarantined[0].display())).unwrap();
    wait_exactly_once(&world, &agent, kept, Duration::from_secs(30)).await;
    reason
}

/// A crash after the records of an unsealed TCP batch were salvaged into a new batch and
/// before the unsealed one was removed: the next start salvages them once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_salvage_and_removal_salvages_once() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1h"));
    let mut agent = world.agent(&settings);
    let records = burst("salvaged", 500);
    send_tcp(agent.feed.unwrap(), &lines(&records));
    agent.wait_status("the records read", |s| s["feed"]["records"] == 500);
    std::thread::sleep(Duration::from_millis(200));
    agent.kill();
    world.run_to_crash(&settings, "salvage-written");
    let agent = world.agent(&settings);
    assert_eq!(records.len(), 500);
    wait_exactly_once(&world, &agent, records, Duration::from_secs(30)).await;
}
