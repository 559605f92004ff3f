//! The throttled cases: the emulator holds the tenant to MCAS's 30 API calls a minute, and
//! the agent runs with its default settings but `batch.max_age = 10s`, over the TCP feed:
//! (a) the input as one burst, (b) the input twice paced at 30 MB/s (about a minute),
//! (c) the input as one burst while MCAS answers 503, released once every record is in a
//! sealed batch (the backlog of an outage), (d) three agents on one tenant, each sent the
//! input as one burst, (e) the input as one burst at the start of an outage of 10 minutes
//! (`NSS_BENCH_OUTAGE` seconds) in which MCAS answers 503, with the agent's own settings and
//! backoff: the API calls it made while MCAS was down (the most in any minute), and how
//! soon after MCAS's return it had every record. Each case gets an emulator of its own, so
//! that no case inherits another's calls in the throttle's window.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use mcas_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
use nss_agent::feed::fnv1a;

use super::{
    children_usage, connect_when_ready, free_port, proc_status_bytes, scrape, Input, RUN_TIMEOUT,
    TOKEN,
};

/// `batch.max_age` in the throttled cases.
pub const MAX_AGE_S: u64 = 10;

/// The pace of case (b), bytes a second.
const PACE: f64 = 30e6;

/// How long MCAS is down in case (e): `NSS_BENCH_OUTAGE` seconds, 600 if unset.
fn long_outage() -> Result<Duration> {
    let seconds = match std::env::var("NSS_BENCH_OUTAGE") {
        Ok(v) => v
            .parse()
            .context("NSS_BENCH_OUTAGE must be a number of seconds")?,
        Err(_) => 600,
    };
    Ok(Duration::from_secs(seconds))
}

/// One throttled case.
#[derive(Clone, Copy)]
pub enum Case {
    Burst,
    Paced,
    Outage,
    Shared,
    LongOutage,
}

impl Case {
    pub const ALL: [Case; 5] = [
        Case::Burst,
        Case::Paced,
        Case::Outage,
        Case::Shared,
        Case::LongOutage,
    ];

    /// The cases `NSS_BENCH_CASES` names by letter (e.g. `b` or `a,e`), else all of them.
    pub fn chosen() -> anyhow::Result<Vec<Case>> {
        let Ok(letters) = std::env::var("NSS_BENCH_CASES") else {
            return Ok(Case::ALL.to_vec());
        };
        letters
            .split(',')
            .map(|letter| {
                Case::ALL
                    .into_iter()
                    .find(|case| case.name()[1..].starts_with(&format!("{})", letter.trim())))
                    .ok_or_else(|| anyhow::anyhow!("NSS_BENCH_CASES: no case {letter:?} (a to e)"))
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Case::Burst => "(a) burst",
            Case::Paced => "(b) 30 MB/s",
            Case::Outage => "(c) after outage",
            Case::Shared => "(d) 3 agents",
            Case::LongOutage => "(e) long outage",
        }
    }

    fn agents(self) -> usize {
        match self {
            Case::Shared => 3,
            _ => 1,
        }
    }

    /// How many times each agent is sent the input.
    fn repeats(self) -> u64 {
        match self {
            Case::Paced => 2,
            _ => 1,
        }
    }
}

/// One line of the throttled table.
pub struct Row {
    pub name: &'static str,
    /// Bytes of records fed, over all agents.
    pub bytes: u64,
    /// How long the feed took (the longest agent's).
    pub feed_s: f64,
    /// Per agent: from the end of its feed (case c: from MCAS's return) until MCAS had
    /// every record of it.
    pub delivered_after: Vec<f64>,
    /// Cases (c), (e): from MCAS's return until the agent's first call went through.
    pub first_call_after: Option<f64>,
    /// Case (e): the API calls made while MCAS was down.
    pub outage: Option<OutageCalls>,
    pub api_calls: u64,
    pub throttled: u64,
    pub uploads: u64,
    pub cpu_s: f64,
    pub peak_rss: u64,
}

/// The API calls an agent made while MCAS was down (blob PUTs are not API calls).
pub struct OutageCalls {
    /// How long MCAS was down.
    pub seconds: f64,
    pub calls: usize,
    /// The most calls in any 60 s of the outage.
    pub max_per_minute: usize,
}

impl OutageCalls {
    /// The calls to MCAS's API among `calls` from `from` to `to`.
    fn count(calls: &[mcas_emulator::Call], from: SystemTime, to: SystemTime) -> OutageCalls {
        let mut at: Vec<SystemTime> = calls
            .iter()
            .filter(|c| {
                !matches!(
                    c.endpoint,
                    Some(Endpoint::Blob) | Some(Endpoint::Token) | None
                )
            })
            .map(|c| c.at)
            .filter(|&t| t >= from && t < to)
            .collect();
        at.sort();
        let minute = Duration::from_secs(60);
        let max_per_minute = (0..at.len())
            .map(|i| at[i..].iter().take_while(|&&t| t < at[i] + minute).count())
            .max()
            .unwrap_or(0);
        OutageCalls {
            seconds: to.duration_since(from).unwrap_or_default().as_secs_f64(),
            calls: at.len(),
            max_per_minute,
        }
    }
}

/// A running agent of a case.
struct Agent {
    child: Child,
    feed: SocketAddr,
    metrics: SocketAddr,
}

impl Agent {
    fn start(dir: &Path, emulator: &Emulator) -> Result<Agent> {
        fs::create_dir_all(dir)?;
        let feed: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "[mcas]\ndomain = {domain:?}\ntoken = {TOKEN:?}\nca_file = {ca:?}\n\n\
                 [feed]\nlisten = \"{feed}\"\n\n\
                 [batch]\nmax_age = \"{MAX_AGE_S}s\"\n\n\
                 [metrics]\nlisten = \"{metrics}\"\n\n\
                 [paths]\nstate_dir = {state:?}\nruntime_dir = {run:?}\n",
                domain = emulator.domain(),
                ca = emulator.ca_pem_path().display().to_string(),
                state = dir.join("state").display().to_string(),
                run = dir.join("run").display().to_string(),
            ),
        )?;
        let child = Command::new(env!("CARGO_BIN_EXE_nss"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("NSS_LOG", "info")
            .env("NSS_AGENT_NO_SYSTEMD", "1")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("agent.log"))?)
            .stderr(File::create(dir.join("agent.err"))?)
            .spawn()
            .context("starting nss")?;
        Ok(Agent {
            child,
            feed,
            metrics,
        })
    }

    fn metric(&self, name: &str) -> u64 {
        scrape(self.metrics).map_or(0, |m| m.get(name))
    }
}

/// Streams the input `repeats` times into the feed, at `pace` bytes a second if given,
/// then waits for the agent to close its side (it has read everything).
fn feed(
    mut stream: std::net::TcpStream,
    path: &Path,
    repeats: u64,
    pace: Option<f64>,
) -> Result<Instant> {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..repeats {
        let mut file = File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n])?;
            sent += n as u64;
            if let Some(pace) = pace {
                let due = started + Duration::from_secs_f64(sent as f64 / pace);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = stream.read(&mut [0u8; 1]);
    Ok(Instant::now())
}

/// Runs one case in `dir` and checks that MCAS got every record exactly once.
pub fn run(
    case: Case,
    dir: &Path,
    input: &Input,
    runtime: &tokio::runtime::Runtime,
) -> Result<Row> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let mut config = EmulatorConfig::new(TOKEN, &dir.join("mcas"), &dir.join("certs"));
    config.count_records = false;
    config.throttle_per_minute = Some(30);
    let emulator = runtime.block_on(Emulator::start(config))?;
    let result = run_with(case, dir, input, &emulator);
    emulator.shutdown();
    let _ = fs::remove_dir_all(dir);
    result
}

fn run_with(case: Case, dir: &Path, input: &Input, emulator: &Emulator) -> Result<Row> {
    let name = case.name();
    let (cpu_before, _) = children_usage()?;
    let mut agents = Vec::new();
    for a in 0..case.agents() {
        agents.push(Agent::start(&dir.join(format!("agent{a}")), emulator)?);
    }
    let outage_from = SystemTime::now();
    if let Case::Outage | Case::LongOutage = case {
        emulator.push_fault(Endpoint::UploadUrl, Fault::status(503), 1_000_000);
    }
    let per_agent = input.records * case.repeats();
    let result = (|| {
        let mut senders = Vec::new();
        let started = Instant::now();
        for agent in agents.iter_mut() {
            let stream = connect_when_ready(agent.feed, &mut agent.child)?;
            let path = input.path.clone();
            let (repeats, pace) = (case.repeats(), matches!(case, Case::Paced).then_some(PACE));
            senders.push(std::thread::spawn(move || {
                feed(stream, &path, repeats, pace)
            }));
        }
        let feed_ends: Vec<Instant> = senders
            .into_iter()
            .map(|s| s.join().expect("sender thread"))
            .collect::<Result<_>>()?;
        let feed_s = feed_ends
            .iter()
            .map(|e| e.duration_since(started).as_secs_f64())
            .fold(0.0, f64::max);
        let mut from = feed_ends.clone();
        let mut released = None;
        let mut outage = None;
        if let Case::Outage | Case::LongOutage = case {
            wait(name, dir, &mut agents, |a| {
                a.metric("batch_sealed_records_total") >= per_agent
            })?;
            if let Case::LongOutage = case {
                let until = outage_from + long_outage()?;
                while SystemTime::now() < until {
                    check_alive(name, dir, &mut agents, Instant::now())?;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            let calls_before = emulator.calls_to(Endpoint::UploadUrl).len();
            emulator.clear_faults();
            let at = Instant::now();
            let now = SystemTime::now();
            if let Case::LongOutage = case {
                outage = Some(OutageCalls::count(&emulator.calls(), outage_from, now));
            }
            from = vec![at; agents.len()];
            released = Some((at, now, calls_before));
        }
        let since = released.map_or(started, |(at, _, _)| at);
        let mut delivered_after = vec![None; agents.len()];
        loop {
            for (i, agent) in agents.iter().enumerate() {
                if delivered_after[i].is_none() && agent.metric("upload_records_total") >= per_agent
                {
                    delivered_after[i] = Some(from[i].elapsed().as_secs_f64());
                }
            }
            if delivered_after.iter().all(Option::is_some) {
                break;
            }
            check_alive(name, dir, &mut agents, since)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        let first_call_after = released.and_then(|(_, at, before)| {
            emulator.calls_to(Endpoint::UploadUrl)[before..]
                .iter()
                .find(|c| c.status == 200)
                .and_then(|c| c.at.duration_since(at).ok())
                .map(|d| d.as_secs_f64())
        });
        let mut peak_rss = 0;
        let (mut api_calls, mut throttled) = (0, 0);
        for agent in &agents {
            peak_rss = peak_rss.max(proc_status_bytes(agent.child.id(), "VmHWM")?);
            api_calls += agent.metric("upload_api_calls_total");
            throttled += agent.metric("upload_throttled_total");
        }
        Ok::<_, anyhow::Error>((
            feed_s,
            delivered_after.into_iter().flatten().collect::<Vec<f64>>(),
            first_call_after,
            outage,
            peak_rss,
            api_calls,
            throttled,
        ))
    })();
    for agent in &mut agents {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        agent.child.wait()?;
    }
    let (feed_s, delivered_after, first_call_after, outage, peak_rss, api_calls, throttled) =
        result?;
    let (cpu_after, _) = children_usage()?;

    // Exactly once, over all agents: each was sent the input `repeats` times.
    let copies = case.agents() as u64 * case.repeats();
    let (mut records, mut digest) = (0u64, 0u64);
    let uploads = emulator.uploads();
    for upload in &uploads {
        for record in upload.records_decompressed()? {
            records += 1;
            digest = digest.wrapping_add(fnv1a(&record));
        }
        // The disk is shared: the next case needs the room.
        let _ = fs::remove_file(&upload.path);
    }
    let expected = (input.records * copies, input.digest.wrapping_mul(copies));
    if (records, digest) != expected {
        bail!(
            "{name}: MCAS received {records} records (digest {digest:x}); expected {} (digest {:x})",
            expected.0,
            expected.1
        );
    }
    Ok(Row {
        name,
        bytes: input.bytes * copies,
        feed_s,
        delivered_after,
        first_call_after,
        outage,
        api_calls,
        throttled,
        uploads: uploads.len() as u64,
        cpu_s: cpu_after - cpu_before,
        peak_rss,
    })
}

/// Waits until `done` holds for every agent.
fn wait(name: &str, dir: &Path, agents: &mut [Agent], done: impl Fn(&Agent) -> bool) -> Result<()> {
    let started = Instant::now();
    while !agents.iter().all(&done) {
        check_alive(name, dir, agents, started)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn check_alive(name: &str, dir: &Path, agents: &mut [Agent], since: Instant) -> Result<()> {
    if since.elapsed() > RUN_TIMEOUT {
        bail!(
            "{name}: not delivered within {RUN_TIMEOUT:?}; see {}",
            dir.display()
        );
    }
    for agent in agents {
        if let Some(status) = agent.child.try_wait()? {
            bail!("{name}: an agent exited ({status}); see {}", dir.display());
        }
    }
    Ok(())
}

/// Prints the throttled table; `gzip_cpu_per_gb` is gzip -6's CPU seconds per GB.
pub fn print_table(rows: &[Row], gzip_cpu_per_gb: f64) {
    println!();
    println!(
        "MCAS throttled to 30 API calls a minute (the emulator, per tenant); nss with its default settings but batch.max_age = {MAX_AGE_S}s"
    );
    println!(
        "{:<18} {:>8} {:>7} {:>16} {:>9} {:>5} {:>7} {:>6} {:>8} {:>9} {:>9}",
        "",
        "fed MB",
        "feed s",
        "delivered +s",
        "API calls",
        "429s",
        "uploads",
        "CPU s",
        "CPU s/GB",
        "× gzip -6",
        "peak RSS"
    );
    for row in rows {
        let gb = row.bytes as f64 / 1e9;
        let after = row
            .delivered_after
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<18} {:>8.0} {:>7.1} {:>16} {:>9} {:>5} {:>7} {:>6.2} {:>8.2} {:>9.2} {:>5.1} MiB",
            row.name,
            row.bytes as f64 / 1e6,
            row.feed_s,
            after,
            row.api_calls,
            row.throttled,
            row.uploads,
            row.cpu_s,
            row.cpu_s / gb,
            gzip_cpu_per_gb / (row.cpu_s / gb),
            row.peak_rss as f64 / (1u64 << 20) as f64,
        );
        if let Some(outage) = &row.outage {
            println!(
                "{:<18} (MCAS down {:.0} s: {} API calls meanwhile, at most {} in any minute)",
                "", outage.seconds, outage.calls, outage.max_per_minute
            );
        }
        if let Some(first) = row.first_call_after {
            println!(
                "{:<18} (the agent's first call after MCAS's return went through {first:.1} s after it: the upload backoff's wait)",
                ""
            );
        }
    }
    println!();
    println!("delivered +s: from the end of the feed (c, e: from MCAS's return) until MCAS had every record, per agent.");
    println!("API calls, 429s: the agents' own counts. CPU s: the agents' user + system; × gzip -6: gzip -6's CPU s per GB over the agents'.");
}
