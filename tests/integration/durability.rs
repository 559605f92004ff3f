//! Nothing read is lost: restarts and crashes while a tailed file grows.

use std::io::Write;
use std::time::Duration;

use crate::support::harness::*;
use crate::support::tally::tally;

/// How many times this file's kill -9 tests kill the agent, unless NSS_SOAK_KILLS says.
const KILLS: usize = 20;

fn tail_only(world: &World, file: &std::path::Path) -> Settings {
    let mut settings = world.settings();
    settings
        .set("feed.listen", &quote(""))
        .tail(file)
        .set("batch.max_age", &quote("300ms"));
    settings
}

fn append(file: &std::path::Path, records: &[Vec<u8>]) {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    out.write_all(&lines(records)).unwrap();
}

/// A restart resumes a tailed file at its checkpoint: no record twice, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_a_tailed_file_at_its_checkpoint() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = tail_only(&world, &file);
    let first: Vec<Vec<u8>> = (0..500).map(|n| leef("before", n, 0)).collect();
    append(&file, &first);
    let mut agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(500, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(agent.stop().success());

    let second: Vec<Vec<u8>> = (0..300).map(|n| leef("while-down", n, 0)).collect();
    append(&file, &second);
    let agent = world.agent(&settings);
    let expected = [first, second].concat();
    assert_eq!(expected.len(), 800);
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    assert!(
        agent.log_text().contains("tailing from the checkpoint"),
        "{}",
        agent.log_text()
    );
}

/// kill -9 at random moments (20 times, or NSS_SOAK_KILLS) while records are appended:
/// after the last start every record of the file is delivered; duplicates (a crash
/// between done_upload and the deletion of the batch) are counted and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_tailing_loses_no_record() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let settings = tail_only(&world, &file);
    let writer_file = file.clone();
    let total = 6000;
    let appender = std::thread::spawn(move || {
        let mut records = Vec::new();
        for burst in 0..60 {
            let part: Vec<Vec<u8>> = (0..total / 60)
                .map(|n| leef(&format!("crash{burst}"), n, 20))
                .collect();
            append(&writer_file, &part);
            records.extend(part);
            std::thread::sleep(Duration::from_millis(100));
        }
        records
    });
    let mut rng = fastrand::Rng::with_seed(20);
    let mut kills = 0;
    while !appender.is_finished() || kills < kill_cycles(KILLS) {
        let mut agent = world.agent(&settings);
        std::thread::sleep(Duration::from_millis(rng.u64(100..700)));
        agent.kill();
        kills += 1;
    }
    let expected = appender.join().unwrap();
    let _agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(expected.len() as u64, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut got, _) = delivered(&world.emulator);
    got.dedup();
    let mut unique = expected.clone();
    unique.sort();
    assert_eq!(got, unique, "records lost or foreign records delivered");
    let (all, _) = delivered(&world.emulator);
    let duplicates = all.len() - expected.len();
    let streams: Vec<(String, usize)> =
        (0..60).map(|b| (format!("crash{b}"), total / 60)).collect();
    let tally = tally(&world.emulator, &streams);
    eprintln!("kill -9 x{kills}, tailed file: {tally}");
    assert_eq!(tally.unexplained, 0, "records read twice: {tally}");
    // At most one batch per crash can be delivered twice.
    let largest = world
        .emulator
        .uploads()
        .iter()
        .map(|u| u.records)
        .max()
        .unwrap() as usize;
    assert!(
        duplicates <= kills * largest,
        "{duplicates} duplicates after {kills} crashes"
    );
}

/// Runs the real logrotate once, forced, with `directives` for `file`.
fn logrotate(dir: &std::path::Path, file: &std::path::Path, directives: &str) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 10\n  nocompress\n  missingok\n  {directives}\n}}\n",
            file.display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(logrotate_binary())
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn logrotate_binary() -> &'static str {
    ["/usr/sbin/logrotate", "/sbin/logrotate"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("logrotate")
}

/// logrotate's rename + create while records are appended: the old file is read to its
/// end before the new one, nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_rename_and_create_loses_nothing() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    std::fs::write(&file, b"").unwrap();
    let agent = world.agent(&tail_only(&world, &file));
    agent.wait_status("the file open", |s| s["feed"]["files"][0]["open"] == true);
    let mut expected = Vec::new();
    for round in 0..5 {
        // Appended right before the rotation: the agent may not have read them yet.
        let burst: Vec<Vec<u8>> = (0..300)
            .map(|n| leef(&format!("create{round}"), n, 0))
            .collect();
        append(&file, &burst);
        expected.extend(burst);
        logrotate(world.dir.path(), &file, "create");
        // The next rotation comes once the agent is through with this one (logrotate
        // runs hourly or daily, not faster than the agent follows the old file until it
        // is quiet).
        let read = expected.len();
        agent.wait_status("the burst read", |s| s["feed"]["records"] == read);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while agent.log_text().matches("now reading the new one").count() <= round {
            assert!(std::time::Instant::now() < deadline, "{}", agent.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let last: Vec<Vec<u8>> = (0..100).map(|n| leef("after", n, 0)).collect();
    append(&file, &last);
    expected.extend(last);
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    assert!(agent.log_text().contains("rotated"));
}

/// logrotate's copytruncate: records read before the truncation are kept, and the file
/// is read again from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_copytruncate_loses_nothing_read() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let agent = world.agent(&tail_only(&world, &file));
    let mut expected = Vec::new();
    for round in 0..5 {
        let burst: Vec<Vec<u8>> = (0..300 + round * 50)
            .map(|n| leef(&format!("copy{round}"), n, 0))
            .collect();
        append(&file, &burst);
        expected.extend(burst);
        let read = expected.len();
        agent.wait_status("the burst read", |s| s["feed"]["records"] == read);
        logrotate(world.dir.path(), &file, "copytruncate");
    }
    // Written past the old offset before the agent looks again: the first bytes tell.
    let long: Vec<Vec<u8>> = (0..2000).map(|n| leef("after", n, 0)).collect();
    append(&file, &long);
    expected.extend(long);
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    assert!(agent.log_text().contains("truncated"));
}

/// A file deleted while partly unread is read out through the open handle; a new file at
/// the path is then read from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_read_out_and_a_new_one_followed() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    std::fs::write(&file, b"").unwrap();
    let agent = world.agent(&tail_only(&world, &file));
    agent.wait_status("the file open", |s| s["feed"]["files"][0]["open"] == true);
    let doomed: Vec<Vec<u8>> = (0..20_000).map(|n| leef("deleted", n, 0)).collect();
    append(&file, &doomed);
    std::fs::remove_file(&file).unwrap();
    let total = doomed.len();
    agent.wait_status("the deleted file read out", |s| {
        s["feed"]["records"] == total
    });
    let reborn: Vec<Vec<u8>> = (0..100).map(|n| leef("new", n, 0)).collect();
    append(&file, &reborn);
    let expected = [doomed, reborn].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
}

/// A spool file and a checkpoint damaged while the agent was down: each ends in
/// quarantine (or set aside) with a log line, the agent runs on, and nothing else is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_file_and_checkpoint_are_set_aside() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let mut settings = world.settings();
    settings.tail(&file).set("batch.max_age", &quote("300ms"));
    // MCAS refuses the token: batches wait in the spool.
    world.emulator.push_fault(
        mcas_emulator::Endpoint::UploadUrl,
        mcas_emulator::Fault::status(401),
        1000,
    );
    let file_records: Vec<Vec<u8>> = (0..200).map(|n| leef("file", n, 0)).collect();
    append(&file, &file_records);
    let mut agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let first: Vec<Vec<u8>> = (0..100).map(|n| leef("doomed", n, 0)).collect();
    send_tcp(addr, &lines(&first));
    agent.wait_status("a sealed batch", |s| {
        s["spool"]["batches"].as_u64() >= Some(1) && s["feed"]["records"] == 300
    });
    std::thread::sleep(Duration::from_millis(600));
    let second: Vec<Vec<u8>> = (0..100).map(|n| leef("kept", n, 0)).collect();
    send_tcp(addr, &lines(&second));
    agent.wait_status("every record read", |s| s["feed"]["records"] == 400);
    assert!(agent.stop().success());

    // Damage: the oldest batch cut short, the checkpoint overwritten.
    let ready = agent.state_dir.join("spool/ready");
    let batches = files_in(&ready);
    assert!(batches.len() >= 2, "{batches:?}");
    let victim = batches[0].clone();
    let victim_records: Vec<Vec<u8>> = {
        let gz = std::fs::read(&victim).unwrap();
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let checkpoints: Vec<_> = std::fs::read_dir(agent.state_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(checkpoints.len(), 1);
    std::fs::write(
        &checkpoints[0],
        b"{\"path\": \"/etc/passwd\", \"offset\": 12",
    )
    .unwrap();

    world.emulator.clear_faults();
    let agent = world.agent(&settings);
    agent.wait_status("the damaged batch in quarantine", |s| {
        s["spool"]["quarantined"] == 1
    });
    let quarantined = agent.quarantined();
    let reason = std::fs::read_to_string(format!("{}.reason", quarantined[0].display())).unwrap();
    assert!(
        reason.contains("integrity") && reason.contains("cut short"),
        "{reason}"
    );
    let log = agent.log_text();
    assert!(log.contains("a checkpoint failed its check"), "{log}");

    // Everything but the damaged batch arrives; the file is read again from its start.
    let all_tcp: Vec<Vec<u8>> = [first, second].concat();
    let expected_tcp: Vec<Vec<u8>> = all_tcp
        .into_iter()
        .filter(|r| !victim_records.contains(r))
        .collect();
    let want = (expected_tcp.len() + file_records.len()) as u64;
    world
        .emulator
        .wait_for_records(want, Duration::from_secs(30))
        .await
        .unwrap();
    let (got, _) = delivered(&world.emulator);
    for record in expected_tcp.iter().chain(&file_records) {
        assert!(
            got.contains(record),
            "missing {}",
            String::from_utf8_lossy(record)
        );
    }
    assert_eq!(agent.status()["running"], true);
}

/// kill -9 after the agent read records from TCP but before their batch was sealed: the
/// next start salvages them from the unsealed batch and delivers every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_salvages_what_tcp_delivered() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1h"));
    let mut expected = Vec::new();
    for cycle in 0..10 {
        let mut agent = world.agent(&settings);
        let records: Vec<Vec<u8>> = (0..300)
            .map(|n| leef(&format!("salvage{cycle}"), n, 0))
            .collect();
        send_tcp(agent.feed.unwrap(), &lines(&records));
        expected.extend(records);
        let read = 300;
        // Killed once every record is in the spool's files (flushed or sealed), which
        // the crash bound says a kill -9 cannot take.
        agent.wait_status("the records on disk", |s| {
            s["spool"]["stream_records_on_disk"] == read
        });
        agent.kill();
    }
    let agent = world.agent(&settings);
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(30)).await;
    assert!(
        agent.log_text().contains("salvaged"),
        "{}",
        agent.log_text()
    );
}

/// kill -9 at random moments (20 times, or NSS_SOAK_KILLS) while records stream over TCP
/// and into a tailed file, with MCAS failing at random: every record of the file arrives,
/// every record that arrives is one that was sent (whole), and duplicates stay within one
/// batch a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_tcp_file_and_a_failing_mcas() {
    use mcas_emulator::{Endpoint, Fault};
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let mut settings = world.settings();
    settings.tail(&file).set("batch.max_age", &quote("300ms"));
    let mut rng = fastrand::Rng::with_seed(9);
    let file_writer = file.clone();
    let appender = std::thread::spawn(move || {
        let mut records = Vec::new();
        for burst in 0..80 {
            let part: Vec<Vec<u8>> = (0..50).map(|n| leef(&format!("f{burst}"), n, 10)).collect();
            append(&file_writer, &part);
            records.extend(part);
            std::thread::sleep(Duration::from_millis(100));
        }
        records
    });
    let mut sent_tcp = Vec::new();
    let mut kills = 0;
    while kills < kill_cycles(KILLS) {
        for (endpoint, code) in [
            (Endpoint::UploadUrl, 503),
            (Endpoint::Blob, 500),
            (Endpoint::DoneUpload, 503),
        ] {
            if rng.bool() {
                world.emulator.push_fault(endpoint, Fault::status(code), 1);
            }
        }
        let mut agent = world.agent(&settings);
        let addr = agent.feed.unwrap();
        let cycle = kills;
        let records: Vec<Vec<u8>> = (0..200).map(|n| leef(&format!("t{cycle}"), n, 0)).collect();
        sent_tcp.extend(records.iter().cloned());
        let sender = std::thread::spawn(move || {
            if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
                for record in records.chunks(20) {
                    if stream.write_all(&lines(record)).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        std::thread::sleep(Duration::from_millis(rng.u64(100..600)));
        agent.kill();
        let _ = sender.join();
        kills += 1;
    }
    let file_records = appender.join().unwrap();
    world.emulator.clear_faults();
    let agent = world.agent(&settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (got, _) = delivered(&world.emulator);
        if file_records.iter().all(|r| got.binary_search(r).is_ok()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "file records missing\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (all, batches) = delivered(&world.emulator);
    let mut sent: Vec<Vec<u8>> = [file_records.clone(), sent_tcp.clone()].concat();
    sent.sort();
    for record in &all {
        assert!(
            sent.binary_search(record).is_ok(),
            "a record that was never sent: {}",
            String::from_utf8_lossy(record)
        );
    }
    sent_tcp.sort();
    let mut unique = all.clone();
    unique.dedup();
    let duplicates = all.len() - unique.len();
    let tcp_delivered = unique
        .iter()
        .filter(|r| sent_tcp.binary_search(r).is_ok())
        .count();
    let file_delivered = file_records
        .iter()
        .filter(|r| unique.binary_search(r).is_ok())
        .count();
    let largest = world
        .emulator
        .uploads()
        .iter()
        .map(|u| u.records)
        .max()
        .unwrap_or(0) as usize;
    eprintln!(
        "kill -9 x{kills}: file {file_delivered} of {} records, tcp {tcp_delivered} of {} sent, {batches} batches, {duplicates} duplicates",
        file_records.len(),
        sent_tcp.len()
    );
    let file_streams: Vec<(String, usize)> = (0..80).map(|b| (format!("f{b}"), 50)).collect();
    let tcp_streams: Vec<(String, usize)> = (0..kills).map(|c| (format!("t{c}"), 200)).collect();
    let file_tally = tally(&world.emulator, &file_streams);
    let tcp_tally = tally(&world.emulator, &tcp_streams);
    eprintln!("kill -9 x{kills}, failing MCAS, tailed file: {file_tally}");
    eprintln!("kill -9 x{kills}, failing MCAS, TCP (unread socket buffers are lost by design): {tcp_tally}");
    assert_eq!(
        file_tally.unexplained, 0,
        "file records read twice: {file_tally}"
    );
    assert!(
        duplicates <= kills * largest,
        "{duplicates} duplicates after {kills} crashes"
    );
}
