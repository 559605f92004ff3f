//! The control plane under real administration: commands run as root beside a daemon that
//! runs as its own user, `nss status` only reading, reloads that fail part-way, hostile
//! answers (oversized, emptied, redirected), a stale pidfile.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcas_emulator::{Endpoint, Fault};
use nix::sys::signal::Signal;

use crate::support::harness::*;

/// A system user made for one test, removed after it.
struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl SystemUser {
    /// Creates the user, or `None` (with a message) when the tests do not run as root.
    fn create() -> Option<SystemUser> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root to create a system user and run commands as root (CI runs as root)");
            return None;
        }
        let name = format!("nsst{}", std::process::id());
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .status()
            .expect("useradd runs");
        assert!(status.success(), "useradd {name} failed");
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        Some(SystemUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Every file and directory under `dir` owned by root.
fn root_owned(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.uid() == 0 {
            found.push(path.clone());
        }
        if meta.is_dir() {
            found.extend(root_owned(&path));
        }
    }
    found
}

/// Every path under `dir` with its size and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            found.push((entry.path(), meta.len(), meta.mtime_nsec()));
            if meta.is_dir() {
                found.extend(tree(&entry.path()));
            }
        }
    }
    found.sort();
    found
}

fn domains(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!(".{prefix}{i}.example.com"))
        .collect()
}

/// `nss <args>` with the world's configuration, off the emulator's runtime.
async fn nss_async(config: &Path, args: &[&str]) -> (i32, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_nss(&config, &args, &[("NSS_AGENT_NO_SYSTEMD", "1")])
    })
    .await
    .unwrap()
}

fn urls_in_store(state_dir: &Path) -> usize {
    let text = std::fs::read_to_string(state_dir.join("url-categories.json")).unwrap();
    let store: serde_json::Value = serde_json::from_str(&text).unwrap();
    store["categories"][0]["urls"].as_array().unwrap().len()
}

/// `sudo nss sync-now` and `sudo nss status` beside a daemon running as a system user:
/// the daemon does the sync and the command prints its result; no file in the state or
/// runtime directory belongs to root afterwards, and the daemon's next sync still works.
/// With the daemon stopped, `sudo nss sync-now` does the work as the daemon's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_commands_beside_an_unprivileged_daemon_leave_no_root_file() {
    let Some(user) = SystemUser::create() else {
        return;
    };
    let world = World::start().await;
    // The daemon's user must reach its configuration, state and the emulator's CA.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(world.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let settings = world.settings();
    let (state, run) = (world.dir.path().join("state"), world.dir.path().join("run"));
    for dir in [&state, &run] {
        std::fs::create_dir_all(dir).unwrap();
        nix::unistd::chown(dir, Some(user.uid.into()), Some(user.gid.into())).unwrap();
    }
    world.emulator.set_banned(domains("first", 30));
    let mut agent = world.agent_as(&settings, user.uid, user.gid);
    agent.wait_status("the first sync", |s| s["sync"]["urls"] == 30);
    let config = world.dir.path().join("config.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    world.emulator.set_banned(domains("second", 40));
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "{text}\n{}", agent.log_text());
    assert!(text.contains("URLs:    40"), "{text}");
    assert!(agent
        .log_text()
        .contains("a sync was asked for on the control socket"));
    for args in [&["status"][..], &["status", "--json"], &["url-categories"]] {
        let (code, text) = nss_async(&config, args).await;
        assert_eq!(code, 0, "{args:?}: {text}");
    }
    assert_eq!(root_owned(&state), Vec::<PathBuf>::new());
    assert_eq!(root_owned(&run), Vec::<PathBuf>::new());

    // The daemon's next sync replaces the store it shares with the command.
    world.emulator.set_banned(domains("third", 35));
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "{text}\n{}", agent.log_text());
    assert_eq!(urls_in_store(&state), 35);
    assert!(agent.running());

    // No daemon: the command works as the state directory's owner.
    assert!(agent.stop().success());
    world.emulator.set_banned(domains("fourth", 33));
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(urls_in_store(&state), 33);
    let (code, text) = nss_async(&config, &["status"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(root_owned(&state), Vec::<PathBuf>::new());
    assert_eq!(root_owned(&run), Vec::<PathBuf>::new());
    let store = std::fs::metadata(state.join("url-categories.json")).unwrap();
    assert_eq!((store.uid(), store.gid()), (user.uid, user.gid));
}

/// With the daemon stopped, `nss status` creates, moves and deletes nothing: no spool
/// directories appear, and a file the spool did not name stays where it is. Its warnings
/// (a secret file others can read) show in both outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_daemon_only_reads_and_shows_the_warnings() {
    let world = World::start().await;
    let mut settings = world.settings();
    let token_file = world.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    settings.remove("mcas.token");
    settings.set("mcas.token_file", &quote(&token_file.display().to_string()));
    let config = world.dir.path().join("config.toml");
    settings.write(&config);
    let state = world.dir.path().join("state");
    let (code, text) = nss_async(&config, &["status"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(!state.exists(), "status created {}", state.display());
    assert!(text.contains("WARNING: mcas.token_file"), "{text}");

    let ready = state.join("spool/ready");
    std::fs::create_dir_all(&ready).unwrap();
    std::fs::write(ready.join("not-a-batch.txt"), "x").unwrap();
    let before = tree(world.dir.path());
    let (code, text) = nss_async(&config, &["status", "--json"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(tree(world.dir.path()), before);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let warnings = json["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("mcas.token_file")),
        "{text}"
    );
}

/// SIGHUP with a CA file that is not PEM, then with a feed port another process holds:
/// each is refused with a log line naming the key, and the agent runs on as before (the
/// old port reads records). Then a good file is taken while an upload is in flight: it is
/// cancelled after `upload.shutdown_timeout`. The API rate limiter keeps its history across
/// the reload: with the minute's 5 calls spent, the new pipeline's first sync waits for the
/// minute to pass instead of calling at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_all_or_nothing_and_keeps_the_rate_limit() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        // The data sources list and two block scripts take three calls; the first upload
        // the last two, once the limiter lets both go (its done_upload unanswered for
        // 10 s, in flight at the reload).
        .set("upload.api_calls_per_minute", "5")
        .set("upload.shutdown_timeout", &quote("2s"))
        // Batches sealed soon, so that an upload is in flight (its done_upload waiting for
        // the limiter) when the good file is taken.
        .set("batch.max_age", &quote("300ms"));
    world.emulator.set_banned(domains("app", 5));
    world.emulator.push_fault(
        Endpoint::DoneUpload,
        Fault::Delay(Duration::from_secs(10)),
        1,
    );
    let mut agent = world.agent(&settings);
    let config = world.dir.path().join("config.toml");
    agent.wait_status("the first sync", |s| s["sync"]["urls"] == 5);
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(world.emulator.calls_to(Endpoint::BlockScript).len(), 2);

    let not_pem = world.dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let feed = agent.feed.unwrap();
    let mut sent = 0;
    for (key, value, named) in [
        (
            "mcas.ca_file",
            quote(&not_pem.display().to_string()),
            "mcas.ca_file",
        ),
        ("feed.listen", quote(&taken_addr), "feed.listen"),
    ] {
        let mut broken = settings.clone();
        broken.set(key, &value);
        broken.write(&config);
        let refusals = agent.log_text().matches("was not reloaded").count();
        agent.signal(Signal::SIGHUP);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while agent.log_text().matches("was not reloaded").count() == refusals {
            assert!(std::time::Instant::now() < deadline, "{}", agent.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = agent.log_text();
        let line = log
            .lines()
            .rfind(|l| l.contains("was not reloaded"))
            .unwrap();
        assert!(line.contains(named), "{line}");
        assert!(agent.running(), "{log}");
        let records: Vec<Vec<u8>> = (0..10).map(|n| leef(key, n, 0)).collect();
        send_tcp(feed, &lines(&records));
        sent += 10;
        agent.wait_status("the records read on the old port", |s| {
            s["feed"]["records"] == sent
        });
    }
    assert!(!agent.log_text().contains("configuration reloaded"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world.emulator.calls_to(Endpoint::DoneUpload).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload in flight: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    settings.set("batch.max_age", &quote("300ms"));
    settings.write(&config);
    agent.signal(Signal::SIGHUP);
    agent.wait_log("configuration reloaded");
    // The first upload's done_upload went unanswered past upload.shutdown_timeout: it was
    // cancelled (its batch stays in the spool) and awaited before the new pipeline began.
    let log = agent.log_text();
    let cancelled = log.find("did not finish in time").expect(&log);
    assert!(
        cancelled < log.find("configuration reloaded").unwrap(),
        "{log}"
    );
    // The new pipeline starts with a sync; the minute of the first two calls is not over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = world.emulator.calls_to(Endpoint::BlockScript);
    assert_eq!(
        calls.len(),
        2,
        "a reload granted a fresh minute of API calls"
    );
    assert!(agent.running());
    // The counters survive too.
    assert_eq!(agent.status()["feed"]["records"], sent);
    drop(taken);
}

/// A block script of 20 MiB is refused as oversized, naming the endpoint; the category
/// keeps its URLs and the command does not grow without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_block_script_is_refused_naming_the_endpoint() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    // Time enough to send 8 MiB from a debug build of the emulator on a busy machine.
    world
        .settings()
        .set("upload.timeout", &quote("60s"))
        .write(&config);
    world.emulator.set_banned(domains("app", 10));
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    // About 20 MiB of lines.
    let huge: Vec<String> = (0..800_000)
        .map(|i| format!("app{i:07}.oversized.example"))
        .collect();
    assert!(huge.iter().map(|l| l.len() + 1).sum::<usize>() > 20 << 20);
    world.emulator.set_banned(huge);
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("/api/discovery_block_scripts/") && text.contains("larger than"),
        "{text}"
    );
    assert_eq!(urls_in_store(&world.dir.path().join("state")), 10);
}

/// An empty answer after a full one keeps the old URLs and warns; the same answer again
/// is taken; `--accept-empty` takes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_after_a_full_one_is_held_back_once() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    world.settings().write(&config);
    let state = world.dir.path().join("state");
    world.emulator.set_banned(domains("app", 30));
    assert_eq!(nss_async(&config, &["sync-now"]).await.0, 0);
    world.emulator.set_banned(Vec::new());
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("from 30 URLs to 0") && text.contains("--accept-empty"),
        "{text}"
    );
    assert_eq!(urls_in_store(&state), 30);
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 0, "the same answer twice is taken: {text}");
    assert_eq!(urls_in_store(&state), 0);

    world.emulator.set_banned(domains("app", 30));
    assert_eq!(nss_async(&config, &["sync-now"]).await.0, 0);
    world.emulator.set_banned(domains("app", 2));
    let (code, text) = nss_async(&config, &["sync-now", "--accept-empty"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(urls_in_store(&state), 2);
}

/// A redirect is not followed: one call, and an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_api_call_is_not_followed() {
    let world = World::start().await;
    let config = world.dir.path().join("config.toml");
    world.settings().write(&config);
    world.emulator.set_banned(domains("app", 3));
    world
        .emulator
        .push_fault(Endpoint::BlockScript, Fault::status(307), 1);
    let (code, text) = nss_async(&config, &["sync-now"]).await;
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("HTTP 307") && text.contains("redirects are not followed"),
        "{text}"
    );
    assert_eq!(world.emulator.calls_to(Endpoint::BlockScript).len(), 1);
}

/// `nss stop` without systemd does not signal a process that is not this program, even
/// when the pidfile is held and names it.
#[test]
fn stop_refuses_a_pidfile_naming_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let config = dir.path().join("config.toml");
    let mut settings = Settings::default();
    settings
        .set(
            "paths.state_dir",
            &quote(&dir.path().join("state").display().to_string()),
        )
        .set("paths.runtime_dir", &quote(&run.display().to_string()));
    settings.write(&config);
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let pidfile = run.join("nss-agent.pid");
    std::fs::write(&pidfile, format!("{}\n", victim.id())).unwrap();
    let mut holder = Command::new("flock")
        .arg(&pidfile)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, text) = run_nss(&config, &["stop"], &[("NSS_AGENT_NO_SYSTEMD", "1")]);
    let alive = victim.try_wait().unwrap().is_none();
    let _ = holder.kill();
    let _ = victim.kill();
    let _ = holder.wait();
    let _ = victim.wait();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not signalling"), "{text}");
    assert!(alive, "nss stop killed another program");
}
