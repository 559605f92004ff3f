//! Records in, gzip batches out at MCAS, each record exactly once.

use std::io::Write;
use std::time::Duration;

use mcas_emulator::Endpoint;

use crate::support::harness::*;

/// Records over three TCP connections and from a tailed file, in batches sealed by each
/// of the three limits, all arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_exactly_once_across_all_three_seal_limits() {
    let world = World::start().await;
    let feed_file = world.dir.path().join("feed.log");
    let mut settings = world.settings();
    settings
        .set("batch.max_records", "400")
        .set("batch.max_bytes", &quote("64KiB"))
        // Batches exactly as sealed: no growth while others wait, no merge.
        .set("batch.busy_max_bytes", &quote("64KiB"))
        .set("batch.max_age", &quote("2s"))
        .tail(&feed_file);
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let mut expected = Vec::new();

    // Small records, fast: batches fill by count (400 records of ~180 bytes < 64 KiB).
    let mut senders = Vec::new();
    for conn in 0..3 {
        let records: Vec<Vec<u8>> = (0..1000)
            .map(|n| leef(&format!("tcp{conn}"), n, 0))
            .collect();
        expected.extend(records.iter().cloned());
        senders.push(std::thread::spawn(move || send_tcp(addr, &lines(&records))));
    }
    // Large records: batches fill by size before count.
    let big: Vec<Vec<u8>> = (0..300).map(|n| leef("big", n, 1500)).collect();
    expected.extend(big.iter().cloned());
    senders.push(std::thread::spawn(move || send_tcp(addr, &lines(&big))));
    // The tailed file, appended in two parts.
    let file_records: Vec<Vec<u8>> = (0..500).map(|n| leef("file", n, 10)).collect();
    expected.extend(file_records.iter().cloned());
    let mut file = std::fs::File::create(&feed_file).unwrap();
    file.write_all(&lines(&file_records[..250])).unwrap();
    for sender in senders {
        sender.join().unwrap();
    }
    file.write_all(&lines(&file_records[250..])).unwrap();
    drop(file);

    world
        .emulator
        .wait_for_records(expected.len() as u64, Duration::from_secs(60))
        .await
        .unwrap();
    // A trickle after the rush: only the age limit seals it.
    let trickle: Vec<Vec<u8>> = (0..5).map(|n| leef("trickle", n, 0)).collect();
    expected.extend(trickle.iter().cloned());
    let sent_at = std::time::Instant::now();
    send_tcp(addr, &lines(&trickle));
    world
        .emulator
        .wait_for_records(expected.len() as u64, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        sent_at.elapsed() >= Duration::from_millis(1500),
        "the trickle was sealed before its age"
    );
    let total = expected.len() as u64;
    assert_exactly_once(&world.emulator, expected);
    assert_all_read(&world.emulator);

    let uploads = world.emulator.uploads();
    let sizes: Vec<(usize, usize)> = uploads
        .iter()
        .map(|u| {
            let records = u.records_decompressed().unwrap();
            (records.len(), records.iter().map(|r| r.len() + 1).sum())
        })
        .collect();
    assert!(
        sizes.iter().any(|&(n, _)| n == 400),
        "no batch sealed by count: {sizes:?}"
    );
    assert!(
        sizes
            .iter()
            .any(|&(n, bytes)| n < 400 && bytes > 60 << 10 && bytes <= 64 << 10),
        "no batch sealed by size: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&(_, bytes)| bytes <= 64 << 10),
        "a batch over max_bytes: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&(n, _)| n == 5),
        "the trickle was not a batch of its own: {sizes:?}"
    );

    agent.wait_status("every record counted", |s| {
        s["feed"]["records"] == total && s["upload"]["records"] == total
    });
    assert!(!agent.log_text().contains(TOKEN), "the token was logged");
}

/// The three API steps come in order, with the query, headers and JSON MCAS documents;
/// the token goes to the API only, never to the blob URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_api_steps_in_order_and_the_token_only_on_the_api() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("500ms"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..50).map(|n| leef("steps", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(50, Duration::from_secs(30))
        .await
        .unwrap();

    let calls = world.emulator.calls();
    let header = |call: &mcas_emulator::Call, name: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    // The unsanctioned-apps sync's block-script call and the data sources list come too;
    // the upload's steps are these.
    let steps: Vec<Endpoint> = calls
        .iter()
        .filter_map(|c| c.endpoint)
        .filter(|&e| e != Endpoint::BlockScript && e != Endpoint::Streams)
        .collect();
    assert_eq!(
        steps[..3],
        [Endpoint::UploadUrl, Endpoint::Blob, Endpoint::DoneUpload],
        "{steps:?}"
    );
    for call in &calls {
        match call.endpoint {
            Some(Endpoint::UploadUrl) => {
                assert_eq!(call.method, "GET");
                assert_eq!(
                    header(call, "authorization").as_deref(),
                    Some(format!("Token {TOKEN}").as_str())
                );
                assert!(
                    call.query.contains("source=ZSCALER_QRADAR"),
                    "{}",
                    call.query
                );
                assert!(
                    call.query.contains("filename=nss-") && call.query.contains(".log.gz"),
                    "{}",
                    call.query
                );
            }
            Some(Endpoint::Blob) => {
                assert_eq!(call.method, "PUT");
                assert_eq!(
                    header(call, "authorization"),
                    None,
                    "the token went to the blob store"
                );
                assert!(!call.query.contains(TOKEN) && !call.path.contains(TOKEN));
                assert_eq!(header(call, "x-ms-blob-type").as_deref(), Some("BlockBlob"));
            }
            Some(Endpoint::DoneUpload) => {
                assert_eq!(call.method, "POST");
                assert_eq!(
                    header(call, "authorization").as_deref(),
                    Some(format!("Token {TOKEN}").as_str())
                );
                assert!(header(call, "content-type")
                    .unwrap()
                    .starts_with("application/json"));
            }
            _ => {}
        }
    }
    let uploads = world.emulator.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].data_source, "NSS");
    assert_eq!(uploads[0].source, "ZSCALER_QRADAR");
    assert!(!uploads[0].as_snapshot);
    // done_upload left uploadAsSnapshot out: no snapshot report was made.
    assert!(world.emulator.snapshots().is_empty());
    assert_eq!(uploads[0].block_count, 0);
    assert_exactly_once(&world.emulator, records);
    assert_all_read(&world.emulator);
}

/// Incompressible records over 64 MiB of gzip: the batch goes up as Put Block + Put Block
/// List and arrives identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_64_mib_goes_up_in_blocks() {
    large_batch_goes_up_in_blocks(World::start().await).await;
}

/// The same through Azurite, Microsoft's Azure Storage emulator: the blob is read back from
/// Azurite and compared. scripts/test starts Azurite and sets AZURITE_BLOB_ENDPOINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_64_mib_goes_up_in_blocks_to_azurite() {
    let (Ok(endpoint), Ok(cert_dir)) = (
        std::env::var("AZURITE_BLOB_ENDPOINT"),
        std::env::var("AZURITE_CERT_DIR"),
    ) else {
        assert!(
            std::env::var_os("NSS_REQUIRE_AZURITE").is_none(),
            "Azurite is required but AZURITE_BLOB_ENDPOINT is not set"
        );
        eprintln!("skipped: Azurite is not running (scripts/test starts it)");
        return;
    };
    let world = World::start_with(|config| {
        config.cert_dir = cert_dir.into();
        config.azurite = Some(mcas_emulator::AzuriteTarget::dev(
            &endpoint,
            "nss-agent-test",
        ));
    })
    .await;
    large_batch_goes_up_in_blocks(world).await;
}

async fn large_batch_goes_up_in_blocks(world: World) {
    let mut settings = world.settings();
    settings
        .set("batch.max_bytes", &quote("1GiB"))
        // Long enough that a machine busy with other work still writes all 70 MiB into
        // the one batch before its age is up.
        .set("batch.max_age", &quote("30s"))
        .set("batch.writers", "1")
        .set("batch.gzip_level", "1");
    let agent = world.agent(&settings);
    let records = incompressible_records(70 << 20);
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(records.len() as u64, Duration::from_secs(120))
        .await
        .unwrap();
    let uploads = world.emulator.uploads();
    assert_eq!(uploads.len(), 1, "one batch of it all");
    assert!(
        uploads[0].bytes > 64 << 20,
        "the batch was only {} bytes",
        uploads[0].bytes
    );
    assert!(
        uploads[0].block_count >= 5,
        "{} blocks",
        uploads[0].block_count
    );
    assert_exactly_once(&world.emulator, records);
}

/// Records of random bytes (no newline) adding up to `total` bytes.
pub fn incompressible_records(total: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..total / (64 << 10))
        .map(|_| {
            (0..64 << 10)
                .map(|_| loop {
                    let b = rng.u8(..);
                    if b != b'\n' && b != b'\r' {
                        break b;
                    }
                })
                .collect()
        })
        .collect()
}

/// SIGTERM seals the open batch, exits 0, and the next start delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_seals_the_open_batch_and_a_restart_delivers_it() {
    let world = World::start().await;
    let mut settings = world.settings();
    // One writer: with two, the records could be split into two open batches, and the
    // count below is of one.
    settings
        .set("batch.max_age", &quote("1h"))
        .set("batch.writers", "1");
    let mut agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..200).map(|n| leef("term", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    agent.wait_status("the records read", |s| s["feed"]["records"] == 200);
    let exit = agent.stop();
    assert!(exit.success(), "{exit:?}\n{}", agent.log_text());
    // The sealed batch is either delivered already or waits in the spool for the next start.
    let ready = std::fs::read_dir(agent.state_dir.join("spool/ready"))
        .unwrap()
        .count();
    let uploaded = world.emulator.uploads().len();
    assert!(
        ready == 1 || uploaded == 1,
        "the open batch was not sealed: {ready} in ready/, {uploaded} uploaded"
    );
    assert!(std::fs::read_dir(agent.state_dir.join("spool/open"))
        .unwrap()
        .next()
        .is_none());

    let _again = world.agent(&settings);
    world
        .emulator
        .wait_for_records(200, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    assert_all_read(&world.emulator);
}

/// While the feed floods the agent faster than it compresses, batches are still sealed by
/// age on time, and every record arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_sealed_by_age_while_the_feed_floods() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("batch.writers", "1")
        // The slowest level: the writer falls behind the feed.
        .set("batch.gzip_level", "9")
        .set("batch.max_records", "100000000")
        .set("batch.max_bytes", &quote("4GiB"))
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();

    let flood = std::thread::spawn(move || {
        // One block of records, sent again and again with only their ids rewritten: the
        // sender outpaces the writer by far, so that its queue never runs dry. The text is
        // random words, costly to compress, unlike padding.
        const BLOCK: usize = 5000;
        const DIGITS: usize = 10;
        let mut rng = fastrand::Rng::with_seed(5);
        let words = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
        ];
        let mut block = Vec::new();
        let mut id_at = Vec::with_capacity(BLOCK);
        for _ in 0..BLOCK {
            block.extend_from_slice(nss_prefix().as_bytes());
            block.extend_from_slice(b"LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\turl=");
            for _ in 0..40 {
                block.extend_from_slice(words[rng.usize(..words.len())].as_bytes());
                block.push(b'/');
            }
            block.extend_from_slice(b"\trecordid=flood-");
            id_at.push(block.len());
            block.extend_from_slice(&[b'0'; DIGITS]);
            block.extend_from_slice(b"\tdstBytes=7\n");
        }
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let started = std::time::Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(5) {
            for (i, &at) in id_at.iter().enumerate() {
                let mut n = sent + i;
                for digit in block[at..at + DIGITS].iter_mut().rev() {
                    *digit = b'0' + (n % 10) as u8;
                    n /= 10;
                }
            }
            stream.write_all(&block).unwrap();
            sent += BLOCK;
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        sent as u64
    });
    let sent = flood.join().unwrap();

    world
        .emulator
        .wait_for_records(sent, Duration::from_secs(120))
        .await
        .unwrap();
    let status = agent.wait_status("every record sealed", |s| {
        s["spool"]["sealed_records"].as_u64() == Some(sent)
    });
    let latency = status["spool"]["seal_latency_max"].as_f64().unwrap();
    let sealed = status["spool"]["sealed"].as_u64().unwrap();
    assert!(
        sealed >= 4,
        "{sealed} batches in 5 s of flood at max_age 1s"
    );
    // The promise is max_age + 1 s. A writer looks at the ages after every chunk, so even
    // a saturated one is late by one chunk's compression, not by the length of the flood.
    assert!(
        latency <= 1.5,
        "a batch stayed open {latency} s, at batch.max_age = 1 s"
    );
    assert_ids_exactly_once(&world.emulator, "flood", sent);
    assert_all_read(&world.emulator);
}

/// A batch sealed more than 90 days ago (MCAS ignores events that old) is not uploaded: it
/// is moved to quarantine with the reason, counted in `spool.too_old`, and
/// the batches after it go up as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_sealed_more_than_90_days_ago_are_set_aside() {
    use std::io::Write;
    let world = World::start().await;
    let ready = world.dir.path().join("state/spool/ready");
    std::fs::create_dir_all(&ready).unwrap();
    let old: Vec<Vec<u8>> = (0..10).map(|n| leef("ancient", n, 0)).collect();
    let raw = lines(&old);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let sealed = std::time::SystemTime::now() - Duration::from_secs(91 * 86_400);
    let ms = sealed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let name = format!("{:020}-{ms}-{}r-{}b.gz", 1, old.len(), raw.len());
    std::fs::write(ready.join(&name), gz.finish().unwrap()).unwrap();

    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    let status = agent.wait_status("the old batch set aside", |s| {
        s["spool"]["too_old"] == 1 && s["spool"]["quarantined"] == 1
    });
    assert_eq!(status["spool"]["batches"], 0, "{status}");
    let quarantined = agent.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let reason = std::fs::read_to_string(format!("{}.reason", quarantined[0].display())).unwrap();
    assert!(
        reason.contains("sealed 91 days ago") && reason.contains("older than 90 days"),
        "{reason}"
    );
    assert!(agent.log_text().contains("older than 90 days"));

    let fresh: Vec<Vec<u8>> = (0..10).map(|n| leef("fresh", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&fresh));
    world
        .emulator
        .wait_for_records(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, fresh);
    assert_all_read(&world.emulator);
    // No API call for the old batch: only the fresh one's upload_url.
    let upload_urls = world
        .emulator
        .calls()
        .iter()
        .filter(|c| c.endpoint == Some(mcas_emulator::Endpoint::UploadUrl))
        .count();
    assert_eq!(upload_urls, world.emulator.uploads().len());
    assert!(world
        .emulator
        .uploads()
        .iter()
        .all(|u| !u.filename.contains("00000000000000000001")));
}
