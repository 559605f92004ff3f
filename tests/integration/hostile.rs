//! Hostile load on the feed: floods of connections, partial records, records that cannot
//! fit, reloads under a live feed. The real sender's records get through, none lost.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::harness::*;

/// The test process opens more sockets than a default soft limit of 1,024 allows.
fn raise_own_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Connects `count` times to `addr`; a connection the agent never accepts gives up after
/// a few seconds (the listener's backlog may be full).
/// The NSS service's connection, opened before any other and held open: the feed's
/// address and the stream, once the status counts it.
fn real_sender(agent: &Agent) -> (SocketAddr, TcpStream) {
    let addr = agent.feed.unwrap();
    let real = TcpStream::connect(addr).unwrap();
    agent.wait_status("the real sender's connection", |s| {
        s["feed"]["connections"] == 1
    });
    (addr, real)
}

fn connect_many(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok())
        .collect()
}

/// Waits until `check` holds, or panics naming `what` with the agent's log.
fn wait_until(agent: &Agent, what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "never: {what}; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 1,100 connections against a limit of 1,024 open files: the excess is closed at once
/// and counted, a tailed file and the real sender go on being delivered, and every
/// descriptor is given back once the senders close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_starves_nothing_and_gives_its_descriptors_back() {
    raise_own_open_files();
    let world = World::start().await;
    let mut settings = world.settings();
    let file = world.dir.path().join("feed.log");
    let first: Vec<Vec<u8>> = (0..2_000).map(|n| leef("file", n, 0)).collect();
    std::fs::write(&file, lines(&first)).unwrap();
    settings.tail(&file).set("batch.max_age", &quote("1s"));
    let agent = world.agent_with_open_files(&settings, 1024);
    let (addr, mut real) = real_sender(&agent);
    let baseline = agent.open_files();

    let flood = connect_many(addr, 1_100);
    for stream in flood.iter().step_by(2) {
        // Half of them start a record they never finish.
        let _ = (&*stream).write_all(format!("{}LEEF:1.0|", nss_prefix()).as_bytes());
    }
    let status = agent.wait_status("connections refused at the cap", |s| {
        s["feed"]["connections_refused"].as_u64() >= Some(1_000)
    });
    assert!(
        status["feed"]["connections"].as_u64() <= Some(64),
        "{status}"
    );

    let real_records: Vec<Vec<u8>> = (0..5_000).map(|n| leef("real", n, 0)).collect();
    real.write_all(&lines(&real_records)).unwrap();
    let more: Vec<Vec<u8>> = (2_000..4_000).map(|n| leef("file", n, 0)).collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&lines(&more))
        .unwrap();
    wait_exactly_once(
        &world,
        &agent,
        [first, more, real_records].concat(),
        Duration::from_secs(60),
    )
    .await;
    let log = agent.log_text();
    assert!(log.contains("closed a feed connection on arrival"), "{log}");
    assert!(
        log.matches("closed a feed connection on arrival").count() < 5,
        "the refusals were not rate-limited"
    );

    drop(flood);
    real.shutdown(Shutdown::Write).unwrap();
    agent.wait_status("every connection closed", |s| s["feed"]["connections"] == 0);
    // The flood's and the real sender's descriptors are all given back (HTTPS connections
    // to the emulator may come and go meanwhile).
    wait_until(
        &agent,
        "the descriptors given back",
        Duration::from_secs(20),
        || agent.open_files() < baseline + 8,
    );
}

/// Senders that hold unfinished records: 500 of them, each 1 MB of a record it never
/// finishes, under the 512 MiB budget of an 8 GB appliance. The real sender's records go
/// through; the status says inputs wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_unfinished_records_do_not_starve_the_real_sender() {
    raise_own_open_files();
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("memory.limit", &quote("512MiB"))
        .set("feed.max_connections", "600")
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let (addr, mut real) = real_sender(&agent);

    let flood = connect_many(addr, 500);
    assert_eq!(flood.len(), 500);
    let fragment = Arc::new(vec![b'x'; 1 << 20]);
    let writers: Vec<_> = flood
        .iter()
        .map(|s| {
            let mut stream = s.try_clone().unwrap();
            let fragment = fragment.clone();
            std::thread::spawn(move || {
                let _ = stream.write_all(&fragment);
            })
        })
        .collect();
    agent.wait_status("inputs waiting for memory", |s| {
        s["feed"]["waiting_for_memory"].as_u64() > Some(0)
    });

    let real_records: Vec<Vec<u8>> = (0..5_000).map(|n| leef("real", n, 0)).collect();
    real.write_all(&lines(&real_records)).unwrap();
    wait_exactly_once(&world, &agent, real_records, Duration::from_secs(60)).await;
    assert!(
        agent.log_text().contains("an input waits for"),
        "{}",
        agent.log_text()
    );

    for stream in &flood {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for writer in writers {
        let _ = writer.join();
    }
}

/// 500 senders dripping one byte a second into records they never finish, under a 64 MiB
/// budget: the real sender's records go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_senders_do_not_starve_the_real_sender() {
    raise_own_open_files();
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("memory.limit", &quote("64MiB"))
        .set("feed.max_connections", "600")
        .set("feed.max_record_bytes", &quote("64KiB"))
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let (addr, mut real) = real_sender(&agent);

    let flood = connect_many(addr, 500);
    assert_eq!(flood.len(), 500);
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let streams: Vec<TcpStream> = flood.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for mut stream in &streams {
                    let _ = stream.write_all(b"y");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    agent.wait_status("the drippers connected", |s| {
        s["feed"]["connections"] == 501
    });

    let real_records: Vec<Vec<u8>> = (0..20_000).map(|n| leef("real", n, 0)).collect();
    real.write_all(&lines(&real_records)).unwrap();
    wait_exactly_once(&world, &agent, real_records, Duration::from_secs(60)).await;

    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
}

/// A record limit that cannot fit the memory budget: refused at start with exit 78,
/// naming both keys, instead of two long records waiting on each other for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_limit_the_budget_cannot_hold_is_refused() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("memory.limit", &quote("256MiB"))
        .set("feed.max_record_bytes", &quote("200MiB"));
    let config = world.dir.path().join("config.toml");
    settings.write(&config);
    let (code, text) = run_nss(&config, &["run"], &[]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("feed.max_record_bytes"), "{text}");
    assert!(text.contains("memory.limit"), "{text}");
}

/// The longest record the check lets through (a quarter of the budget, less a read),
/// sent by two senders at once: both delivered, and a third sender after them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_longest_records_at_once_are_both_delivered() {
    let world = World::start().await;
    let mut settings = world.settings();
    settings
        .set("memory.limit", &quote("64MiB"))
        .set("feed.max_record_bytes", &quote("15MiB"))
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let long = |tag: u8| {
        let mut record = vec![tag; 15 << 20];
        record[0] = b'L';
        record
    };
    let senders: Vec<_> = [b'a', b'b']
        .into_iter()
        .map(|tag| {
            let record = long(tag);
            std::thread::spawn(move || send_tcp(addr, &lines(&[record])))
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let after: Vec<Vec<u8>> = (0..1_000).map(|n| leef("after", n, 0)).collect();
    send_tcp(addr, &lines(&after));
    wait_exactly_once(
        &world,
        &agent,
        [vec![long(b'a'), long(b'b')], after].concat(),
        Duration::from_secs(60),
    )
    .await;
}

/// A burst of SIGHUPs under a live TCP feed: the connections stay open across every
/// reload and every record arrives exactly once. `NSS_SOAK_RELOAD_SIGNALS` (default 200)
/// sets the burst; `scripts/soak` runs it longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_burst_under_a_live_feed_loses_nothing() {
    let signals: usize = std::env::var("NSS_SOAK_RELOAD_SIGNALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let world = World::start().await;
    let mut settings = world.settings();
    settings.set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();
    let sending = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = ["hup-a", "hup-b"]
        .into_iter()
        .map(|stream| {
            let sending = sending.clone();
            std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(addr).unwrap();
                let mut sent = 0;
                // At least 200,000 records each, and on while the signals go on.
                while sent < 200_000 || sending.load(Ordering::Relaxed) {
                    let records: Vec<Vec<u8>> =
                        (sent..sent + 1_000).map(|n| leef(stream, n, 0)).collect();
                    tcp.write_all(&lines(&records))
                        .expect("the agent closed a feed connection");
                    sent += 1_000;
                    std::thread::sleep(Duration::from_millis(2));
                }
                tcp.shutdown(Shutdown::Write).unwrap();
                let _ = std::io::Read::read(&mut tcp, &mut [0u8; 1]);
                sent
            })
        })
        .collect();
    agent.wait_status("records streaming in", |s| {
        s["feed"]["records"].as_u64() > Some(10_000)
    });
    for _ in 0..signals {
        agent.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(10));
    }
    // The senders go on until the pipeline was really started again, twice.
    let reloads = || agent.log_text().matches("configuration reloaded").count();
    wait_until(&agent, "two reloads", Duration::from_secs(60), || {
        reloads() >= 2
    });
    sending.store(false, Ordering::Relaxed);
    let sent: Vec<usize> = senders
        .into_iter()
        .map(|s| s.join().expect("a sender failed"))
        .collect();
    let reloads = reloads();
    let total: usize = sent.iter().sum();
    world
        .emulator
        .wait_for_records(total as u64, Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (got, _) = delivered(&world.emulator);
    let mut unique = got.clone();
    unique.dedup();
    println!(
        "reloads: {signals} SIGHUPs ({reloads} reloads), {total} TCP records sent, {} delivered, {} duplicated",
        got.len(),
        got.len() - unique.len()
    );
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for (stream, count) in ["hup-a", "hup-b"].into_iter().zip(sent) {
        expected.extend((0..count).map(|n| leef(stream, n, 0)));
    }
    assert_exactly_once(&world.emulator, expected);
}
