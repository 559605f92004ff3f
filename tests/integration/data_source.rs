//! The data source as MCAS sees it: refusals of the whole tenant (an unknown data source,
//! an unknown log format) pause uploads instead of quarantining batches, and the data
//! sources list is read by the daemon, `nss status` and `nss troubleshoot mcas`.

use std::time::Duration;

use mcas_emulator::{DataSource, Roles};
use nix::sys::signal::Signal;

use crate::support::harness::*;

/// `mcas.data_source` names a data source MCAS does not have: done_upload is refused, the
/// batches wait in the spool (none quarantined), the status names the data source and the
/// fix; once the data source is created in MCAS everything is delivered, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_data_source_pauses_uploads_until_it_exists() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("mcas.data_source", &quote("NSS-east"))
        .set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    let mut records = Vec::new();
    // Several batches, refused again and again: none may go to quarantine.
    for round in 0..3 {
        let batch: Vec<Vec<u8>> = (0..50)
            .map(|n| leef(&format!("east{round}"), n, 0))
            .collect();
        send_tcp(agent.feed.unwrap(), &lines(&batch));
        records.extend(batch);
        std::thread::sleep(Duration::from_millis(700));
    }
    let status = agent.wait_status("uploads paused for the data source", |s| {
        s["upload"]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("NSS-east"))
            // Every record sealed and waiting (waiting batches may be merged into one).
            && s["spool"]["sealed_records"].as_u64() >= Some(150)
            && s["spool"]["batches"].as_u64() >= Some(1)
            && s["mcas"]["data_source_found"] == false
    });
    let paused = status["upload"]["paused"].as_str().unwrap();
    assert!(
        paused.contains("create the data source \"NSS-east\"")
            && paused.contains("mcas.data_source")
            && paused.contains("400"),
        "{paused}"
    );
    let last_error = status["upload"]["last_error"].as_str().unwrap();
    assert!(last_error.contains("uploads are paused"), "{last_error}");
    // The daemon read the list: the missing data source and the ones that exist.
    let problem = status["mcas"]["data_source_problem"].as_str().unwrap();
    assert!(
        problem.contains("\"NSS-east\"") && problem.contains("it has \"NSS\""),
        "{problem}"
    );
    assert_eq!(status["spool"]["quarantined"], 0, "{status}");
    assert!(agent.quarantined().is_empty(), "{:?}", agent.quarantined());
    assert!(world.emulator.uploads().is_empty());
    assert!(agent.log_text().contains("uploads are paused"));

    let config = world.dir.path().join("config.toml");
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("[FAIL] data source") && text.contains("NSS-east"),
        "{text}"
    );
    assert!(text.contains("PAUSED"), "{text}");

    // Created in the portal: the paused batches go, without a restart.
    world
        .emulator
        .add_data_source(DataSource::new("NSS-east", 170));
    world
        .emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    assert!(world
        .emulator
        .uploads()
        .iter()
        .all(|u| u.data_source == "NSS-east"));
    let status = agent.wait_status("the data source found and uploads going", |s| {
        s["mcas"]["data_source_found"] == true && s["upload"]["paused"].is_null()
    });
    assert_eq!(status["upload"]["last_error"], serde_json::Value::Null);
    assert!(agent.quarantined().is_empty());
}

/// `mcas.source` names a log format the tenant does not take: uploads pause (nothing
/// quarantined) with the fix; with a corrected file, SIGHUP retries at once (the retry
/// interval is an hour here) and every record is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_log_format_pauses_uploads_until_the_source_is_fixed() {
    let world = World::start_with(|config| {
        config.log_formats.retain(|f| f != "ZSCALER_QRADAR_SYSLOG");
    })
    .await;
    let mut settings = world.settings();
    settings
        .set("mcas.source", &quote("ZSCALER_QRADAR_SYSLOG"))
        .set("batch.max_age", &quote("300ms"))
        .set("upload.auth_retry", &quote("1h"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..100).map(|n| leef("format", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    let status = agent.wait_status("uploads paused for the log format", |s| {
        s["upload"]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("mcas.source"))
    });
    let paused = status["upload"]["paused"].as_str().unwrap();
    assert!(paused.contains("ZSCALER_QRADAR_SYSLOG"), "{paused}");
    assert!(
        paused.contains("the names MCAS documents for upload_url are ZSCALER, ZSCALER_SYSLOG, ZSCALER_QRADAR_SYSLOG, ZSCALER_CEF_SYSLOG")
            && paused.contains("\"auto\""),
        "{paused}"
    );
    assert!(!paused.contains("create the data source"), "{paused}");
    // The data source NSS is QRadar LEEF (170), not its syslog variant (171).
    let problem = status["mcas"]["data_source_problem"].as_str().unwrap();
    assert!(
        problem.contains("170 (ZSCALER_QRADAR)") && problem.contains("ZSCALER_QRADAR_SYSLOG (171)"),
        "{problem}"
    );
    assert_eq!(status["mcas"]["data_source_found"], true);
    assert!(
        status["spool"]["batches"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(agent.quarantined().is_empty(), "{:?}", agent.quarantined());

    settings.set("mcas.source", &quote("ZSCALER_QRADAR"));
    settings.write(&world.dir.path().join("config.toml"));
    agent.signal(Signal::SIGHUP);
    world
        .emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    let status = agent.wait_status("the pause lifted", |s| s["upload"]["paused"].is_null());
    assert_eq!(
        status["mcas"]["data_source_problem"],
        serde_json::Value::Null
    );
    assert!(agent.quarantined().is_empty());
}

/// `nss status` shows MCAS's own view of the data source: found, and when MCAS last
/// received data (read at start, here after a reload that follows a delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_data_source_as_mcas_lists_it() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    let status = agent.wait_status("the data source found", |s| {
        s["mcas"]["data_source_found"] == true
    });
    assert_eq!(status["mcas"]["auth"], "token");
    assert_eq!(
        status["mcas"]["last_data_received"],
        serde_json::Value::Null
    );
    assert_eq!(status["upload"]["paused"], serde_json::Value::Null);

    let records: Vec<Vec<u8>> = (0..20).map(|n| leef("seen", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(20, Duration::from_secs(30))
        .await
        .unwrap();
    agent.signal(Signal::SIGHUP);
    let status = agent.wait_status("MCAS's last data received", |s| {
        s["mcas"]["last_data_received"].is_string()
    });
    let received =
        humantime::parse_rfc3339(status["mcas"]["last_data_received"].as_str().unwrap()).unwrap();
    assert!(received.elapsed().unwrap() < Duration::from_secs(60));

    let config = world.dir.path().join("config.toml");
    let (code, json) = run_nss(&config, &["status", "--json"], &[]);
    assert_eq!(code, 0, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["mcas"]["data_source_found"], true);
    assert!(json["mcas"]["last_data_received"].is_string());
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("] data source"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("[ ok ]") && line.contains("MCAS last received data at"),
        "{line}"
    );
}

/// `nss troubleshoot mcas` after the block-script check: the data source present (exit 0),
/// of another log type (a warning naming both, exit 0), missing (a verdict naming it and
/// the ones that exist, exit 69), and the list unreadable without Discovery.read (said,
/// exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn troubleshoot_checks_the_data_source() {
    let world = World::start().await;
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    world
        .emulator
        .add_data_source(DataSource::new("Firewall", 196));
    let config = world.dir.path().join("config.toml");
    let troubleshoot_as = |data_source: &str, source: &str| {
        let mut settings = world.settings();
        settings
            .set("mcas.data_source", &quote(data_source))
            .set("mcas.source", &quote(source));
        settings.write(&config);
        run_nss(&config, &["troubleshoot", "mcas"], &[])
    };
    let troubleshoot = |data_source: &str| troubleshoot_as(data_source, "auto");

    let (code, text) = troubleshoot("NSS");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Data source: OK. \"NSS\" exists in MCAS, log type 170 (ZSCALER_QRADAR)"),
        "{text}"
    );
    assert!(!text.contains("Warning"), "{text}");

    // With auto the data source's own type is used; with a fixed one that differs, a
    // warning names both.
    let (code, text) = troubleshoot("Firewall");
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("Warning"), "{text}");
    assert!(text.contains("Log format: ZSCALER_CEF (auto: "), "{text}");
    let (code, text) = troubleshoot_as("Firewall", "ZSCALER_QRADAR");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Log format: ZSCALER_QRADAR (set in mcas.source)"),
        "{text}"
    );
    assert!(
        text.contains("Warning: the data source \"Firewall\" has log type 196 (ZSCALER_CEF)")
            && text.contains("mcas.source is ZSCALER_QRADAR (170)"),
        "{text}"
    );

    let (code, text) = troubleshoot("NSS-east");
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains(
            "Verdict: MCAS has no data source \"NSS-east\" (it has \"NSS\", \"Firewall\")"
        ),
        "{text}"
    );
    assert!(text.contains("mcas.data_source"), "{text}");

    world.emulator.set_token_roles(Roles {
        discovery_manage: true,
        discovery_read: false,
    });
    let (code, text) = troubleshoot("NSS-east");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Data source: not checked")
            && text.contains("Discovery.read")
            && text.contains("\"NSS-east\""),
        "{text}"
    );
    assert_eq!(text.matches("Discovery.read").count(), 1, "{text}");
}

/// `nss configure-mcas` verifies the data source as troubleshoot does: one it names that
/// MCAS lacks is a verdict naming it and the ones that exist (saved all the same, exit 69).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_checks_the_data_source() {
    let world = World::start().await;
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    let config = world.dir.path().join("config.toml");
    let mut settings = world.settings();
    settings.remove("mcas.token").remove("mcas.domain");
    settings.write(&config);
    let token_file = world.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let configure = |data_source: &str| {
        run_nss(
            &config,
            &[
                "configure-mcas",
                "--token-file",
                token_file.to_str().unwrap(),
                "--domain",
                &world.emulator.domain(),
                "--data-source",
                data_source,
            ],
            &[],
        )
    };

    let (code, text) = configure("NSS");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Data source: OK. \"NSS\" exists"), "{text}");

    let (code, text) = configure("NSS-east");
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("MCAS has no data source \"NSS-east\" (it has \"NSS\")"),
        "{text}"
    );
    assert!(text.contains("saved all the same"), "{text}");
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("data_source = \"NSS-east\""));
}

/// `mcas.source = "auto"` (the default): the files go up as the log type of the data
/// source as MCAS lists it (here QRadar LEEF over syslog, 171), and `nss status` and
/// `nss troubleshoot mcas` say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_source_is_the_data_sources_log_type() {
    let world = World::start().await;
    world.emulator.add_data_source(DataSource::new("NSS", 171));
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    let (agent, sources) = deliver_twenty(&world, "auto").await;
    assert!(
        sources.iter().all(|s| s == "ZSCALER_QRADAR_SYSLOG"),
        "{sources:?}"
    );
    let status = agent.wait_status("the log format", |s| {
        s["mcas"]["source"] == "ZSCALER_QRADAR_SYSLOG"
    });
    let why = status["mcas"]["source_why"].as_str().unwrap();
    assert!(why.contains("(171)") && why.contains("\"NSS\""), "{why}");
    assert_eq!(
        status["mcas"]["data_source_problem"],
        serde_json::Value::Null
    );

    let config = world.dir.path().join("config.toml");
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("] log format"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("ZSCALER_QRADAR_SYSLOG (auto: "), "{line}");
    let (code, text) = run_nss(&config, &["troubleshoot", "mcas"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Log format: ZSCALER_QRADAR_SYSLOG (auto: the log type (171) of the data source \"NSS\""),
        "{text}"
    );
    assert!(!text.contains("Warning"), "{text}");
}

/// With `auto` and a credential that may not read the data sources list, the files go up
/// as ZSCALER_QRADAR (the NSS feed's QRadar LEEF), and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_source_falls_back_when_the_list_cannot_be_read() {
    let world = World::start().await;
    world.emulator.add_data_source(DataSource::new("NSS", 171));
    world.emulator.set_token_roles(Roles {
        discovery_manage: true,
        discovery_read: false,
    });
    let (agent, sources) = deliver_twenty(&world, "fallback").await;
    assert!(sources.iter().all(|s| s == "ZSCALER_QRADAR"), "{sources:?}");
    let status = agent.wait_status("the log format", |s| {
        s["mcas"]["source"] == "ZSCALER_QRADAR"
    });
    let why = status["mcas"]["source_why"].as_str().unwrap();
    assert!(
        why.starts_with("auto") && why.contains("may not read the data sources list"),
        "{why}"
    );
}

/// Starts an agent that seals within 300 ms, sends it 20 records and waits until MCAS has
/// each exactly once; returns the agent and the log format of every upload.
async fn deliver_twenty(world: &World, stream: &str) -> (Agent, Vec<String>) {
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..20).map(|n| leef(stream, n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(20, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    let sources = world
        .emulator
        .uploads()
        .into_iter()
        .map(|u| u.source)
        .collect();
    (agent, sources)
}
