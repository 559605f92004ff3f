//! What a person and a monitor see: `nss status`, `nss troubleshoot mcas`, /metrics.

use std::io::{Read, Write};
use std::time::Duration;

use mcas_emulator::{Endpoint, Fault};

use crate::support::harness::*;

/// Runs `nss --config <settings> <args>` once; returns the exit code and stdout + stderr.
fn nss_with(world: &World, settings: &Settings, args: &[&str]) -> (i32, String) {
    let config = world.dir.path().join("oneshot.toml");
    settings.write(&config);
    run_nss(&config, args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn troubleshoot_gives_one_verdict_and_exit_code_per_failure() {
    let world = World::start().await;
    let settings = world.settings();
    let banned: Vec<String> = (0..12).map(|n| format!(".app{n}.example.com")).collect();
    world.emulator.set_banned(banned);

    let (code, text) = nss_with(&world, &settings, &["troubleshoot", "mcas"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("HTTP status: 200") && text.contains("URLs returned: 12"),
        "{text}"
    );
    assert!(
        text.contains(".app0.example.com") && text.contains("and 2 more"),
        "{text}"
    );
    assert!(
        text.contains("Verdict: OK") && text.contains("Token ****"),
        "{text}"
    );

    world
        .emulator
        .push_fault(Endpoint::BlockScript, Fault::status(401), 1);
    let (code, text) = nss_with(&world, &settings, &["troubleshoot", "mcas"]);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("HTTP status: 401") && text.contains("global administrator"),
        "{text}"
    );

    world
        .emulator
        .push_fault(Endpoint::BlockScript, Fault::status(404), 1);
    let (code, text) = nss_with(&world, &settings, &["troubleshoot", "mcas"]);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("404") && text.contains("domain is wrong"),
        "{text}"
    );

    world.emulator.set_banned(Vec::new());
    let (code, text) = nss_with(&world, &settings, &["troubleshoot", "mcas"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("URLs returned: 0") && text.contains("no app is marked unsanctioned"),
        "{text}"
    );

    // No ca_file: the emulator's certificate is not trusted.
    let mut untrusted = world.settings();
    untrusted.set("mcas.ca_file", &quote(""));
    let (code, text) = nss_with(&world, &untrusted, &["troubleshoot", "mcas"]);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("TLS") && text.contains("mcas.ca_file"),
        "{text}"
    );

    let mut closed = world.settings();
    closed.set("mcas.domain", &quote(&format!("127.0.0.1:{}", free_port())));
    let (code, text) = nss_with(&world, &closed, &["troubleshoot", "mcas"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("refused the connection"), "{text}");

    let mut unknown = world.settings();
    unknown.set("mcas.domain", &quote("tenant.nowhere.invalid"));
    let (code, text) = nss_with(&world, &unknown, &["troubleshoot", "mcas"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("does not resolve"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_tell_what_happened() {
    let world = World::start().await;
    let metrics_port = free_port();
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("300ms")).set(
        "metrics.listen",
        &quote(&format!("127.0.0.1:{metrics_port}")),
    );
    world
        .emulator
        .set_banned((0..5).map(|n| format!(".app{n}.example.com")).collect());
    let mut agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..1234).map(|n| leef("observe", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(1234, Duration::from_secs(30))
        .await
        .unwrap();
    let raw: u64 = records.iter().map(|r| r.len() as u64 + 1).sum();
    let gzip: u64 = world.emulator.uploads().iter().map(|u| u.bytes).sum();
    agent.wait_status("the uploads and the sync counted", |s| {
        s["upload"]["records"] == 1234 && s["sync"]["urls"] == 5
    });

    let (code, text) = nss_with(&world, &settings, &["status", "--json"]);
    assert_eq!(code, 0, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["running"], true);
    assert!(status["pid"].as_u64().is_some());
    assert_eq!(status["mcas"]["data_source"], "NSS");
    assert!(status["mcas"]["token"]
        .as_str()
        .unwrap()
        .starts_with("****"));
    assert_eq!(status["feed"]["records"], 1234);
    assert_eq!(status["upload"]["records"], 1234);
    assert_eq!(status["upload"]["bytes_raw"], raw);
    assert_eq!(status["upload"]["bytes_gzip"], gzip);
    assert!(status["upload"]["last_success"].is_string());
    assert_eq!(status["upload"]["last_error"], serde_json::Value::Null);
    assert_eq!(status["spool"]["sealed_records"], 1234);
    let latency = status["spool"]["seal_latency_max"].as_f64().unwrap();
    assert!(
        (0.3..1.3).contains(&latency),
        "batches sealed by max_age 300ms stayed open {latency} s"
    );
    assert!(status["memory"]["ram_total"].as_u64().unwrap() > 0);
    // The sync ran right after the start.
    assert_eq!(status["sync"]["urls"], 5);
    assert_eq!(status["sync"]["added"], 5);
    assert_eq!(status["sync"]["removed"], 0);
    assert!(status["sync"]["last_success"].is_string() && status["sync"]["next"].is_string());
    assert_eq!(status["sync"]["last_error"], serde_json::Value::Null);
    let (_, text) = nss_with(&world, &settings, &["url-categories", "--json"]);
    let categories: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        categories["categories"][0]["name"],
        "MCAS Unsanctioned Apps"
    );
    assert_eq!(categories["categories"][0]["url_count"], 5);

    let (code, text) = nss_with(&world, &settings, &["status"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("nss-agent: running") && text.contains("service running"),
        "{text}"
    );
    assert!(text.contains("[ ok ] uploads succeeding"), "{text}");
    assert!(
        text.contains("[ ok ] last sync") && text.contains("5 URLs in \"MCAS Unsanctioned Apps\""),
        "{text}"
    );

    // /metrics says the same as MCAS received.
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for (name, value) in [
        ("nss_agent_upload_records_total", 1234),
        ("nss_agent_feed_records_total", 1234),
        ("nss_agent_upload_bytes_raw_total", raw),
        ("nss_agent_upload_bytes_gzip_total", gzip),
        ("nss_agent_sync_urls", 5),
        ("nss_agent_batch_sealed_records_total", 1234),
    ] {
        assert!(
            metrics.contains(&format!("\n{name} {value}\n")),
            "{name} {value} not in\n{metrics}"
        );
    }
    assert!(http_get(metrics_port, "/other").starts_with("HTTP/1.1 404"));

    assert!(agent.stop().success());
    // Its log went to a file, as under systemd to the journal: no colour codes in it.
    let log = agent.log_text();
    assert!(
        log.contains("nss-agent running") && !log.contains('\x1b'),
        "{log}"
    );
    let (code, text) = nss_with(&world, &settings, &["status", "--json"]);
    assert_eq!(code, 0, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["pid"], serde_json::Value::Null);
    assert!(
        status["upload"]["last_success"].is_string(),
        "the last success is kept"
    );
    let (_, text) = nss_with(&world, &settings, &["status"]);
    assert!(
        text.contains("nss-agent: not running") && text.contains("sudo nss start"),
        "{text}"
    );
}

/// One plain HTTP GET on loopback; the whole answer, head and body.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Under systemd, stderr is the journal's stream: every line carries its syslog priority,
/// so that `journalctl -p warning` finds the warnings, and the fields follow the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_each_log_line_carries_its_journal_priority() {
    use std::os::unix::fs::MetadataExt;
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("feed.max_record_bytes", &quote("1KiB"));
    let config = world.dir.path().join("journal.toml");
    settings.write(&config);
    // The journal's stream, as systemd hands it over: stderr, named by JOURNAL_STREAM.
    let journal = world.dir.path().join("journal");
    let stream = std::fs::File::create(&journal).unwrap();
    let meta = stream.metadata().unwrap();
    let mut child = nss()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stream)
        .spawn()
        .unwrap();
    let feed: std::net::SocketAddr =
        serde_json::from_str::<String>(settings.get("feed.listen").unwrap())
            .unwrap()
            .parse()
            .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(feed).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A record over feed.max_record_bytes: dropped with a warning.
    let mut long = vec![b'x'; 4096];
    long.push(b'\n');
    send_tcp(feed, &long);
    let text = loop {
        let text = std::fs::read_to_string(&journal).unwrap();
        if text.contains("dropped a record") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("nss-agent running")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<4>")
            && l.contains("dropped a record")
            && l.contains("input=")),
        "the warning is at priority 4 with its fields:\n{text}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with('<')),
        "every line has a priority:\n{text}"
    );
    assert!(!text.contains(" INFO ") && !text.contains('\x1b'), "{text}");
}

/// A scraper that connects and never sends its request holds no one up, and its connection
/// is closed after the request timeout (5 s): the endpoint cannot be starved by idle
/// connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_metrics_client_blocks_no_one_and_is_closed() {
    let world = World::start().await;
    let metrics_port = free_port();
    let mut settings = world.settings();
    settings.set(
        "metrics.listen",
        &quote(&format!("127.0.0.1:{metrics_port}")),
    );
    let _agent = world.agent(&settings);
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let metrics = http_get(metrics_port, "/metrics?format=text");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("\nnss_agent_feed_records_total 0\n"),
        "{metrics}"
    );
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = silent.read_to_end(&mut rest);
    assert!(
        closed.is_ok() && started.elapsed() < Duration::from_secs(10),
        "the silent connection was not closed: {closed:?} after {:?}",
        started.elapsed()
    );
}
