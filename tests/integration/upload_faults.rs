//! One batch that keeps failing steps aside; a done_upload that went unanswered and its
//! repeat, whatever MCAS answers to the repeat, and a shutdown while it hangs.

use std::time::Duration;

use mcas_emulator::{Endpoint, Fault, RepeatedDone};

use crate::support::harness::*;

/// The storage answers 500 to every PUT of the first batch: after a few attempts it is held
/// back (the status says how many and why), the 10 batches after it are delivered, and
/// it is delivered too once MCAS takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_keeps_failing_steps_aside_for_the_next_ten() {
    let world = World::start().await;
    // The first batch of a new spool is number 0: its file name ends in -0.log.gz.
    world.emulator.fail_file(
        "-0.log.gz",
        Fault::Status {
            code: 500,
            retry_after: None,
            body: "{\"error\": \"emulated: this file always fails\"}".into(),
        },
    );
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("200ms"))
        .set("batch.writers", "1");
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let stuck: Vec<Vec<u8>> = (0..50).map(|n| leef("stuck", n, 0)).collect();
    send_tcp(addr, &lines(&stuck));
    agent.wait_status("the first batch sealed", |s| s["spool"]["sealed"] == 1);
    let mut later = Vec::new();
    for b in 0..10u64 {
        let batch: Vec<Vec<u8>> = (0..20).map(|n| leef(&format!("later{b}"), n, 0)).collect();
        send_tcp(addr, &lines(&batch));
        later.extend(batch);
        agent.wait_status("the batch sealed", |s| s["spool"]["sealed"] == b + 2);
    }
    world
        .emulator
        .wait_for_records(later.len() as u64, Duration::from_secs(40))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    let status = agent.wait_status("the batch held", |s| s["spool"]["held"] == 1);
    let why = status["spool"]["held_why"].as_str().unwrap_or_default();
    assert!(why.contains("500"), "{status}");
    assert_exactly_once(&world.emulator, later.clone());
    assert!(agent.log_text().contains("held back"));
    assert_eq!(
        std::fs::read_dir(agent.state_dir.join("spool/ready"))
            .unwrap()
            .count(),
        1,
        "the held batch stays in the spool"
    );

    world.emulator.clear_faults();
    wait_exactly_once(
        &world,
        &agent,
        [stuck, later].concat(),
        Duration::from_secs(30),
    )
    .await;
    agent.wait_status("nothing held", |s| s["spool"]["held"] == 0);
}

/// The first done_upload gets no answer in time (MCAS takes the file after the agent gave
/// up); the agent repeats it and MCAS answers the repeat as `mode` says. Returns the
/// records sent, the agent and its world.
async fn unanswered_done_upload(mode: RepeatedDone) -> (Vec<Vec<u8>>, Agent, World) {
    let world = World::start_with(|c| c.repeated_done = mode).await;
    // Processed 1.05 s after it arrived; the agent gives up after 1 s and repeats it at
    // least 0.5 s later (backoff with jitter, floor a tenth of 5 s).
    world.emulator.push_fault(
        Endpoint::DoneUpload,
        Fault::Delay(Duration::from_millis(1050)),
        1,
    );
    let mut settings = world.settings();
    // One batch of them all.
    settings
        .set("batch.max_age", &quote("1s"))
        .set("batch.writers", "1")
        .set("upload.timeout", &quote("1s"))
        .set("upload.backoff_min", &quote("5s"))
        .set("upload.backoff_max", &quote("5s"))
        .set("upload.outage_retry", &quote("5s"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..5_000).map(|n| leef("ambiguous", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    agent.wait_status("the batch delivered and removed", |s| {
        s["upload"]["batches"] == 1 && s["spool"]["batches"] == 0
    });
    assert_eq!(world.emulator.repeated_done(), 1, "{}", agent.log_text());
    assert!(agent.quarantined().is_empty(), "{}", agent.log_text());
    tokio::time::sleep(Duration::from_secs(1)).await;
    (records, agent, world)
}

/// MCAS answers the repeat 200 without ingesting again: delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_done_upload_repeated_and_answered_200_delivers_once() {
    let (records, _agent, world) = unanswered_done_upload(RepeatedDone::Ok).await;
    assert_exactly_once(&world.emulator, records);
}

/// MCAS refuses the repeat (400, the upload URL already used, its body echoing the
/// request's `inputStreamName`): the batch was delivered by the first call; it is
/// removed, never quarantined, uploads are not paused, and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_done_upload_whose_repeat_is_refused_counts_as_delivered() {
    let (records, agent, world) = unanswered_done_upload(RepeatedDone::Refuse).await;
    assert_exactly_once(&world.emulator, records);
    assert!(
        agent.log_text().contains("delivered by the first one"),
        "{}",
        agent.log_text()
    );
    assert_eq!(
        agent.status()["upload"]["last_error"],
        serde_json::Value::Null
    );
    assert!(!agent.log_text().contains("uploads are paused"));
}

/// SIGTERM while a done_upload hangs: the agent stops before MCAS answers (MCAS takes the
/// file meanwhile); the next run repeats that done_upload, whose refusal says the file
/// was taken, instead of uploading the batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_hung_done_upload_delivers_once_after_the_restart() {
    let world = World::start_with(|c| c.repeated_done = RepeatedDone::Refuse).await;
    world.emulator.push_fault(
        Endpoint::DoneUpload,
        Fault::Delay(Duration::from_secs(4)),
        1,
    );
    let mut settings = world.settings();
    // One batch of them all (sealed by age, 2 s after they arrive).
    settings
        .set("batch.writers", "1")
        .set("upload.timeout", &quote("10s"))
        .set("upload.shutdown_timeout", &quote("500ms"));
    let mut agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..5_000).map(|n| leef("hung", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world.emulator.calls_to(Endpoint::DoneUpload).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop();
    assert_eq!(
        world.emulator.uploads().len(),
        0,
        "stopped before MCAS took it"
    );
    world
        .emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(10))
        .await
        .unwrap();
    let again = world.agent(&settings);
    again.wait_status("the batch delivered and removed", |s| {
        s["upload"]["batches"] == 1 && s["spool"]["batches"] == 0
    });
    again.wait_quiet(Duration::from_secs(30)).await;
    assert_exactly_once(&world.emulator, records);
    assert!(again.quarantined().is_empty(), "{}", again.log_text());
}

/// MCAS ingests the repeat a second time: the agent sent one repeat, as it must without
/// an answer, and the batch is counted twice by MCAS: exactly that one batch, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_done_upload_ingested_twice_by_mcas_doubles_that_batch_only() {
    let (records, _agent, world) = unanswered_done_upload(RepeatedDone::IngestTwice).await;
    let (got, uploads) = delivered(&world.emulator);
    assert_eq!(uploads, 2);
    let mut twice = [records.clone(), records].concat();
    twice.sort();
    assert_eq!(got, twice);
}
