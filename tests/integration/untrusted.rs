//! Root's commands treat what the daemon's account can write as untrusted: a planted
//! status file and a lying control socket reach the terminal bounded in size and with
//! control characters shown escaped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::SystemTime;

use nss_agent::category_sync::SyncOutcome;
use nss_agent::control::{PushReply, Reply};
use nss_agent::pidfile::PidLock;

use crate::support::harness::*;

/// What an attacker writes: clear the screen, retitle the terminal, ring the bell.
const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{9b}";

/// A configuration whose runtime directory is `dir/run`.
fn config(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[mcas]\ndomain = \"x.us3.portal.cloudappsecurity.com\"\ntoken = {}\n[paths]\nstate_dir = {}\nruntime_dir = {}\n",
            quote(TOKEN),
            quote(&dir.join("state").display().to_string()),
            quote(&run.display().to_string()),
        ),
    )
    .unwrap();
    path
}

fn assert_no_control_characters(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in:\n{text}");
}

#[test]
fn a_planted_status_file_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // The report an offline `nss status --json` prints, as a running daemon's, with
    // escape sequences in every text.
    let (code, offline) = run_nss(&config, &["status", "--json"], &[]);
    assert_eq!(code, 0, "{offline}");
    let mut planted: serde_json::Value = serde_json::from_str(&offline).unwrap();
    planted["running"] = true.into();
    planted["pid"] = std::process::id().into();
    planted["started"] = format!("2026-01-01T00:00:00Z{ESCAPES}").into();
    for (section, key) in [
        ("mcas", "domain"),
        ("mcas", "data_source"),
        ("mcas", "token"),
        ("mcas", "data_source_problem"),
        ("upload", "last_error"),
        ("spool", "held_why"),
        ("spool", "write_refused"),
        ("sync", "last_error"),
    ] {
        planted[section][key] = format!("{key}{ESCAPES}").into();
    }
    // The pause is read from its typed form; `paused` is its message, shown.
    planted["upload"]["pause_reason"] =
        serde_json::json!({"kind": "tenant_refused", "message": format!("paused{ESCAPES}")});
    planted["mcas"]["data_source_found"] = false.into();
    planted["sync"]["zia"]["last_error"] = format!("zia{ESCAPES}").into();
    let status = dir.path().join("run/status.json");
    std::fs::write(&status, planted.to_string()).unwrap();
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("paused\\u{1b}[2J"), "{text}");
    assert_no_control_characters(&text);
    let (code, json) = run_nss(&config, &["status", "--json"], &[]);
    assert_eq!(code, 0, "{json}");
    assert_no_control_characters(&json);

    // A time that is not one: the report is not read, and the warning says why without
    // quoting it.
    planted["feed"]["last_record"] = format!("2026-01-01T00:00:00Z{ESCAPES}").into();
    std::fs::write(&status, planted.to_string()).unwrap();
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("status file was not read") && text.contains("nss-agent: not running"),
        "{text}"
    );
    assert_no_control_characters(&text);

    // A status file far larger than any report: not read, and said so.
    let huge = vec![b' '; 64 << 20];
    std::fs::write(&status, huge).unwrap();
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("status.json") && text.contains("larger than"),
        "{text}"
    );
}

/// Answers one connection on the control socket with `answer`, written until the reader
/// hangs up.
fn lying_daemon(
    dir: &Path,
    answer: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
) -> (PidLock, std::thread::JoinHandle<()>) {
    let run = dir.join("run");
    let lock = PidLock::acquire(&run).unwrap();
    let listener = UnixListener::bind(run.join("control.sock")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut request)
            .unwrap();
        answer(&mut stream);
    });
    (lock, server)
}

#[test]
fn a_lying_control_socket_is_bounded_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let reply = Reply::Synced {
        outcome: SyncOutcome {
            at: SystemTime::now(),
            urls: 1,
            added: 1,
            removed: 0,
            invalid: 1,
            invalid_examples: vec![format!("bad{ESCAPES}")],
            total_urls: 1,
            categories: 1,
        },
        zia: Some(PushReply::Pushed(format!("ZIA: pushed{ESCAPES}\n"))),
    };
    let mut line = serde_json::to_string(&reply).unwrap();
    line.push('\n');
    let (lock, server) = lying_daemon(dir.path(), move |stream| {
        stream.write_all(line.as_bytes()).unwrap();
    });
    let (code, text) = run_nss(&config, &["sync-now"], &[]);
    server.join().unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ZIA: pushed\\u{1b}[2J"), "{text}");
    assert_no_control_characters(&text);
    drop(lock);
    std::fs::remove_file(dir.path().join("run/control.sock")).unwrap();

    // An endless answer: nss stops reading at its bound and says so.
    let (lock, server) = lying_daemon(dir.path(), |stream| {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
        panic!("nss read 1 GiB of answer");
    });
    let (code, text) = run_nss(&config, &["sync-now"], &[]);
    server.join().unwrap();
    drop(lock);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("larger than"), "{text}");
}
