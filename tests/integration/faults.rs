//! MCAS failing in every way it can: retried without loss or duplicates, paused on a
//! refused token, quarantined on a batch the blob store refuses for its size.

use std::time::Duration;

use mcas_emulator::{Endpoint, Fault};

use crate::support::harness::*;

fn status(code: u16, retry_after: Option<&str>) -> Fault {
    Fault::Status {
        code,
        retry_after: retry_after.map(str::to_string),
        body: format!("{{\"error\": \"emulated {code}\"}}"),
    }
}

/// 429 with Retry-After, 503s, a dropped connection and a timeout on each step: every
/// record arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_end_in_delivery_without_loss_or_duplicates() {
    let world = World::start().await;
    let emulator = &world.emulator;
    emulator.push_fault(Endpoint::UploadUrl, status(429, Some("2")), 1);
    emulator.push_fault(Endpoint::UploadUrl, status(503, None), 2);
    emulator.push_fault(Endpoint::Blob, Fault::Drop, 1);
    emulator.push_fault(Endpoint::Blob, status(503, None), 1);
    emulator.push_fault(Endpoint::DoneUpload, Fault::Drop, 1);
    // Longer than upload.timeout (3s): the agent gives up, the emulator still accepts.
    emulator.push_fault(
        Endpoint::DoneUpload,
        Fault::Delay(Duration::from_secs(5)),
        1,
    );
    emulator.push_fault(Endpoint::DoneUpload, status(500, None), 1);

    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..3000).map(|n| leef("faults", n, 0)).collect();
    let started = std::time::Instant::now();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(90))
        .await
        .unwrap();
    // Nothing left in the agent's spool: no batch that could go up twice remains.
    agent.wait_quiet(Duration::from_secs(30)).await;
    assert_exactly_once(emulator, records);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured"
    );
    let statuses: Vec<u16> = emulator.calls().iter().map(|c| c.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&0));
    let status = agent.status();
    assert_eq!(
        status["upload"]["last_error"],
        serde_json::Value::Null,
        "{status}"
    );
}

/// 401: uploads pause with the token message, records stay spooled, and uploads resume
/// when MCAS takes the token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_pauses_uploads_and_says_what_to_do() {
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, status(401, None), 3);
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("500ms"))
        .set("upload.auth_retry", &quote("2s"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..100).map(|n| leef("auth", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));

    let status = agent.wait_status("the token error", |s| {
        s["upload"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the API token"))
    });
    assert!(status["upload"]["last_error"]
        .as_str()
        .unwrap()
        .contains("global administrator"));
    assert!(
        status["spool"]["batches"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(agent.log_text().contains("uploads are paused"));

    world
        .emulator
        .wait_for_records(100, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    assert!(!agent.log_text().contains(TOKEN), "the token was logged");
}

/// 413 on the blob PUT (the file's own fault): that batch goes to quarantine with the
/// server's answer; later batches are delivered. (A 4xx from upload_url or done_upload
/// concerns the whole tenant and pauses uploads instead: see `data_source`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_quarantined_and_the_rest_goes_on() {
    let world = World::start().await;
    world.emulator.push_fault(
        Endpoint::Blob,
        Fault::Status {
            code: 413,
            retry_after: None,
            body: "<Error><Code>RequestBodyTooLarge</Code><Message>InvalidFile: emulated</Message></Error>".into(),
        },
        1,
    );
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("500ms"))
        .set("batch.writers", "1");
    let agent = world.agent(&settings);
    let first: Vec<Vec<u8>> = (0..10).map(|n| leef("refused", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&first));
    agent.wait_status("a quarantined batch", |s| s["spool"]["quarantined"] == 1);

    let quarantined = agent.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let reason = std::fs::read_to_string(format!("{}.reason", quarantined[0].display())).unwrap();
    assert!(
        reason.contains("413") && reason.contains("InvalidFile"),
        "{reason}"
    );
    assert!(agent.log_text().contains("quarantine"));

    let second: Vec<Vec<u8>> = (0..10).map(|n| leef("accepted", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&second));
    world
        .emulator
        .wait_for_records(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, second);
}
