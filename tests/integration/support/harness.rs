//! Running the real `nss` binary against the in-process MCAS emulator.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mcas_emulator::{Emulator, EmulatorConfig};
use tempfile::TempDir;

pub use crate::support::generate::{leef, lines, nss_prefix};

/// The API token the emulator accepts and the agent is given.
pub const TOKEN: &str = "t0k3n-0123456789abcdef0123456789abcdef0123456789abcdef-SECRET";

/// The `nss` binary under test.
pub fn nss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nss"))
}

/// Runs `nss --config <config> <args>` once with extra environment variables; returns the
/// exit code and stdout followed by stderr. Fails if the token shows in either.
pub fn run_nss(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = nss()
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains(TOKEN), "the token was printed:\n{text}");
    (output.status.code().unwrap_or(-1), text)
}

/// A working directory and an emulator in it.
pub struct World {
    pub dir: TempDir,
    pub emulator: Emulator,
}

impl World {
    /// Starts an emulator with its store and certificates in a new temporary directory.
    pub async fn start() -> World {
        Self::start_with(|_| {}).await
    }

    /// Like `start`, after `adjust` had its say on the emulator's configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut EmulatorConfig)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            EmulatorConfig::new(TOKEN, &dir.path().join("store"), &dir.path().join("certs"));
        adjust(&mut config);
        let emulator = Emulator::start(config).await.unwrap();
        World { dir, emulator }
    }

    /// Settings for an agent of this world: fast retries, no metrics port, a free feed port.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        let port = free_port();
        for (key, value) in [
            ("mcas.domain", quote(&self.emulator.domain())),
            ("mcas.token", quote(TOKEN)),
            (
                "mcas.ca_file",
                quote(&self.emulator.ca_pem_path().display().to_string()),
            ),
            ("feed.listen", quote(&format!("127.0.0.1:{port}"))),
            ("batch.max_age", quote("2s")),
            ("upload.timeout", quote("3s")),
            ("upload.backoff_min", quote("100ms")),
            ("upload.backoff_max", quote("1s")),
            ("upload.auth_retry", quote("1s")),
            ("upload.outage_retry", quote("1s")),
            ("upload.api_calls_per_minute", "600".to_string()),
            ("metrics.listen", quote("")),
            (
                "paths.state_dir",
                quote(&self.dir.path().join("state").display().to_string()),
            ),
            (
                "paths.runtime_dir",
                quote(&self.dir.path().join("run").display().to_string()),
            ),
        ] {
            settings.set(key, &value);
        }
        settings
    }

    /// Starts an agent with `settings`.
    pub fn agent(&self, settings: &Settings) -> Agent {
        Agent::start(self.dir.path(), settings, &[])
    }

    /// Starts an agent with `settings` and extra environment variables.
    pub fn agent_with_env(&self, settings: &Settings, env: &[(&str, &str)]) -> Agent {
        Agent::start(self.dir.path(), settings, env)
    }

    /// Starts an agent with `settings` as the user `uid`:`gid` (the test runs as root).
    pub fn agent_as(&self, settings: &Settings, uid: u32, gid: u32) -> Agent {
        Agent::start_as(self.dir.path(), settings, &[], Some((uid, gid)))
    }

    /// Starts an agent with `settings` whose limit of open files (soft and hard) is
    /// `open_files`, as a systemd unit without `LimitNOFILE=` gives it.
    pub fn agent_with_open_files(&self, settings: &Settings, open_files: u64) -> Agent {
        let agent = Agent::spawn_with(self.dir.path(), settings, &[], None, Some(open_files));
        agent.wait_ready();
        agent
    }

    /// Runs an agent that is to kill itself at the crash point `point` (`NSS_CRASH_AT`,
    /// debug builds), without waiting for it to get ready; returns its log once it is
    /// gone, or panics when it is still running after 30 s.
    pub fn run_to_crash(&self, settings: &Settings, point: &str) -> String {
        let mut agent = Agent::spawn(self.dir.path(), settings, &[("NSS_CRASH_AT", point)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.running() {
            assert!(
                Instant::now() < deadline,
                "the agent never reached the crash point {point}:\n{}",
                agent.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = agent.child.take().unwrap().wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the agent did not die at the crash point {point}:\n{}",
            agent.log_text()
        );
        agent.log_text()
    }
}

/// A directory made immutable (`chattr +i`: nothing in it can be created, removed or
/// renamed, even by root) until dropped.
pub struct Immutable(PathBuf);

impl Immutable {
    /// Makes `dir` immutable; panics when the file system or the user cannot (the tests
    /// that use it run as root on ext4 or tmpfs).
    pub fn new(dir: &Path) -> Immutable {
        let status = Command::new("chattr").arg("+i").arg(dir).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chattr +i {} failed: this test needs root and a file system with the immutable flag",
            dir.display()
        );
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A TOML string literal.
pub fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration file's keys, `section.key` to a TOML value.
#[derive(Debug, Clone, Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Sets `key` (`section.key`) to the TOML value `value` (quote strings with [`quote`]).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Settings {
        self.0.insert(key.to_string(), value.to_string());
        self
    }

    /// Leaves `key` out of the file.
    pub fn remove(&mut self, key: &str) -> &mut Settings {
        self.0.remove(key);
        self
    }

    /// Tails `file` (`feed.files`).
    pub fn tail(&mut self, file: &Path) -> &mut Settings {
        self.set(
            "feed.files",
            &format!("[{}]", quote(&file.display().to_string())),
        )
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (key, value) in &self.0 {
            let (section, name) = key.split_once('.').unwrap();
            sections
                .entry(section)
                .or_default()
                .push(format!("{name} = {value}"));
        }
        sections
            .into_iter()
            .map(|(section, lines)| format!("[{section}]\n{}\n", lines.join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.toml()).unwrap();
    }
}

/// A running `nss run`.
pub struct Agent {
    child: Option<Child>,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub feed: Option<SocketAddr>,
}

impl Agent {
    fn start(dir: &Path, settings: &Settings, env: &[(&str, &str)]) -> Agent {
        Agent::start_as(dir, settings, env, None)
    }

    fn start_as(
        dir: &Path,
        settings: &Settings,
        env: &[(&str, &str)],
        user: Option<(u32, u32)>,
    ) -> Agent {
        let agent = Agent::spawn_as(dir, settings, env, user);
        agent.wait_ready();
        agent
    }

    /// Starts an agent without waiting for it to get ready.
    fn spawn(dir: &Path, settings: &Settings, env: &[(&str, &str)]) -> Agent {
        Agent::spawn_as(dir, settings, env, None)
    }

    fn spawn_as(
        dir: &Path,
        settings: &Settings,
        env: &[(&str, &str)],
        user: Option<(u32, u32)>,
    ) -> Agent {
        Agent::spawn_with(dir, settings, env, user, None)
    }

    fn spawn_with(
        dir: &Path,
        settings: &Settings,
        env: &[(&str, &str)],
        user: Option<(u32, u32)>,
        open_files: Option<u64>,
    ) -> Agent {
        let config = dir.join("config.toml");
        if let Some(run) = settings.get("paths.runtime_dir") {
            // A status file left by an earlier run must not pass for this one's.
            let run = PathBuf::from(serde_json::from_str::<String>(run).unwrap());
            let _ = std::fs::remove_file(run.join("status.json"));
        }
        settings.write(&config);
        let log = dir.join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = nss();
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        limit,
                        limit,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("NSS_LOG", "info,nss_agent=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let unquote = |key: &str| {
            PathBuf::from(serde_json::from_str::<String>(settings.get(key).unwrap()).unwrap())
        };
        let feed = settings
            .get("feed.listen")
            .and_then(|v| serde_json::from_str::<String>(v).ok())
            .and_then(|v| v.parse().ok());
        Agent {
            child: Some(child),
            log,
            state_dir: unquote("paths.state_dir"),
            runtime_dir: unquote("paths.runtime_dir"),
            feed,
        }
    }

    /// Waits until the feed port accepts (or, without a TCP feed, the status file exists).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ready = match self.feed {
                Some(addr) => TcpStream::connect(addr).is_ok(),
                None => self.runtime_dir.join("status.json").exists(),
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not get ready; its log:\n{}", self.log_text());
    }

    /// Everything the agent logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `text`, or panics with the log.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status the agent published last.
    pub fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.runtime_dir.join("status.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Waits until `check` holds for the status, or panics with the log.
    pub fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(self.runtime_dir.join("status.json")) {
                if let Ok(status) = serde_json::from_str(&text) {
                    if check(&status) {
                        return status;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("status never showed {what}; log:\n{}", self.log_text());
    }

    /// Waits until the agent has nothing in flight ([`wait_quiet`]), or panics with the log
    /// after `within`.
    pub async fn wait_quiet(&self, within: Duration) -> serde_json::Value {
        let pid = self.child.as_ref().map(|child| child.id());
        wait_quiet(&self.runtime_dir, pid, within)
            .await
            .unwrap_or_else(|why| panic!("{why}\nlog:\n{}", self.log_text()))
    }

    /// Files in the spool's quarantine, without their `.reason` companions.
    pub fn quarantined(&self) -> Vec<PathBuf> {
        let dir = self.state_dir.join("spool/quarantine");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_none_or(|e| e != "reason"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// A figure of the agent process's /proc status in bytes, e.g. `VmHWM` (peak RSS).
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// The agent's open file descriptors now.
    pub fn open_files(&self) -> usize {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("running").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// Whether the agent process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Kills the agent with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!(
                    "the agent did not stop on SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `data` over one TCP connection to the feed and closes it.
pub fn send_tcp(addr: SocketAddr, data: &[u8]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the agent to close its side, so that everything sent was read.
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
}

/// Every record the emulator holds, sorted, with how many batches they came in.
pub fn delivered(emulator: &Emulator) -> (Vec<Vec<u8>>, usize) {
    let uploads = emulator.uploads();
    let mut records: Vec<Vec<u8>> = uploads
        .iter()
        .flat_map(|u| u.records_decompressed().unwrap())
        .collect();
    records.sort();
    (records, uploads.len())
}

/// Asserts that the records made by [`leef`] for `stream` with numbers `0..count` each
/// arrived exactly once, and nothing else: by their record ids, so that gigabytes of
/// records need not be held in memory.
pub fn assert_ids_exactly_once(emulator: &Emulator, stream: &str, count: u64) {
    let mut seen = vec![0u8; count as usize];
    let needle = format!("recordid={stream}-");
    let mut foreign = 0;
    for upload in emulator.uploads() {
        for record in upload.records_decompressed().unwrap() {
            let id = memchr::memmem::find(&record, needle.as_bytes())
                .map(|at| &record[at + needle.len()..])
                .and_then(|rest| rest.split(|&b| b == b'\t').next())
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
            match id {
                Some(n) if n < seen.len() => seen[n] = seen[n].saturating_add(1),
                _ => foreign += 1,
            }
        }
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let doubled = seen.iter().filter(|&&c| c > 1).count();
    assert_eq!(
        (missing, doubled, foreign),
        (0, 0, 0),
        "of {count} records: missing, duplicated, foreign"
    );
}

/// Asserts that MCAS read every line uploaded into the data source `NSS` with the parser
/// its `source` names, and ignored none as older than 90 days: what the data source shows
/// is what was sent.
pub fn assert_all_read(emulator: &Emulator) {
    let counts = emulator.line_counts("NSS");
    assert!(counts.lines > 0, "nothing was uploaded into NSS");
    assert_eq!(
        (counts.unparsed, counts.ignored_old),
        (0, 0),
        "of {} lines uploaded: not read by the parser (\"The log format doesn't match\"), ignored as older than 90 days",
        counts.lines
    );
}

/// Asserts that `expected` arrived exactly once, nothing else.
pub fn assert_exactly_once(emulator: &Emulator, mut expected: Vec<Vec<u8>>) {
    expected.sort();
    let (got, _) = delivered(emulator);
    if got != expected {
        let mut seen = std::collections::BTreeMap::new();
        for r in &got {
            *seen.entry(r.clone()).or_insert(0) += 1;
        }
        let dups = seen.values().filter(|&&c| c > 1).count();
        let missing = expected.iter().filter(|r| !seen.contains_key(*r)).count();
        panic!(
            "{} records expected, {} delivered: {missing} missing, {dups} duplicated",
            expected.len(),
            got.len()
        );
    }
}

/// Waits until the emulator holds as many records as `expected` (at most `within`) and
/// the agent has nothing left in flight ([`Agent::wait_quiet`]), so that a record that
/// would arrive twice has arrived, then checks that each arrived exactly once; the agent's
/// log on failure.
pub async fn wait_exactly_once(
    world: &World,
    agent: &Agent,
    expected: Vec<Vec<u8>>,
    within: Duration,
) {
    world
        .emulator
        .wait_for_records(expected.len() as u64, within)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    agent.wait_quiet(Duration::from_secs(30)).await;
    assert_exactly_once(&world.emulator, expected);
}

/// Waits until the daemon whose runtime directory is `runtime_dir` (and whose pid is `pid`,
/// when given) has nothing in flight, as a status file written after the call says: every
/// record it read is in a sealed batch (`feed.records == spool.sealed_records`), the
/// uploader's last completed scan began after the last seal (`spool.scanned_sealed_records
/// == spool.sealed_records`, null before the first scan), and that scan found no sealed
/// batch waiting (`spool.batches ==
/// 0`, `spool.delivered_undeleted == 0`). From then on nothing more can reach MCAS until
/// new records come. It watches the agent only (a request the emulator is still delaying
/// may land later), and it never returns for a daemon whose disk refused a TCP batch: the
/// records of such a batch reach the spool by salvage, outside `spool.sealed_records`.
/// The last status, or why not within `within`.
pub async fn wait_quiet(
    runtime_dir: &Path,
    pid: Option<u32>,
    within: Duration,
) -> Result<serde_json::Value, String> {
    let path = runtime_dir.join("status.json");
    let since = std::time::SystemTime::now();
    let deadline = Instant::now() + within;
    let mut last_written = None;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if written.is_some_and(|w| w > since) && written != last_written {
            last_written = written;
            if let Some(status) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            {
                let spool = &status["spool"];
                let quiet = pid.is_none_or(|pid| status["pid"] == pid)
                    && status["feed"]["records"] == spool["sealed_records"]
                    && spool["scanned_sealed_records"] == spool["sealed_records"]
                    && spool["batches"] == 0
                    && spool["delivered_undeleted"] == 0;
                last = status;
                if quiet {
                    return Ok(last);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the agent never went quiet within {within:?}; last status: {last}"
    ))
}

/// How many times a kill -9 test kills the agent: `usual` (what the test needs to meet its
/// windows), or NSS_SOAK_KILLS for every such test (scripts/soak).
pub fn kill_cycles(usual: usize) -> usize {
    std::env::var("NSS_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usual)
}

/// The files in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
