//! Delivery within MCAS's throttle: batches sized to the upload rate, waiting batches merged
//! into one upload (and the merge surviving kill -9), this agent's share of the tenant's
//! calls adapting to 429s, several agents on one tenant.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use mcas_emulator::{Endpoint, Fault};

use crate::support::harness::*;

/// The record counts of the sealed batches waiting in the agent's spool, oldest first.
fn ready_batches(state_dir: &Path) -> Vec<u64> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("spool/ready"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|n| {
            n.split('-')
                .nth(2)
                .unwrap()
                .trim_end_matches('r')
                .parse()
                .unwrap()
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes sealed batches into `state_dir`'s spool as an older version of the agent left
/// them (each gzip stream ended without a sync flush), `per_batch` records of `stream`
/// each, numbered from `first_seq`; returns how many records.
fn spool_old_batches(
    state_dir: &Path,
    stream: &str,
    first_seq: u64,
    batches: u64,
    per_batch: u64,
    pad: usize,
) -> u64 {
    let ready = state_dir.join("spool/ready");
    std::fs::create_dir_all(&ready).unwrap();
    for b in 0..batches {
        let seq = first_seq + b;
        let records: Vec<Vec<u8>> = (0..per_batch)
            .map(|n| leef(stream, (seq * per_batch + n) as usize, pad))
            .collect();
        let text = lines(&records);
        let tmp = ready.join("tmp");
        let mut gz = GzEncoder::new(std::fs::File::create(&tmp).unwrap(), Compression::new(1));
        gz.write_all(&text).unwrap();
        gz.finish().unwrap().sync_all().unwrap();
        let name = format!(
            "{seq:020}-{}-{per_batch}r-{}b.gz",
            a_minute_ago_ms() + seq,
            text.len()
        );
        std::fs::rename(&tmp, ready.join(name)).unwrap();
    }
    batches * per_batch
}

/// Now, in milliseconds since the epoch, less a minute: a batch sealed then is within
/// the 90 days MCAS takes.
fn a_minute_ago_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_millis() as u64 - 60_000
}

/// While the uploader keeps up, a batch seals at max_records; while a sealed batch waits
/// (here MCAS fails), the next one grows past it up to max_age; once MCAS takes uploads
/// again everything waiting goes up in one file, and batches are small again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_grow_while_others_wait_and_shrink_once_uploads_keep_up() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("batch.writers", "1")
        .set("batch.max_records", "100")
        .set("batch.max_age", &quote("4s"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    world.emulator.push_fault(
        Endpoint::UploadUrl,
        Fault::Status {
            code: 503,
            retry_after: None,
            body: String::new(),
        },
        10_000,
    );

    // Quiet: sealed by count, at once.
    let sent = Instant::now();
    send_tcp(
        addr,
        &lines(&(0..100).map(|n| leef("grow", n, 0)).collect::<Vec<_>>()),
    );
    wait_until("the first batch sealed", Duration::from_secs(10), || {
        ready_batches(&agent.state_dir) == [100]
    });
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "sealed by count, not age"
    );

    // Behind: 1000 more records make one batch, sealed by age, not ten of 100.
    send_tcp(
        addr,
        &lines(&(100..1100).map(|n| leef("grow", n, 0)).collect::<Vec<_>>()),
    );
    // (Waiting batches may be joined while MCAS fails for every batch: the writer's log
    // tells the batches it sealed.)
    let grown = |agent: &Agent| {
        agent
            .log_text()
            .lines()
            .filter(|l| l.contains("sealed a batch") && l.contains(" records=1000 "))
            .count()
    };
    wait_until("the grown batch sealed", Duration::from_secs(15), || {
        grown(&agent) == 1
    });
    send_tcp(
        addr,
        &lines(&(1100..2100).map(|n| leef("grow", n, 0)).collect::<Vec<_>>()),
    );
    wait_until(
        "a second grown batch sealed",
        Duration::from_secs(15),
        || grown(&agent) == 2,
    );

    // MCAS back: all three go up as one file (MCAS failed for every batch, so the
    // oldest's failures were not its own).
    world.emulator.clear_faults();
    world
        .emulator
        .wait_for_records(2100, Duration::from_secs(30))
        .await
        .unwrap();
    let sizes: Vec<u64> = world.emulator.uploads().iter().map(|u| u.records).collect();
    assert_eq!(sizes, [2100]);

    // Keeping up again (nothing waits): 250 records are batches of 100, 100 and 50.
    agent.wait_status("an empty spool", |s| s["spool"]["batches"] == 0);
    send_tcp(
        addr,
        &lines(&(2100..2350).map(|n| leef("grow", n, 0)).collect::<Vec<_>>()),
    );
    world
        .emulator
        .wait_for_records(2350, Duration::from_secs(30))
        .await
        .unwrap();
    // The first 100 were sealed by count again, at once (as the first batch was).
    let by_count = agent
        .log_text()
        .lines()
        .filter(|l| l.contains("sealed a batch") && l.contains(" records=100 "))
        .count();
    assert!(
        by_count >= 2,
        "no batch of 100 after the backlog went up:\n{}",
        agent
            .log_text()
            .lines()
            .filter(|l| l.contains("sealed a batch")
                || l.contains("merged")
                || l.contains("delivered"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_ids_exactly_once(&world.emulator, "grow", 2350);
}

/// A backlog of small batches left by an older version: the first ones go up as they are
/// while the rate lets calls go at once (the burst), then the rest as one gzip member in
/// two API calls; every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_small_batches_goes_up_as_one_gzip_member() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("upload.api_calls_per_minute", "30");
    let state = world.dir.path().join("state");
    let records = spool_old_batches(&state, "backlog", 0, 60, 200, 20);
    let agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(records, Duration::from_secs(60))
        .await
        .unwrap();
    let uploads = world.emulator.uploads();
    // The data sources list takes one of the 4 calls that may go back to back at start.
    assert!(
        uploads.len() <= 3,
        "{} uploads: at most two batches before calls are scarce, then one for the rest",
        uploads.len()
    );
    assert_eq!(
        world.emulator.calls_to(Endpoint::UploadUrl).len(),
        uploads.len()
    );
    assert_eq!(
        world.emulator.calls_to(Endpoint::DoneUpload).len(),
        uploads.len()
    );
    let merged = uploads.iter().max_by_key(|u| u.records).unwrap();
    let alone: u64 = uploads.iter().map(|u| u.records).sum::<u64>() - merged.records;
    // One member: a single-member decoder reads every record and leaves nothing after.
    let bytes = merged.read().unwrap();
    let mut decoder = flate2::bufread::GzDecoder::new(&bytes[..]);
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut text).unwrap();
    assert!(
        decoder.into_inner().is_empty(),
        "bytes after the first gzip member"
    );
    assert_eq!(
        text.iter().filter(|&&b| b == b'\n').count() as u64,
        records - alone
    );
    assert_ids_exactly_once(&world.emulator, "backlog", records);
    agent.wait_log("merged waiting batches into one upload");
}

/// The sync of `ready/` after a merge's rename fails once (`NSS_FAIL_AT`): the merged
/// batch and its sources wait until a sync succeeds, then the merged batch goes up alone
/// (its sources deleted, none uploaded beside it): every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_whose_directory_sync_fails_delivers_every_record_once() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("upload.api_calls_per_minute", "30");
    let state = world.dir.path().join("state");
    let records = spool_old_batches(&state, "unsynced", 0, 60, 200, 20);
    let agent = world.agent_with_env(&settings, &[("NSS_FAIL_AT", "merge-sync-ready")]);
    agent.wait_log("a merge failed after its rename into ready/");
    world
        .emulator
        .wait_for_records(records, Duration::from_secs(60))
        .await
        .unwrap();
    assert_ids_exactly_once(&world.emulator, "unsynced", records);
    agent.wait_log("deleted batches an interrupted merge had already merged");
}

/// kill -9 at any point of merges (the merged file half written, sealed beside its
/// sources, or its sources half deleted) never loses a record nor delivers one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_killed_midway_deliver_every_record_once() {
    let world = World::start().await;
    // Each start merges the merged file of the run before with more batches of an older
    // version: all of it recompressed, a merge that takes a while.
    let settings = world.settings();
    let state = world.dir.path().join("state");
    let mut records = 0;
    let mut next_seq = 0;
    let mut interrupted = 0;
    for round in 0..8u64 {
        // More waiting batches, numbered after everything in the spool.
        next_seq = next_seq.max(
            std::fs::read_dir(state.join("spool/ready"))
                .map(|d| {
                    d.filter_map(|e| {
                        let name = e.ok()?.file_name().to_string_lossy().into_owned();
                        let last = name.trim_end_matches(".gz").rsplit('-').next()?.to_string();
                        let first: u64 = name.split('-').next()?.parse().ok()?;
                        Some(
                            last.strip_suffix('m')
                                .and_then(|l| l.parse().ok())
                                .unwrap_or(first)
                                + 1,
                        )
                    })
                    .max()
                    .unwrap_or(0)
                })
                .unwrap_or(0),
        );
        records += spool_old_batches(&state, "killed", next_seq, 40, 400, 600);
        next_seq += 40;
        // MCAS throttles the first call (calls are scarce for 3 s, longer than a merge
        // costs: the waiting batches are merged once the wait is over), then refuses every
        // upload until the end: nothing leaves the spool but by merging.
        world.emulator.clear_faults();
        world.emulator.push_fault(
            Endpoint::UploadUrl,
            Fault::Status {
                code: 429,
                retry_after: Some("3".into()),
                body: String::new(),
            },
            1,
        );
        world
            .emulator
            .push_fault(Endpoint::UploadUrl, Fault::status(503), 10_000);
        let mut agent = world.agent(&settings);
        // Killed as soon as a merge is being written (even rounds), or as soon as a merged
        // file is sealed, while its sources are being deleted (odd rounds).
        let merged_before = merged_files(&state);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let hit = if round % 2 == 0 {
                merge_parts(&state) > 0
            } else {
                merged_files(&state) != merged_before
            };
            if hit {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        agent.kill();
        // What the kill interrupted: a merged file half written, or sealed beside sources
        // not yet deleted. The next start must sort it out.
        let parts = merge_parts(&state);
        if parts > 0 || merged_beside_sources(&state) {
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} kills fell inside a merge"
    );
    world.emulator.clear_faults();
    let agent = world.agent(&settings);
    world
        .emulator
        .wait_for_records(records, Duration::from_secs(120))
        .await
        .unwrap();
    // Nothing left in flight: whatever could arrive late has arrived.
    agent.wait_quiet(Duration::from_secs(30)).await;
    assert_ids_exactly_once(&world.emulator, "killed", records);
}

/// How many merges are being written in `state_dir`'s spool.
fn merge_parts(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("spool/open"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("merge-"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// The merged batches in `state_dir`'s spool.
fn merged_files(state_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("spool/ready"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.ends_with("m.gz"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether `state_dir`'s spool holds a merged batch and one of its sources: the state a
/// kill between the merged file's seal and its sources' deletion leaves.
fn merged_beside_sources(state_dir: &Path) -> bool {
    let names: Vec<String> = std::fs::read_dir(state_dir.join("spool/ready"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let seq = |name: &str| name.split('-').next().unwrap().parse::<u64>().unwrap();
    names.iter().any(|merged| {
        let Some(last) = merged
            .strip_suffix("m.gz")
            .and_then(|n| n.rsplit('-').next())
            .map(|n| n.parse::<u64>().unwrap())
        else {
            return false;
        };
        names
            .iter()
            .any(|other| other != merged && (seq(merged)..=last).contains(&seq(other)))
    })
}

/// A 429 halves this agent's rate of API calls (status and metrics show it); calls that
/// succeed afterwards raise it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_lowers_the_agents_rate_and_successes_raise_it() {
    let world = World::start().await;
    let mut settings = world.settings();
    let metrics = free_port();
    settings
        .set("upload.api_calls_per_minute", "60")
        .set("upload.min_api_calls_per_minute", "10")
        .set("batch.max_age", &quote("300ms"))
        .set("metrics.listen", &quote(&format!("127.0.0.1:{metrics}")));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    agent.wait_status("the full rate", |s| s["upload"]["api_rate"] == 60.0);

    world.emulator.push_fault(
        Endpoint::DoneUpload,
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
            body: String::new(),
        },
        1,
    );
    send_tcp(
        addr,
        &lines(&(0..10).map(|n| leef("aimd", n, 0)).collect::<Vec<_>>()),
    );
    world
        .emulator
        .wait_for_records(10, Duration::from_secs(30))
        .await
        .unwrap();
    let status = agent.wait_status("the 429 counted", |s| s["upload"]["throttled"] == 1);
    let lowered = status["upload"]["api_rate"].as_f64().unwrap();
    assert!(
        (30.0..31.0).contains(&lowered),
        "halved, then a success or two: {lowered}"
    );
    let text = scrape(metrics);
    assert!(
        text.contains("\nnss_agent_upload_throttled_total 1\n"),
        "{text}"
    );
    assert!(text.contains("\nnss_agent_upload_api_rate 3"), "{text}");

    for round in 0..5 {
        send_tcp(addr, &lines(&[leef("aimd", 10 + round, 0)]));
        world
            .emulator
            .wait_for_records(11 + round as u64, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let status = agent.wait_status("the rate growing back", |s| {
        s["upload"]["api_rate"].as_f64().unwrap() > lowered + 0.1
    });
    assert!(
        status["upload"]["api_rate"].as_f64().unwrap() < 60.0,
        "slowly"
    );
    assert_ids_exactly_once(&world.emulator, "aimd", 15);
}

fn scrape(port: u16) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Three agents on one tenant throttled at 30 calls a minute, each feeding batches sealed
/// every second: every one delivers everything, and 429s stay a small share of the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_share_a_tenant_and_none_starves() {
    let world = World::start_with(|c| c.throttle_per_minute = Some(30)).await;
    let mut agents = Vec::new();
    for a in 0..3 {
        let mut settings = world.settings();
        let dir = world.dir.path().join(format!("agent{a}"));
        settings
            .set("upload.api_calls_per_minute", "30")
            .set("batch.max_age", &quote("1s"))
            .set(
                "paths.state_dir",
                &quote(&dir.join("state").display().to_string()),
            )
            .set(
                "paths.runtime_dir",
                &quote(&dir.join("run").display().to_string()),
            );
        agents.push(world.agent(&settings));
    }
    // 20 s of records, a connection a second to each agent.
    let per_round = 500;
    let rounds = 20;
    let started = Instant::now();
    for round in 0..rounds {
        for (a, agent) in agents.iter().enumerate() {
            let records: Vec<Vec<u8>> = (0..per_round)
                .map(|n| leef(&format!("agent{a}"), round * per_round + n, 100))
                .collect();
            send_tcp(agent.feed.unwrap(), &lines(&records));
        }
        let next = started + Duration::from_secs(round as u64 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let total = (per_round * rounds) as u64;
    world
        .emulator
        .wait_for_records(3 * total, Duration::from_secs(150))
        .await
        .unwrap();
    for a in 0..3 {
        assert_ids_exactly_once_among(&world.emulator, &format!("agent{a}"), total);
    }
    let (mut calls, mut throttled) = (0, 0);
    for agent in &agents {
        let status = agent.status();
        calls += status["upload"]["api_calls"].as_u64().unwrap();
        throttled += status["upload"]["throttled"].as_u64().unwrap();
        assert!(status["upload"]["batches"].as_u64().unwrap() > 0);
    }
    assert!(
        throttled * 5 <= calls,
        "{throttled} of {calls} calls were answered 429"
    );
}

/// Like [`assert_ids_exactly_once`], for one stream among others.
fn assert_ids_exactly_once_among(emulator: &mcas_emulator::Emulator, stream: &str, count: u64) {
    let mut seen = vec![0u8; count as usize];
    let needle = format!("recordid={stream}-");
    for upload in emulator.uploads() {
        for record in upload.records_decompressed().unwrap() {
            let Some(at) = memchr::memmem::find(&record, needle.as_bytes()) else {
                continue;
            };
            let n: usize = std::str::from_utf8(
                record[at + needle.len()..]
                    .split(|&b| b == b'\t')
                    .next()
                    .unwrap(),
            )
            .unwrap()
            .parse()
            .unwrap();
            seen[n] = seen[n].saturating_add(1);
        }
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let doubled = seen.iter().filter(|&&c| c > 1).count();
    assert_eq!((missing, doubled), (0, 0), "{stream}: missing, duplicated");
}

/// Whether the blob store has taken a Put Block (not a block list).
fn a_block_staged(world: &World) -> bool {
    world
        .emulator
        .calls_to(Endpoint::Blob)
        .iter()
        .any(|c| c.query.contains("comp=block&") && (200..300).contains(&c.status))
}

/// Records of `stream` written into `feed` (the TCP feed, or a tailed file) every 50 ms,
/// 20 at a time (a steady feed) until `done` (which must come within 30 s).
async fn trickle_until(
    feed: &mut impl Write,
    stream: &str,
    written: &mut Vec<Vec<u8>>,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within 30 s of a steady feed"
        );
        let step: Vec<Vec<u8>> = (written.len()..written.len() + 20)
            .map(|n| leef(stream, n, 20))
            .collect();
        feed.write_all(&lines(&step)).unwrap();
        written.extend(step);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One writer, batches sealed by age every 300 ms, 10 calls a minute: once the start-up
/// took its calls, those left suffice for one upload, not for one each.
fn scarce_calls(world: &World) -> Settings {
    let mut settings = world.settings();
    settings
        .set("batch.writers", "1")
        .set("batch.max_age", &quote("300ms"))
        .set("upload.api_calls_per_minute", "10");
    settings
}

/// While a steady feed fills batches and the calls left suffice for one upload but not
/// one each, the batches sealed are sent ahead: the blob store has the first blocks before
/// the last records are even written, and those records join the same upload (one gzip
/// member, in blocks), every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_sealed_while_calls_are_scarce_are_sent_ahead_as_they_seal() {
    let world = World::start().await;
    let agent = world.agent(&scarce_calls(&world));
    let mut feed = std::net::TcpStream::connect(agent.feed.unwrap()).unwrap();
    let mut written = Vec::new();
    trickle_until(&mut feed, "ahead", &mut written, || a_block_staged(&world)).await;
    let first_block = written.len();
    // A second after the first block: several batches sealed by age meanwhile.
    let later = Instant::now() + Duration::from_secs(1);
    trickle_until(&mut feed, "ahead", &mut written, || Instant::now() > later).await;
    drop(feed);
    wait_exactly_once(&world, &agent, written.clone(), Duration::from_secs(60)).await;
    let uploads = world.emulator.uploads();
    let first = uploads
        .iter()
        .find(|u| u.records_decompressed().unwrap().contains(&written[0]))
        .unwrap();
    let records = first.records_decompressed().unwrap();
    assert!(
        records.contains(&written[first_block + 20]),
        "the records written after the first block are not in its upload:\n{}",
        agent.log_text()
    );
    assert!(first.block_count > 2, "{} blocks", first.block_count);
    let bytes = first.read().unwrap();
    let mut decoder = flate2::bufread::GzDecoder::new(&bytes[..]);
    std::io::Read::read_to_end(&mut decoder, &mut Vec::new()).unwrap();
    assert!(
        decoder.into_inner().is_empty(),
        "bytes after the first gzip member"
    );
    agent.wait_log("sent batches ahead as they were sealed");
}

/// A block sent ahead is refused (a 500 from the blob store): the upload sent ahead is
/// given up, its batches wait in the spool as they were, and every record reaches MCAS
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_refused_while_sent_ahead_loses_nothing_and_doubles_nothing() {
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::Blob, Fault::status(500), 1);
    let mut settings = scarce_calls(&world);
    settings.set("upload.backoff_min", &quote("1s"));
    let agent = world.agent(&settings);
    let mut feed = std::net::TcpStream::connect(agent.feed.unwrap()).unwrap();
    let mut written = Vec::new();
    trickle_until(&mut feed, "refused", &mut written, || {
        !world.emulator.calls_to(Endpoint::Blob).is_empty()
    })
    .await;
    drop(feed);
    wait_exactly_once(&world, &agent, written, Duration::from_secs(90)).await;
    let refused = &world.emulator.calls_to(Endpoint::Blob)[0];
    assert_eq!(refused.status, 500);
    assert!(
        refused.query.contains("comp=block&"),
        "the refused request was not a block sent ahead: {}",
        refused.query
    );
}

/// kill -9 while batches of a tailed file are being sent ahead (blocks staged, no block
/// list, no done_upload): the next start finds the batches in the spool (the merged
/// file's part deleted) and the file's checkpoint before them, and every record reaches
/// MCAS once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_sending_ahead_loses_nothing_and_doubles_nothing() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    std::fs::write(&file, b"").unwrap();
    let mut settings = scarce_calls(&world);
    settings.set("feed.listen", &quote("")).tail(&file);
    let mut agent = world.agent(&settings);
    agent.wait_status("the file open", |s| s["feed"]["files"][0]["open"] == true);
    let mut written = Vec::new();
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    trickle_until(&mut out, "killed", &mut written, || a_block_staged(&world)).await;
    agent.kill();
    assert!(
        world.emulator.uploads().is_empty(),
        "done_upload went before the kill: the kill did not land while sending ahead"
    );
    drop(agent);
    let agent = world.agent(&settings);
    wait_exactly_once(&world, &agent, written, Duration::from_secs(90)).await;
}

/// Writes `batches` sealed batches of `per_batch` records of `stream` into `state_dir`'s
/// spool as this agent seals them (a sync flush before the final block, the CRC-32 of the
/// file's bytes in the name); returns each batch's records.
fn spool_sealed_batches(
    state_dir: &Path,
    stream: &str,
    batches: u64,
    per_batch: u64,
) -> Vec<Vec<Vec<u8>>> {
    let ready = state_dir.join("spool/ready");
    std::fs::create_dir_all(&ready).unwrap();
    (0..batches)
        .map(|seq| {
            let records: Vec<Vec<u8>> = (0..per_batch)
                .map(|n| leef(stream, (seq * per_batch + n) as usize, 20))
                .collect();
            let text = lines(&records);
            let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
            gz.write_all(&text).unwrap();
            gz.flush().unwrap();
            let bytes = gz.finish().unwrap();
            let name = format!(
                "{seq:020}-{}-{per_batch}r-{}b-{:08x}c.gz",
                a_minute_ago_ms() + seq,
                text.len(),
                crc32fast::hash(&bytes)
            );
            std::fs::write(ready.join(name), bytes).unwrap();
            records
        })
        .collect()
}

/// A batch damaged in the spool (a byte changed after its seal) is the oldest when calls
/// are scarce and a steady feed fills batches (where batches are sent ahead): it goes to
/// quarantine before an upload URL is asked for it, every other record reaches MCAS once,
/// and no upload_url call is lost (no more of them than uploads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_oldest_batch_goes_to_quarantine_before_a_call_is_spent_sending_it_ahead() {
    let world = World::start().await;
    let state = world.dir.path().join("state");
    let mut spooled = spool_sealed_batches(&state, "spooled", 6, 200);
    let damaged = files_in(&state.join("spool/ready"))[3].clone();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&damaged, bytes).unwrap();
    spooled.remove(3);
    let agent = world.agent(&scarce_calls(&world));
    let mut feed = std::net::TcpStream::connect(agent.feed.unwrap()).unwrap();
    let mut written = Vec::new();
    trickle_until(&mut feed, "fed", &mut written, || {
        !agent.quarantined().is_empty()
    })
    .await;
    drop(feed);
    let expected = [spooled.concat(), written].concat();
    wait_exactly_once(&world, &agent, expected, Duration::from_secs(90)).await;
    assert_eq!(agent.quarantined().len(), 1, "{:?}", agent.quarantined());
    let asked = world.emulator.calls_to(Endpoint::UploadUrl).len();
    let uploads = world.emulator.uploads().len();
    assert!(
        asked <= uploads,
        "{asked} upload_url calls for {uploads} uploads:\n{}",
        agent.log_text()
    );
}
