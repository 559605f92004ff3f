//! What MCAS makes of the uploaded lines, through the real binary: each line is read by
//! the parser the upload's `source` names (the data source's log type, `source =
//! "auto"`); a line it cannot read is taken by the API all the same and reported in the
//! governance log ("The log format doesn't match"); an event older than 90 days is
//! ignored. The emulator counts both, so that a record the agent altered shows.

use std::time::Duration;

use mcas_emulator::DataSource;

use crate::support::harness::*;

/// Sends `records` to a new agent of `world` and waits until every line is at MCAS.
async fn deliver(world: &World, records: &[Vec<u8>]) {
    let agent = world.agent(&world.settings());
    send_tcp(agent.feed.unwrap(), &lines(records));
    world
        .emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
}

/// A line whose LEEF header was damaged (`|` turned into spaces, as a careless rewrite
/// would) is counted as not read, the others as read; the governance log names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_a_damaged_header_is_counted_as_not_read() {
    let world = World::start().await;
    let mut records: Vec<Vec<u8>> = (0..20).map(|n| leef("good", n, 0)).collect();
    let damaged = String::from_utf8(leef("damaged", 0, 0)).unwrap().replace(
        "LEEF:1.0|Zscaler|NSS|4.1|NA|",
        "LEEF:1.0 Zscaler NSS 4.1 NA ",
    );
    records.push(damaged.into_bytes());
    deliver(&world, &records).await;

    let counts = world.emulator.line_counts("NSS");
    assert_eq!(
        (counts.lines, counts.unparsed, counts.ignored_old),
        (21, 1, 0)
    );
    assert_eq!(world.emulator.stats().unparsed_lines, 1);
    // What the governance log shows of the file (its HTTP route is the emulator's tests').
    let uploads = world.emulator.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        uploads[0].governance_status(),
        "The log format doesn't match"
    );
    assert_eq!(uploads[0].source, "ZSCALER_QRADAR");
    assert_eq!(uploads[0].unparsed, 1);
}

/// A data source of log type 171 (`ZSCALER_QRADAR_SYSLOG`): the agent uploads with that
/// source, and its parser reads the feed's records (prefix and header) but not a bare
/// LEEF header without the syslog-style prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syslog_variant_reads_only_lines_with_the_prefix() {
    let world = World::start_with(|c| c.data_sources = vec![DataSource::new("NSS", 171)]).await;
    let mut records: Vec<Vec<u8>> = (0..10).map(|n| leef("prefixed", n, 0)).collect();
    let bare: Vec<Vec<u8>> = (0..3)
        .map(|n| leef("bare", n, 0)[nss_prefix().len()..].to_vec())
        .collect();
    records.extend(bare);
    deliver(&world, &records).await;

    let uploads = world.emulator.uploads();
    assert!(uploads.iter().all(|u| u.source == "ZSCALER_QRADAR_SYSLOG"));
    let counts = world.emulator.line_counts("NSS");
    assert_eq!((counts.lines, counts.unparsed), (13, 3));
}

/// Events whose time (the syslog-style prefix) is more than 90 days before the upload
/// are ignored by MCAS: counted as such, not as the data source's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_90_days_are_counted_as_ignored() {
    let world = World::start().await;
    let mut records: Vec<Vec<u8>> = (0..10).map(|n| leef("recent", n, 0)).collect();
    let old = std::time::SystemTime::now() - Duration::from_secs(91 * 86_400);
    let old_prefix = format!("{} zscaler-nss: ", mcas_emulator::log_lines::nss_time(old));
    let ancient: Vec<Vec<u8>> = (0..4)
        .map(|n| {
            let record = leef("old", n, 0);
            [old_prefix.as_bytes(), &record[nss_prefix().len()..]].concat()
        })
        .collect();
    records.extend(ancient);
    deliver(&world, &records).await;

    let counts = world.emulator.line_counts("NSS");
    assert_eq!(
        (counts.lines, counts.unparsed, counts.ignored_old),
        (14, 0, 4)
    );
    assert_eq!(counts.ingested(), 10);
    assert_eq!(world.emulator.stats().ignored_old_events, 4);
}
