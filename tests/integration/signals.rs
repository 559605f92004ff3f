//! Signals under load: SIGTERM stops in time and loses nothing read; SIGHUP reloads, and
//! so does `nss reload`, which waits for the outcome.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::harness::*;

/// SIGTERM while records stream in: exit 0 within the timeout, every record the agent
/// read is delivered (the rest after a restart), none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_in_time_and_loses_nothing_read() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("batch.max_age", &quote("1h"))
        .set("upload.shutdown_timeout", &quote("10s"));
    let mut agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let records: Vec<Vec<u8>> = (0..400_000).map(|n| leef("term", n, 0)).collect();
    let payload = lines(&records);
    let sender = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        for piece in payload.chunks(16 << 10) {
            if stream.write_all(piece).is_err() {
                break;
            }
        }
    });
    agent.wait_status("records streaming in", |s| {
        s["feed"]["records"].as_u64() > Some(10_000)
    });
    let asked = Instant::now();
    let exit = agent.stop();
    let took = asked.elapsed();
    assert!(exit.success(), "{exit:?}\n{}", agent.log_text());
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
    let _ = sender.join();
    // The status written last says how many records the agent read.
    let read = agent.status()["feed"]["records"].as_u64().unwrap();
    assert!(read > 10_000);

    let _again = world.agent(&settings);
    world
        .emulator
        .wait_for_records(read, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (got, _) = delivered(&world.emulator);
    assert_eq!(
        got.len() as u64,
        read,
        "delivered records differ from those read"
    );
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "duplicates");
    // What was read is a prefix of what was sent, in the sender's order.
    let mut sent_prefix: Vec<Vec<u8>> = records[..read as usize].to_vec();
    sent_prefix.sort();
    assert_eq!(got, sent_prefix);
}

/// SIGHUP with a changed file: the pipeline stops as at shutdown and starts again with the
/// new settings; a broken file is refused and the agent runs on with the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration_and_refuses_a_broken_one() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1h"));
    let mut agent = world.agent(&settings);
    let before: Vec<Vec<u8>> = (0..100).map(|n| leef("before-hup", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&before));
    agent.wait_status("the records read", |s| s["feed"]["records"] == 100);

    // A broken file: refused, nothing changes.
    let config = world.dir.path().join("config.toml");
    std::fs::write(
        &config,
        settings
            .toml()
            .replace("max_age = \"1h\"", "max_age = \"soon\""),
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.running(), "{}", agent.log_text());
    assert!(
        agent.log_text().contains("was not reloaded"),
        "{}",
        agent.log_text()
    );
    assert!(agent.log_text().contains("batch.max_age"));
    assert!(world.emulator.uploads().is_empty());

    // A good one: the open batch is sealed on the way and the new max_age applies.
    settings.set("batch.max_age", &quote("300ms"));
    settings.write(&config);
    agent.signal(Signal::SIGHUP);
    world
        .emulator
        .wait_for_records(100, Duration::from_secs(30))
        .await
        .unwrap();
    agent.wait_log("configuration reloaded");
    wait_port(agent.feed.unwrap());
    let after: Vec<Vec<u8>> = (0..100).map(|n| leef("after-hup", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&after));
    world
        .emulator
        .wait_for_records(200, Duration::from_secs(10))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, [before, after].concat());
    assert!(agent.running());
}

/// `nss reload` (the unit's ExecReload=) returns once the daemon runs with the new file,
/// and fails with exit 78 and the daemon's own reason when the daemon refused it: here a
/// file that loads but whose feed port another process holds, which only the daemon finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nss_reload_waits_for_the_outcome_and_fails_with_the_daemons_reason() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1h"));
    let agent = world.agent(&settings);
    let config = world.dir.path().join("config.toml");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let mut refused = settings.clone();
    refused.set("feed.listen", &quote(&taken_addr));
    refused.write(&config);
    let (code, out) = run_nss(&config, &["reload"], &[]);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("refused") && out.contains("feed.listen") && out.contains(&taken_addr),
        "{out}"
    );
    assert!(agent
        .log_text()
        .contains("nss reload: the configuration was not reloaded"));
    drop(taken);

    settings.set("batch.max_age", &quote("300ms"));
    settings.write(&config);
    let (code, out) = run_nss(&config, &["reload"], &[]);
    assert_eq!(code, 0, "{out}\n{}", agent.log_text());
    assert!(out.contains("reloaded"), "{out}");
    // Synchronous: by the time the command returned, the new pipeline was running.
    let log = agent.log_text();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(log.matches("nss-agent running").count(), 2, "{log}");
    let records: Vec<Vec<u8>> = (0..50).map(|n| leef("after-reload", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    // Sealed after 300ms, not after the hour of the first file.
    world
        .emulator
        .wait_for_records(50, Duration::from_secs(20))
        .await
        .unwrap();
}

fn wait_port(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the feed port did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}
