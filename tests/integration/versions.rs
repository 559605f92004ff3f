//! State files written by a newer version of the agent (an appliance rolled back after an
//! upgrade): refused with a message naming the file, its version and the newest this
//! build reads, and left byte for byte as they were, never taken for damage.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::harness::*;

/// Runs `nss run` with the configuration at `config` until it exits, for at most `limit`;
/// returns its exit code (`None`: still running, then killed) and its output.
fn run_daemon(config: &Path, limit: Duration) -> (Option<i32>, String) {
    let out = config.with_extension("out");
    let mut child = nss()
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(out.with_extension("err")).unwrap()
    );
    (code, text)
}

/// The message names the file, the version found, and the newest this build reads.
fn assert_names_the_versions(text: &str, file: &Path) {
    let file = file.display().to_string();
    assert!(
        text.contains(&file) && text.contains("version 99") && text.contains("up to 1"),
        "the message does not name {file}, version 99 and the newest readable (1):\n{text}"
    );
}

/// A checkpoint of a newer version: the daemon refuses to start (exit 78, so that systemd
/// does not restart it in a loop), and the checkpoint is neither moved aside nor rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_a_newer_version_stops_the_daemon_and_stays_as_it_was() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let records: Vec<Vec<u8>> = (0..50).map(|n| leef("file", n, 0)).collect();
    std::fs::write(&file, lines(&records)).unwrap();
    let mut settings = world.settings();
    settings.tail(&file).set("batch.max_age", &quote("300ms"));
    let mut agent = world.agent(&settings);
    agent.wait_status("the file read and sealed", |s| {
        s["feed"]["records"] == 50 && s["upload"]["records"] == 50
    });
    assert!(agent.stop().success());

    let dir = agent.state_dir.join("checkpoints");
    let checkpoints = files_in(&dir);
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    let written: Value = serde_json::from_slice(&std::fs::read(&checkpoints[0]).unwrap()).unwrap();
    // What a newer version might write: another version, and a field this one lacks.
    let mut newer = written.clone();
    newer["version"] = json!(99);
    newer["offset"] = json!({"bytes": 12, "records": 3});
    let newer = serde_json::to_vec(&newer).unwrap();
    std::fs::write(&checkpoints[0], &newer).unwrap();

    let config = world.dir.path().join("config.toml");
    let (code, text) = run_daemon(&config, Duration::from_secs(15));
    assert_eq!(code, Some(78), "{text}");
    assert_names_the_versions(&text, &checkpoints[0]);
    assert_eq!(files_in(&dir), checkpoints, "nothing moved aside or added");
    assert_eq!(
        std::fs::read(&checkpoints[0]).unwrap(),
        newer,
        "byte for byte"
    );
    assert_eq!(written["version"], 1, "this build tags what it writes");
}

/// Claims of a newer version beside a batch sealed just before a crash: the daemon
/// refuses to start, and the claims stay for the version that wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_a_newer_version_stop_the_daemon_and_stay_as_they_were() {
    let world = World::start().await;
    let settings = world.settings();
    let open = world.dir.path().join("state/spool/open");
    std::fs::create_dir_all(&open).unwrap();
    // The claims of a batch whose seal completed: no unsealed batch beside them.
    let claims = open.join("w0-file-1-2.gz.part.claims");
    let line = json!({
        "version": 99,
        "path": world.dir.path().join("feed.log"),
        "identity": {"dev": 1, "ino": 2, "fingerprint_len": 3, "fingerprint": 4},
        "spans": [{"from": 0, "to": 100}],
    });
    let bytes = format!("{line}\n").into_bytes();
    std::fs::write(&claims, &bytes).unwrap();

    let config = world.dir.path().join("config.toml");
    settings.write(&config);
    let (code, text) = run_daemon(&config, Duration::from_secs(15));
    assert_eq!(code, Some(78), "{text}");
    assert_names_the_versions(&text, &claims);
    assert_eq!(std::fs::read(&claims).unwrap(), bytes, "byte for byte");
}

/// A category store of a newer version: `nss sync-now` and `nss url-categories` refuse
/// it, and neither rewrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_store_of_a_newer_version_is_refused_and_kept() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    world.settings().write(&config);
    let state = world.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let store = state.join("url-categories.json");
    let newer = serde_json::to_vec_pretty(&json!({
        "version": 99,
        "categories": [{"name": "Finance", "urls": ["bank.example"],
                        "updated": "2025-06-01T12:00:00Z", "source": "admin",
                        "owner": "ops"}],
    }))
    .unwrap();
    std::fs::write(&store, &newer).unwrap();

    for args in [&["sync-now"][..], &["url-categories", "--json"]] {
        let config = config.clone();
        let (code, text) = tokio::task::spawn_blocking(move || run_nss(&config, args, &[]))
            .await
            .unwrap();
        assert_eq!(code, 1, "{args:?}: {text}");
        assert_names_the_versions(&text, &store);
        assert_eq!(
            std::fs::read(&store).unwrap(),
            newer,
            "{args:?}: byte for byte"
        );
    }
}

/// A status file of a newer version (a newer daemon still running beside an older `nss`):
/// `nss status` shows what it knows without it, and says why it did not read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_file_of_a_newer_version_is_named_not_read() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    let settings = world.settings();
    settings.write(&config);
    let run = world.dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let status = run.join("status.json");
    let newer = serde_json::to_vec(&json!({"version": 99, "running": true})).unwrap();
    std::fs::write(&status, &newer).unwrap();
    let (code, text) = tokio::task::spawn_blocking(move || run_nss(&config, &["status"], &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nss-agent: not running"), "{text}");
    assert_names_the_versions(&text, &status);
    assert_eq!(std::fs::read(&status).unwrap(), newer, "byte for byte");
}
