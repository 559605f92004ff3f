//! End to end through the real `nss` binary: about 1 GiB of generated LEEF records, once
//! from a tailed file and once streamed into the TCP feed, delivered over HTTPS to the
//! emulator; GNU `gzip -6 -c` of the same file, in the same run, is the yardstick. Prints
//! one table.
//!
//! The agent runs with its default settings but for `batch.max_age`, set to 1 s (at the
//! default 5 minutes the last, partly filled batches would wait 5 minutes to be sealed, and
//! 1 s is where the promise "sealed within max_age + 1 s under load" is hardest to keep),
//! and `batch.max_records = 1000000`, `batch.max_bytes = "512MiB"`. The agent's own limit
//! of 30 API calls a minute stays on, so the delivery time shows what it costs; a third run
//! lifts it (`upload.api_calls_per_minute`), to show how soon after the last record MCAS
//! has everything when the rate does not hold the batches back.
//!
//! The tailed file is also run, in the same run and with the same settings, by the version
//! before the batch-sizing rule (the first parent of the merge "Merge delivery that keeps
//! up with the feed inside MCAS's 30 calls a minute"), built once from `git archive` of that
//! commit into `target/bench-baseline/` (not part of the tree). `NSS_BENCH_BASELINE` names
//! another commit, or `0` to leave the row out.
//!
//! Then the throttled cases (`end_to_end/throttled.rs`): the emulator itself holds the tenant
//! to 30 API calls a minute, for a burst, a paced feed, the backlog of an outage and three
//! agents on one tenant.
//!
//! `NSS_BENCH_MIB` sets the input's size (default 1024). The input is generated once, into
//! `target/bench-data`, and reused. The throttled cases run when the input is at least
//! 256 MiB, or when `NSS_BENCH_THROTTLED=1` (`0` skips them); `NSS_BENCH_CASES` names some
//! of them by letter (`b`, `a,e`). `NSS_BENCH_OUTAGE` sets the length of the long outage's
//! case in seconds (default 600).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mcas_emulator::{Emulator, EmulatorConfig};
use nix::sys::resource::{getrusage, UsageWho};
use nss_agent::feed::fnv1a;

#[path = "end_to_end/baseline.rs"]
mod baseline;
mod common;
#[path = "end_to_end/throttled.rs"]
mod throttled;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The agent's `batch.max_age` in the runs.
const MAX_AGE: Duration = Duration::from_secs(1);

/// How long a run may take before the bench gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> Result<()> {
    let mib: u64 = std::env::var("NSS_BENCH_MIB")
        .ok()
        .map(|v| v.parse().context("NSS_BENCH_MIB must be a number of MiB"))
        .transpose()?
        .unwrap_or(1024);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let input = Input::cached(&root.join("bench-data"), mib)?;
    eprintln!(
        "input: {} ({} bytes, {} records)",
        input.path.display(),
        input.bytes,
        input.records
    );
    let work = root.join("bench-run");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    let gzip = gzip(&input, &work)?;
    eprintln!("gzip -6: {:.1} s", gzip.seconds);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut emulator_config = EmulatorConfig::new(TOKEN, &work.join("mcas"), &work.join("certs"));
    // Counting means gunzipping every batch: CPU the agent would lose. Counted afterwards.
    emulator_config.count_records = false;
    let emulator = runtime.block_on(Emulator::start(emulator_config))?;

    let current = PathBuf::from(env!("CARGO_BIN_EXE_nss"));
    let baseline = baseline::binary(&root)?;
    let mut rows = vec![gzip];
    let mut runs = vec![Run {
        name: "nss: tailed file",
        feed: Feed::File,
        unthrottled: false,
        binary: current.clone(),
        snapshot_reports: false,
    }];
    if let Some(baseline) = &baseline {
        runs.push(Run {
            name: "before sizing: file",
            feed: Feed::File,
            unthrottled: false,
            binary: baseline.binary.clone(),
            snapshot_reports: true,
        });
    }
    runs.push(Run {
        name: "nss: TCP feed",
        feed: Feed::Tcp,
        unthrottled: false,
        binary: current.clone(),
        snapshot_reports: false,
    });
    runs.push(Run {
        name: "nss: TCP, no limit",
        feed: Feed::Tcp,
        unthrottled: true,
        binary: current,
        snapshot_reports: false,
    });
    for (n, run) in runs.iter().enumerate() {
        let row = run_agent(run, &work.join(format!("run-{n}")), &input, &emulator)?;
        eprintln!(
            "{}: in {:.1} s, delivered {:.1} s",
            row.name, row.seconds, row.delivered
        );
        rows.push(row);
    }
    emulator.shutdown();

    let throttled = match std::env::var("NSS_BENCH_THROTTLED").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => mib >= 256,
    };
    let mut throttled_rows = Vec::new();
    if throttled {
        for (n, case) in throttled::Case::chosen()?.into_iter().enumerate() {
            let row = throttled::run(case, &work.join(format!("throttled-{n}")), &input, &runtime)?;
            eprintln!(
                "{}: fed in {:.1} s, delivered {:?} s after",
                row.name, row.feed_s, row.delivered_after
            );
            throttled_rows.push(row);
        }
    }
    print_table(&input, &rows, baseline.as_ref().map(|b| b.commit.as_str()));
    if throttled {
        let gzip_cpu_per_gb = rows[0].cpu_seconds / (input.bytes as f64 / 1e9);
        throttled::print_table(&throttled_rows, gzip_cpu_per_gb);
    }
    Ok(())
}

/// The generated input file, with what the bench checks deliveries against.
struct Input {
    path: PathBuf,
    bytes: u64,
    records: u64,
    /// Order-independent digest of the records: the wrapping sum of their FNV-1a hashes.
    digest: u64,
}

impl Input {
    /// The input of `mib` MiB under `dir`, generated if missing.
    fn cached(dir: &Path, mib: u64) -> Result<Input> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("leef-{mib}mib.log"));
        let sums = path.with_extension("sums");
        if let (Ok(meta), Ok(text)) = (fs::metadata(&path), fs::read_to_string(&sums)) {
            let mut fields = text.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(records)), Some(Ok(digest))) = (fields.next(), fields.next()) {
                return Ok(Input {
                    path,
                    bytes: meta.len(),
                    records,
                    digest,
                });
            }
        }
        eprintln!("generating {mib} MiB of LEEF records (once)...");
        let tmp = path.with_extension("tmp");
        common::write_leef(&mut File::create(&tmp)?, mib << 20)?;
        let (records, digest) = digest_records(BufReader::new(File::open(&tmp)?))?;
        fs::rename(&tmp, &path)?;
        fs::write(&sums, format!("{records} {digest}\n"))?;
        Ok(Input {
            bytes: fs::metadata(&path)?.len(),
            path,
            records,
            digest,
        })
    }
}

/// How many records (non-empty lines) and their order-independent digest.
fn digest_records(mut reader: impl BufRead) -> io::Result<(u64, u64)> {
    let (mut records, mut digest) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok((records, digest));
        }
        let record = line.strip_suffix(b"\n").unwrap_or(&line);
        if !record.is_empty() {
            records += 1;
            digest = digest.wrapping_add(fnv1a(record));
        }
    }
}

/// One line of the table.
struct Row {
    name: &'static str,
    /// Until the last record was taken in (for gzip: until it exited).
    seconds: f64,
    cpu_seconds: f64,
    peak_rss: u64,
    /// Compressed bytes written (gzip) or uploaded (agent).
    gzip_bytes: u64,
    /// Until every record was in a sealed batch; 0 for gzip.
    sealed: f64,
    /// Until MCAS had accepted every record; 0 for gzip.
    delivered: f64,
    /// From the feed's last byte (the tailed file: complete at the start; TCP: its last
    /// byte written into the socket) until MCAS had accepted every record; 0 for gzip.
    after_last_byte: f64,
    /// The longest a batch stayed open; 0 for gzip.
    seal_latency: f64,
    batches: u64,
}

/// Children's CPU time and peak RSS so far (getrusage of reaped children).
fn children_usage() -> Result<(f64, u64)> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok((
        seconds(usage.user_time()) + seconds(usage.system_time()),
        usage.max_rss() as u64 * 1024,
    ))
}

/// `gzip -6 -c input > work/input.gz`, timed.
fn gzip(input: &Input, work: &Path) -> Result<Row> {
    let out = work.join("gzip-6.gz");
    let (cpu_before, _) = children_usage()?;
    let started = Instant::now();
    let status = Command::new("gzip")
        .args(["-6", "-c"])
        .arg(&input.path)
        .stdout(File::create(&out)?)
        .status()
        .context("running gzip (GNU gzip must be installed)")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("gzip failed: {status}");
    }
    let (cpu_after, peak_rss) = children_usage()?;
    Ok(Row {
        name: "gzip -6 -c",
        seconds,
        cpu_seconds: cpu_after - cpu_before,
        peak_rss,
        gzip_bytes: fs::metadata(&out)?.len(),
        sealed: 0.0,
        delivered: 0.0,
        after_last_byte: 0.0,
        seal_latency: 0.0,
        batches: 1,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Feed {
    File,
    Tcp,
}

/// One run of the agent.
struct Run {
    name: &'static str,
    feed: Feed,
    /// Lift the agent's limit of API calls a minute (the emulator has none): how soon the
    /// last batch reaches MCAS when the throttle does not hold it back.
    unthrottled: bool,
    /// The `nss` binary: this tree's, or the baseline's.
    binary: PathBuf,
    /// The binary's done_upload carries `uploadAsSnapshot` (the baseline's does), which
    /// MCAS and the emulator take as a snapshot report: its files are counted there.
    snapshot_reports: bool,
}

/// Runs the agent on the input through `feed` until MCAS has it all, and checks that
/// every record arrived exactly once.
fn run_agent(run: &Run, dir: &Path, input: &Input, emulator: &Emulator) -> Result<Row> {
    let Run { name, feed, .. } = *run;
    fs::create_dir_all(dir)?;
    let feed_port = free_port()?;
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let watched = dir.join("feed.log");
    let (listen, files) = match feed {
        Feed::File => {
            fs::hard_link(&input.path, &watched)
                .or_else(|_| fs::copy(&input.path, &watched).map(drop))?;
            (
                String::new(),
                format!("[{:?}]", watched.display().to_string()),
            )
        }
        Feed::Tcp => (format!("127.0.0.1:{feed_port}"), "[]".to_string()),
    };
    let config = dir.join("config.toml");
    fs::write(
        &config,
        format!(
            "[mcas]\ndomain = {domain:?}\ntoken = {TOKEN:?}\nca_file = {ca:?}\n\n\
             [feed]\nlisten = {listen:?}\nfiles = {files}\n\n\
             [batch]\nmax_age = \"{age}s\"\nmax_records = 1000000\nmax_bytes = \"512MiB\"\n\n\
             {upload}\
             [metrics]\nlisten = \"{metrics}\"\n\n\
             [paths]\nstate_dir = {state:?}\nruntime_dir = {run:?}\n",
            domain = emulator.domain(),
            ca = emulator.ca_pem_path().display().to_string(),
            age = MAX_AGE.as_secs(),
            upload = if run.unthrottled {
                "[upload]\napi_calls_per_minute = 10000\n\n"
            } else {
                ""
            },
            state = dir.join("state").display().to_string(),
            run = dir.join("run").display().to_string(),
        ),
    )?;
    let uploads_before = emulator.uploads().len();
    let snapshots_before = emulator.snapshots().len();
    let (cpu_before, _) = children_usage()?;

    let started = Instant::now();
    let mut agent = Command::new(&run.binary)
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
    let result = (|| {
        let mut sender = None;
        let started = match feed {
            Feed::File => started,
            Feed::Tcp => {
                let addr: SocketAddr = ([127, 0, 0, 1], feed_port).into();
                let stream = connect_when_ready(addr, &mut agent)?;
                let path = input.path.clone();
                let started = Instant::now();
                sender = Some(std::thread::spawn(move || send_file(stream, &path)));
                started
            }
        };
        let mut taken_in = None;
        let mut sealed = None;
        let mut last_byte = match feed {
            Feed::File => Some(started),
            Feed::Tcp => None,
        };
        let delivered;
        loop {
            if started.elapsed() > RUN_TIMEOUT {
                bail!(
                    "{name}: not delivered within {RUN_TIMEOUT:?}; see {}",
                    dir.display()
                );
            }
            if let Some(status) = agent.try_wait()? {
                bail!("{name}: the agent exited ({status}); see {}", dir.display());
            }
            let m = match scrape(metrics) {
                Ok(m) => m,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let now = started.elapsed().as_secs_f64();
            if taken_in.is_none() && m.get("feed_records_total") >= input.records {
                taken_in = Some(now);
            }
            if sealed.is_none() && m.get("batch_sealed_records_total") >= input.records {
                sealed = Some(now);
            }
            if m.get("upload_records_total") >= input.records {
                delivered = Instant::now();
                break;
            }
            if last_byte.is_none() && sender.as_ref().is_some_and(|s| s.is_finished()) {
                let sent = sender
                    .take()
                    .expect("checked")
                    .join()
                    .expect("sender thread")?;
                last_byte = Some(sent);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(sender) = sender {
            last_byte = Some(sender.join().expect("sender thread")?);
        }
        let after_last_byte = delivered
            .saturating_duration_since(last_byte.expect("the feed ended"))
            .as_secs_f64();
        let delivered = delivered.duration_since(started).as_secs_f64();
        let peak_rss = proc_status_bytes(agent.id(), "VmHWM")?;
        let m = scrape(metrics)?;
        Ok((taken_in, sealed, delivered, after_last_byte, peak_rss, m))
    })();
    // Already gone if the run failed on its exit.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = agent.wait()?;
    let (taken_in, sealed, delivered, after_last_byte, peak_rss, m) = result?;
    if !status.success() {
        bail!("{name}: the agent exited with {status} on SIGTERM");
    }
    let (cpu_after, _) = children_usage()?;

    // Exactly once: as many records as the input, with the same digest.
    let mut received = emulator.uploads().split_off(uploads_before);
    if run.snapshot_reports {
        received.extend(emulator.snapshots().split_off(snapshots_before));
    }
    let uploads = &received;
    let (mut records, mut digest, mut bytes) = (0u64, 0u64, 0u64);
    for upload in uploads {
        for record in upload.records_decompressed()? {
            records += 1;
            digest = digest.wrapping_add(fnv1a(&record));
        }
        bytes += upload.bytes;
    }
    if (records, digest) != (input.records, input.digest) {
        bail!(
            "{name}: MCAS received {records} records (digest {digest:x}); the input has {} (digest {:x})",
            input.records,
            input.digest
        );
    }
    for upload in uploads {
        // The disk is shared: the next run needs the room.
        let _ = fs::remove_file(&upload.path);
    }
    let _ = fs::remove_dir_all(dir.join("state"));
    let _ = fs::remove_file(&watched);
    Ok(Row {
        name,
        seconds: taken_in.expect("taken in before delivered"),
        cpu_seconds: cpu_after - cpu_before,
        peak_rss,
        gzip_bytes: bytes,
        sealed: sealed.expect("sealed before delivered"),
        delivered,
        after_last_byte,
        seal_latency: m.value("batch_seal_latency_max_seconds"),
        batches: uploads.len() as u64,
    })
}

/// Connects to the feed once the agent listens.
fn connect_when_ready(addr: SocketAddr, agent: &mut Child) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(stream) = TcpStream::connect(addr) {
            return Ok(stream);
        }
        if let Some(status) = agent.try_wait()? {
            bail!("the agent exited ({status}) before listening");
        }
        if Instant::now() > deadline {
            bail!("the agent did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Streams the file into the feed as the NSS service does, then waits for the agent to
/// close its side (it has read everything). Returns when the last byte was written.
fn send_file(mut stream: TcpStream, path: &Path) -> Result<Instant> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
    }
    let last_byte = Instant::now();
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = stream.read(&mut [0u8; 1]);
    Ok(last_byte)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A figure of /proc/<pid>/status in bytes, e.g. `VmHWM` (peak RSS).
fn proc_status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// The agent's metrics, by name without the `nss_agent_` prefix.
struct Metrics(Vec<(String, f64)>);

impl Metrics {
    fn value(&self, name: &str) -> f64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }

    fn get(&self, name: &str) -> u64 {
        self.value(name) as u64
    }
}

fn scrape(addr: SocketAddr) -> io::Result<Metrics> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(Metrics(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((
                    name.strip_prefix("nss_agent_")?.to_string(),
                    value.parse().ok()?,
                ))
            })
            .collect(),
    ))
}

/// Prints the unthrottled table; `baseline` describes the commit of the "before sizing" row.
fn print_table(input: &Input, rows: &[Row], baseline: Option<&str>) {
    let gzip = &rows[0];
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
    let gb = input.bytes as f64 / 1e9;
    println!();
    println!(
        "{:.0} MiB of LEEF records ({} records), on {} cores; nss with its default settings but batch.max_age = {}s, max_records = 1000000, max_bytes = 512MiB",
        mib(input.bytes),
        input.records,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        MAX_AGE.as_secs()
    );
    println!(
        "{:<19} {:>7} {:>7} {:>10} {:>6} {:>8} {:>9} {:>8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "",
        "time s",
        "MB/s",
        "records/s",
        "CPU s",
        "CPU s/GB",
        "peak RSS",
        "× gzip",
        "out MiB",
        "size ×",
        "batches",
        "sealed s",
        "deliv. s",
        "after s",
        "latency"
    );
    for row in rows {
        let agent = row.delivered > 0.0;
        let opt = |v: f64, unit: &str| {
            if agent {
                format!("{v:.2}{unit}")
            } else {
                "-".to_string()
            }
        };
        println!(
            "{:<19} {:>7.2} {:>7.1} {:>10.0} {:>6.2} {:>8.2} {:>5.1} MiB {:>8.2} {:>10.1} {:>8.3} {:>8} {:>9} {:>9} {:>9} {:>8}",
            row.name,
            row.seconds,
            mb(input.bytes) / row.seconds,
            input.records as f64 / row.seconds,
            row.cpu_seconds,
            row.cpu_seconds / gb,
            mib(row.peak_rss),
            gzip.seconds / row.seconds,
            mib(row.gzip_bytes),
            row.gzip_bytes as f64 / gzip.gzip_bytes as f64,
            row.batches,
            opt(row.sealed, ""),
            opt(row.delivered, ""),
            opt(row.after_last_byte, ""),
            opt(row.seal_latency, " s"),
        );
    }
    println!();
    println!("time: until the last record was taken in (read, framed, compressed into a batch file; gzip: until it exited).");
    println!("× gzip: gzip -6's time over this one's. size ×: bytes out (uploaded) over gzip -6's. CPU s: user + system.");
    println!("sealed / deliv.: until every record was in a sealed batch / accepted by MCAS (the agent's 30 API calls a");
    println!("  minute, 2 a batch; \"no limit\": upload.api_calls_per_minute = 10000). after s: from the feed's last byte");
    println!("  (the tailed file: complete at the start; TCP: the last byte written into the socket) until MCAS had every record.");
    if let Some(commit) = baseline {
        println!("before sizing: the version before the batch-sizing rule ({commit}), same settings, same run.");
    }
    println!("latency: the longest a batch stayed open, first record to seal (promise: batch.max_age + 1 s).");
}
