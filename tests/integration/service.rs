//! `nss start | stop | restart` without systemd: the pidfile path.

use std::io::Write;
use std::time::Duration;

use crate::support::harness::*;

fn service(config: &std::path::Path, verb: &str) -> (i32, String) {
    run_nss(config, &[verb], &[("NSS_AGENT_NO_SYSTEMD", "1")])
}

fn pid_of(text: &str) -> u32 {
    text.trim()
        .strip_prefix("NSS service running with pid ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not the appliance's answer: {text:?}"))
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_restart_through_the_pidfile_lose_nothing() {
    let world = World::start().await;
    let file = world.dir.path().join("feed.log");
    let mut settings = world.settings();
    settings.tail(&file).set("batch.max_age", &quote("300ms"));
    let config = world.dir.path().join("service.toml");
    settings.write(&config);

    let (code, text) = service(&config, "start");
    assert_eq!(code, 0, "{text}");
    let first = pid_of(&text);
    assert!(alive(first));
    let (code, text) = service(&config, "start");
    assert_eq!(
        (code, pid_of(&text)),
        (0, first),
        "a second start starts nothing"
    );

    // Records stream into the tailed file through two restarts.
    let writer_file = file.clone();
    let appender = std::thread::spawn(move || {
        let mut all = Vec::new();
        for burst in 0..40 {
            let records: Vec<Vec<u8>> = (0..100)
                .map(|n| leef(&format!("svc{burst}"), n, 0))
                .collect();
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&writer_file)
                .unwrap();
            out.write_all(&lines(&records)).unwrap();
            all.extend(records);
            std::thread::sleep(Duration::from_millis(50));
        }
        all
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, text) = service(&config, "restart");
    assert_eq!(code, 0, "{text}");
    let second = pid_of(text.lines().last().unwrap());
    assert!(text.contains("NSS service stopped"), "{text}");
    assert_ne!(second, first);
    assert!(!alive(first), "the old daemon is still there");
    std::thread::sleep(Duration::from_millis(500));
    let (code, text) = service(&config, "restart");
    assert_eq!(code, 0, "{text}");
    let third = pid_of(text.lines().last().unwrap());
    let expected = appender.join().unwrap();
    world
        .emulator
        .wait_for_records(expected.len() as u64, Duration::from_secs(30))
        .await
        .unwrap();
    let runtime_dir = std::path::PathBuf::from(
        serde_json::from_str::<String>(settings.get("paths.runtime_dir").unwrap()).unwrap(),
    );
    wait_quiet(&runtime_dir, Some(third), Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, expected);

    let (code, text) = service(&config, "stop");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("NSS service stopped"), "{text}");
    assert!(!alive(third));
    let (code, text) = service(&config, "stop");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("not running"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_a_bad_configuration_and_a_second_daemon_is_refused() {
    let world = World::start().await;
    let mut settings = world.settings();
    let config = world.dir.path().join("service.toml");
    settings.set("mcas.domain", &quote("https://x.example.com"));
    settings.write(&config);
    let (code, text) = service(&config, "start");
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("mcas.domain"), "{text}");

    // A daemon started by hand holds the pidfile: another one is refused.
    let settings = world.settings();
    let agent = world.agent(&settings);
    let output = nss()
        .arg("--config")
        .arg(world.dir.path().join("config.toml"))
        .arg("run")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another nss-agent is running"), "{stderr}");
    drop(agent);
}

/// Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC): READY=1 only once the feed port accepts,
/// WATCHDOG=1 at half the period, STATUS= lines, STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notifications() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;
    let world = World::start().await;
    let socket_path = world.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let settings = world.settings();
    let feed = std::net::SocketAddr::from(([127, 0, 0, 1], {
        let addr: String = serde_json::from_str(settings.get("feed.listen").unwrap()).unwrap();
        addr.rsplit(':').next().unwrap().parse::<u16>().unwrap()
    }));
    let messages =
        std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, String, bool)>::new()));
    let collected = messages.clone();
    let listener = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                // At READY=1 the feed port must already accept.
                let accepts = std::net::TcpStream::connect(feed).is_ok();
                let stopping = text.contains("STOPPING=1");
                collected
                    .lock()
                    .unwrap()
                    .push((Instant::now(), text, accepts));
                if stopping {
                    return;
                }
            }
        }
    });
    let socket_env = socket_path.display().to_string();
    let mut agent = world.agent_with_env(
        &settings,
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "1000000")],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.stop().success());
    listener.join().unwrap();
    let messages = messages.lock().unwrap();
    let ready = messages
        .iter()
        .find(|(_, m, _)| m.contains("READY=1"))
        .expect("no READY=1");
    assert!(ready.2, "READY=1 came before the feed port accepted");
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, m, _)| m.contains("WATCHDOG=1"))
        .map(|(t, _, _)| *t)
        .collect();
    assert!(
        (4..=9).contains(&pings.len()),
        "{} WATCHDOG=1 in about 3 s with a 1 s watchdog",
        pings.len()
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(300) && gap <= Duration::from_millis(800),
            "pings {gap:?} apart"
        );
    }
    assert!(
        messages
            .iter()
            .any(|(_, m, _)| m.contains("STATUS=") && m.contains("records read")),
        "{messages:?}"
    );
    assert!(
        messages.last().unwrap().1.contains("STOPPING=1"),
        "{messages:?}"
    );
}
