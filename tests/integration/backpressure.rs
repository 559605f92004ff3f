//! MCAS refusing everything while the feed keeps coming: the agent holds its memory and
//! spool bounds, pushes back on the sender instead of dropping, and delivers it all later.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcas_emulator::{Endpoint, Fault};

use crate::support::harness::*;

const MEMORY_LIMIT: u64 = 8 << 20;
const SPOOL_CAP: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_mcas_blocks_the_sender_within_memory_and_spool_bounds() {
    let world = World::start().await;
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(503), 1_000_000);
    let mut settings = world.settings();
    settings
        .set("memory.limit", &quote("8MiB"))
        .set("spool.max_bytes", &quote("1MiB"))
        .set("batch.max_bytes", &quote("4MiB"))
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let baseline = agent.proc_status_bytes("VmRSS");

    // 53 MiB of records by default, about 5 MiB of gzip: five times the spool's cap.
    // scripts/soak offers 2 GiB (NSS_SOAK_OFFER_MIB=2048).
    let offer_mib: u64 = std::env::var("NSS_SOAK_OFFER_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(53);
    let count = (offer_mib << 20) / leef("pushback", 0, 0).len() as u64;
    let offered: u64 = (0..count)
        .map(|n| leef("pushback", n as usize, 0).len() as u64 + 1)
        .sum();
    let written = Arc::new(AtomicU64::new(0));
    let progress = written.clone();
    let addr = agent.feed.unwrap();
    let sender = stream_records(addr, "pushback", count, progress);

    // The spool fills, reading stops, and the sender is held back.
    agent.wait_status("a full spool", |s| s["spool"]["full"] == true);
    let stalled_at = loop {
        let before = written.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
        let after = written.load(Ordering::Relaxed);
        if after == before {
            break after;
        }
        assert!(after < offered, "the sender was never held back");
    };
    assert!(
        stalled_at < offered,
        "everything was taken in: nothing pushed back"
    );
    let status = agent.status();
    let spool_bytes = status["spool"]["bytes"].as_u64().unwrap();
    // The cap, plus at most the open batches of the writers (each under batch.max_bytes
    // of gzip, far less in practice).
    assert!(
        spool_bytes <= SPOOL_CAP + (1 << 20),
        "spool at {spool_bytes} bytes, cap {SPOOL_CAP}"
    );
    let peak = agent.proc_status_bytes("VmHWM");
    eprintln!(
        "held back after {} of {} MiB offered; spool {} KiB (cap {} KiB); peak RSS {} MiB = baseline {} MiB + {} MiB (budget {} MiB)",
        stalled_at >> 20,
        offered >> 20,
        spool_bytes >> 10,
        SPOOL_CAP >> 10,
        peak >> 20,
        baseline >> 20,
        (peak - baseline) >> 20,
        MEMORY_LIMIT >> 20
    );
    assert!(
        peak <= baseline + MEMORY_LIMIT + (10 << 20),
        "peak RSS {peak} over baseline {baseline} + budget {MEMORY_LIMIT} + 10 MiB of compressors and file buffers"
    );
    assert_eq!(agent.status()["feed"]["oversize_dropped"], 0);

    // MCAS comes back: everything arrives, once.
    world.emulator.clear_faults();
    let started = Instant::now();
    sender.join().unwrap();
    world
        .emulator
        .wait_for_records(count, Duration::from_secs(180 + offer_mib / 2))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    eprintln!("delivered the backlog in {:?}", started.elapsed());
    assert_ids_exactly_once(&world.emulator, "pushback", count);
    // The backlog went up oldest first.
    let seqs: Vec<u64> = world
        .emulator
        .uploads()
        .iter()
        .map(|u| {
            u.filename
                .trim_end_matches(".log.gz")
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "not oldest first: {seqs:?}"
    );
    assert!(agent.log_text().contains("the spool is full"));
}

/// Streams the records [`leef`] makes for `stream`, numbered `0..count`, over one TCP
/// connection as fast as the agent takes them, counting the bytes written in `progress`.
fn stream_records(
    addr: std::net::SocketAddr,
    stream: &'static str,
    count: u64,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut connection = std::net::TcpStream::connect(addr).unwrap();
        let mut n = 0;
        while n < count {
            let end = (n + 300).min(count);
            let piece = lines(
                &(n..end)
                    .map(|i| leef(stream, i as usize, 0))
                    .collect::<Vec<_>>(),
            );
            connection.write_all(&piece).unwrap();
            progress.fetch_add(piece.len() as u64, Ordering::Relaxed);
            n = end;
        }
        connection.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = std::io::Read::read(&mut connection, &mut [0u8; 1]);
    })
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (scripts/test runs as root)"
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The disk fills up before the spool's cap: the agent keeps a reserve free and blocks
/// the feed instead of meeting ENOSPC; nothing is dropped, nothing corrupted, and all of
/// it is delivered once MCAS makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_blocks_the_feed_instead_of_failing() {
    let world = World::start().await;
    let state = world.dir.path().join("small-disk");
    let _disk = Tmpfs::mount(&state, "4m");
    world
        .emulator
        .push_fault(Endpoint::UploadUrl, Fault::status(503), 1_000_000);
    let mut settings = world.settings();
    settings
        .set("paths.state_dir", &quote(&state.display().to_string()))
        .set("spool.max_bytes", &quote("1GiB"))
        .set("memory.limit", &quote("8MiB"))
        .set("batch.max_bytes", &quote("4MiB"))
        .set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    // About 105 MiB of records, 7 MiB of gzip, on a 4 MiB disk.
    let count: u64 = 650_000;
    let addr = agent.feed.unwrap();
    let sender = stream_records(addr, "disk", count, Arc::default());
    agent.wait_log("the disk is almost full");
    let status = agent.wait_status("a full spool", |s| s["spool"]["full"] == true);
    assert!(
        agent.quarantined().is_empty(),
        "a batch failed: {:?}\n{}",
        agent.quarantined(),
        agent.log_text()
    );
    let log = agent.log_text();
    assert!(
        !log.contains("writing a batch failed") && !log.contains("sealing a batch failed"),
        "{log}"
    );
    eprintln!(
        "blocked with {} KiB spooled on a 4 MiB disk",
        status["spool"]["bytes"].as_u64().unwrap() >> 10
    );

    world.emulator.clear_faults();
    sender.join().unwrap();
    world
        .emulator
        .wait_for_records(count, Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    assert_ids_exactly_once(&world.emulator, "disk", count);
    assert!(agent.quarantined().is_empty());
}
