//! How uploads use the tenant's calls and come back after MCAS fails: a sealed batch goes
//! up at once while calls are plentiful, an outage of any length costs seconds after its
//! end and few calls meanwhile, a short one holds nothing back, and upload URLs the agent
//! will not use pause uploads.

use std::time::{Duration, Instant, SystemTime};

use mcas_emulator::{Emulator, Endpoint, Fault};

use crate::support::harness::*;

/// The record numbers of `stream` (made by [`leef`]) in the order MCAS received them.
fn arrival_order(emulator: &Emulator, stream: &str) -> Vec<usize> {
    let needle = format!("recordid={stream}-");
    emulator
        .uploads()
        .iter()
        .flat_map(|u| u.records_decompressed().unwrap())
        .filter_map(|record| {
            let at = memchr::memmem::find(&record, needle.as_bytes())?;
            let rest = &record[at + needle.len()..];
            let n = rest.split(|&b| b == b'\t').next()?;
            std::str::from_utf8(n).ok()?.parse().ok()
        })
        .collect()
}

/// At most `most` of `times` in any minute.
fn assert_at_most_a_minute(times: &[SystemTime], most: usize) {
    for (i, &at) in times.iter().enumerate() {
        let in_minute = times[i..]
            .iter()
            .take_while(|&&t| t < at + Duration::from_secs(60))
            .count();
        assert!(in_minute <= most, "{in_minute} calls within a minute");
    }
}

/// Every PUT takes half a second, batches seal (by age) faster than that, and the agent
/// may make 600 calls a minute: each batch goes up alone as sealed, none waits to be
/// merged with others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_batch_goes_up_at_once_while_calls_are_plentiful() {
    let world = World::start().await;
    world.emulator.push_fault(
        Endpoint::Blob,
        Fault::Delay(Duration::from_millis(500)),
        1_000,
    );
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("100ms"))
        .set("batch.writers", "1");
    let agent = world.agent(&settings);
    let mut stream = std::net::TcpStream::connect(agent.feed.unwrap()).unwrap();
    let mut all = Vec::new();
    for b in 0..20usize {
        let batch: Vec<Vec<u8>> = (0..20).map(|n| leef("plenty", b * 20 + n, 0)).collect();
        std::io::Write::write_all(&mut stream, &lines(&batch)).unwrap();
        all.extend(batch);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
    wait_exactly_once(&world, &agent, all, Duration::from_secs(40)).await;
    let status = agent.wait_status("the spool empty", |s| s["spool"]["batches"] == 0);
    let sealed = status["spool"]["sealed"].as_u64().unwrap() as usize;
    assert!(sealed > 3, "{status}");
    assert_eq!(
        world.emulator.uploads().len(),
        sealed,
        "each batch as sealed, none merged:\n{}",
        agent.log_text()
    );
    assert!(!agent.log_text().contains("merged waiting batches"));
}

/// 45 s of 503 from upload_url (today's backoff would have grown past 15 s, and held the
/// first batch for 5 minutes): one attempt every 15 s meanwhile (at most 4 calls a
/// minute, the status says so), and the whole backlog at MCAS, as one upload, within
/// 20 s of MCAS's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_backlog_is_at_mcas_within_seconds_and_few_calls_meanwhile() {
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(503), 1_000_000);
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("300ms"))
        .set("batch.writers", "1")
        .set("upload.backoff_min", &quote("1s"))
        .set("upload.backoff_max", &quote("5m"))
        // The default: one attempt every 15 s.
        .remove("upload.outage_retry");
    let start = Instant::now();
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let mut all = Vec::new();
    for b in 0..3usize {
        let batch: Vec<Vec<u8>> = (0..100).map(|n| leef("outage", b * 100 + n, 0)).collect();
        send_tcp(addr, &lines(&batch));
        all.extend(batch);
        agent.wait_status("the batch sealed", |s| s["spool"]["sealed"] == b as u64 + 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::time::sleep((start + Duration::from_secs(45)).saturating_duration_since(Instant::now()))
        .await;
    let status = agent.status();
    let during: Vec<SystemTime> = world
        .emulator
        .calls_to(Endpoint::UploadUrl)
        .iter()
        .map(|c| c.at)
        .collect();
    world.emulator.clear_faults();
    let back = Instant::now();
    world
        .emulator
        .wait_for_records(all.len() as u64, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e} after MCAS's return\n{status}\n{}", agent.log_text()));
    let after = back.elapsed();
    assert!(
        during.len() <= 4,
        "{} upload_url calls in 45 s of outage\n{}",
        during.len(),
        agent.log_text()
    );
    assert_at_most_a_minute(&during, 4);
    assert_eq!(
        world.emulator.uploads().len(),
        1,
        "the backlog as one upload"
    );
    agent.wait_quiet(Duration::from_secs(30)).await;
    assert_exactly_once(&world.emulator, all);
    eprintln!("delivered {after:?} after MCAS's return");
    assert_eq!(status["upload"]["outage"], true, "{status}");
    assert_eq!(status["upload"]["outage_retry"], 15.0, "{status}");
}

/// 6 s of 503 from every MCAS step while the first batch waits: it is not held back for
/// `upload.backoff_max` (5 minutes) when newer batches are delivered after MCAS's
/// return; every record is at MCAS within 20 s of the return, in the order the batches
/// were sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_seconds_of_503_deliver_nothing_late_and_keep_the_order() {
    let world = World::start().await;
    for endpoint in [Endpoint::UploadUrl, Endpoint::Blob, Endpoint::DoneUpload] {
        world
            .emulator
            .push_fault(endpoint, Fault::status(503), 1_000_000);
    }
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("200ms"))
        .set("batch.writers", "1")
        .set("upload.backoff_min", &quote("300ms"))
        .set("upload.backoff_max", &quote("5m"))
        .remove("upload.outage_retry");
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let first: Vec<Vec<u8>> = (0..50).map(|n| leef("sixs", n, 0)).collect();
    send_tcp(addr, &lines(&first));
    tokio::time::sleep(Duration::from_secs(6)).await;
    world.emulator.clear_faults();
    let cleared = Instant::now();
    let mut all = first;
    for b in 1..20usize {
        let batch: Vec<Vec<u8>> = (0..50).map(|n| leef("sixs", b * 50 + n, 0)).collect();
        send_tcp(addr, &lines(&batch));
        all.extend(batch);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    world
        .emulator
        .wait_for_records(
            all.len() as u64,
            Duration::from_secs(20).saturating_sub(cleared.elapsed()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e} within 20 s of MCAS's return\n{}", agent.log_text()));
    agent.wait_quiet(Duration::from_secs(30)).await;
    assert_exactly_once(&world.emulator, all.clone());
    let order = arrival_order(&world.emulator, "sixs");
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "records reached MCAS out of the order of their batches"
    );
    assert_eq!(agent.status()["spool"]["held"], 0);
}

/// upload_url hands out `http://` URLs: the agent sends nothing in clear, asks a few times,
/// then pauses uploads with a clear status; once MCAS hands usable URLs again the batch
/// is delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_upload_urls_pause_uploads_and_lose_nothing() {
    let world = World::start().await;
    world.emulator.set_insecure_urls(true);
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("200ms"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..5_000).map(|n| leef("insecure", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    let status = agent.wait_status("uploads paused", |s| s["upload"]["paused"].is_string());
    let why = status["upload"]["paused"].as_str().unwrap();
    assert!(why.contains("not https"), "{why}");
    assert!(
        world.emulator.calls_to(Endpoint::Blob).is_empty(),
        "nothing was sent to a blob URL"
    );
    let (code, text) = run_nss(&world.dir.path().join("config.toml"), &["status"], &[]);
    assert!(text.contains("PAUSED"), "{code} {text}");
    world.emulator.set_insecure_urls(false);
    wait_exactly_once(&world, &agent, records, Duration::from_secs(30)).await;
    assert_eq!(agent.status()["upload"]["paused"], serde_json::Value::Null);
}
