//! Nothing read is lost: restarts and crashes while a tailed file grows.

use std::io::Write;
use std::time::Duration;

use crate::harness::*;

fn tail_only(world: &World, file: &std::path::Path) -> Settings {
    let mut settings = world.settings();
    settings
        .set("feed.listen", &quote(""))
        .set(
            "feed.files",
            &format!("[{}]", quote(&file.display().to_string())),
        )
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
    world
        .emulator
        .wait_for_records(800, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_exactly_once(&world.emulator, [first, second].concat());
    assert!(
        agent.log_text().contains("tailing from the checkpoint"),
        "{}",
        agent.log_text()
    );
}

/// kill -9 at random moments (20 times or more) while records are appended: after the last start every
/// record of the file is delivered; duplicates (a crash between done_upload and the
/// deletion of the batch) are counted and reported.
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
    while !appender.is_finished() || kills < 20 {
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
    let (all, batches) = delivered(&world.emulator);
    let duplicates = all.len() - expected.len();
    eprintln!(
        "kill -9 x{kills}: {} records, {batches} batches, {duplicates} duplicates",
        expected.len()
    );
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
