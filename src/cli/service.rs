//! `nss start | stop | restart`: through systemd where it runs the system and the unit is
//! installed, else through the pidfile in the runtime directory (containers, development
//! machines, tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::Settings;
use crate::pidfile;
use crate::status_report;

/// The systemd unit of the daemon.
const UNIT: &str = "nss-agent.service";

/// How long `start` waits for the daemon to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon's output when started without systemd, in the runtime directory.
const LOG_FILE: &str = "nss-agent.log";

/// What `nss` was asked to do with the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// Carries out `action`.
pub fn run(settings: &Settings, action: Action) -> anyhow::Result<()> {
    if systemd_manages_the_daemon() {
        if action != Action::Stop {
            for warning in socket_bind_warnings(settings) {
                eprintln!("warning: {warning}");
            }
        }
        return systemctl(action);
    }
    match action {
        Action::Start => start(settings),
        Action::Stop => stop(settings),
        Action::Restart => {
            stop(settings)?;
            start(settings)
        }
    }
}

/// Whether systemd runs the system and the unit is installed.
fn systemd_manages_the_daemon() -> bool {
    if std::env::var_os("NSS_AGENT_NO_SYSTEMD").is_some() {
        return false;
    }
    Path::new("/run/systemd/system").is_dir()
        && [
            "/etc/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ]
        .iter()
        .any(|dir| Path::new(dir).join(UNIT).exists())
}

fn systemctl(action: Action) -> anyhow::Result<()> {
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    };
    // For a Type=notify unit, start and restart return once the daemon said READY=1, or
    // fail when it did not.
    let status = Command::new("systemctl")
        .args([verb, UNIT])
        .status()
        .context("cannot run systemctl")?;
    if !status.success() {
        let _ = Command::new("systemctl")
            .args(["status", "--no-pager", "--lines=20", UNIT])
            .status();
        let failed = format!("systemctl {verb} {UNIT} failed (the lines above say why; `journalctl -u {UNIT}` has the rest)");
        // The daemon's own exit code: 78 is its configuration, which a script tells apart.
        if unit_property("ExecMainStatus").as_deref() == Some("78") {
            return Err(super::ConfigRefused(format!(
                "{failed}: the daemon refused its configuration (exit 78)"
            ))
            .into());
        }
        bail!("{failed}");
    }
    match action {
        Action::Stop => println!("NSS service stopped"),
        Action::Start | Action::Restart => {
            let pid = unit_property("MainPID").context("cannot run systemctl")?;
            println!("NSS service running with pid {pid}");
        }
    }
    Ok(())
}

/// The listen addresses the unit's `SocketBindAllow=` does not allow while its
/// `SocketBindDeny=` denies the rest, one warning each. systemd built with BPF (Debian 13's
/// 257) refuses such a bind with EPERM; Debian 12's 252 is built without and lets it
/// through: the warning is the same on both, so that a port moved on one still works
/// after an upgrade to the other.
fn socket_bind_warnings(settings: &Settings) -> Vec<String> {
    let (Some(allow), Some(deny)) = (
        unit_property("SocketBindAllow"),
        unit_property("SocketBindDeny"),
    ) else {
        return Vec::new();
    };
    if deny.is_empty() {
        return Vec::new();
    }
    [
        ("feed.listen", settings.feed.listen),
        ("metrics.listen", settings.metrics.listen),
    ]
    .into_iter()
    .filter_map(|(key, addr)| addr.map(|addr| (key, addr)))
    .filter(|(_, addr)| !bind_allowed(&allow, addr.port()))
    .map(|(key, addr)| {
        let port = addr.port();
        format!(
            "{key} = \"{addr}\": the unit's SocketBindAllow= does not allow port {port} (SocketBindDeny={deny}): systemd built with BPF (e.g. 257) refuses the bind with EPERM, Debian 12's 252 does not enforce it; allow the port in a drop-in: `sudo systemctl edit nss-agent`, then [Service] SocketBindAllow=tcp:{port}"
        )
    })
    .collect()
}

/// Whether `SocketBindAllow=` as `systemctl show` prints it allows a TCP bind of `port`.
/// systemd 252 prints one rule a line with no colon after the protocol (`tcp13010`); the
/// unit file's own spelling (`tcp:13010`, `ipv4:tcp:1000-2000`,
/// `any`) is taken too.
fn bind_allowed(allow: &str, port: u16) -> bool {
    allow.split_whitespace().any(|rule| {
        let rule = strip_word(rule, "ipv4")
            .or_else(|| strip_word(rule, "ipv6"))
            .unwrap_or(rule);
        if strip_word(rule, "udp").is_some() {
            return false;
        }
        let ports = strip_word(rule, "tcp").unwrap_or(rule);
        match ports {
            "" | "any" => true,
            _ => match ports.split_once('-') {
                Some((low, high)) => match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&port),
                    _ => false,
                },
                None => ports.parse::<u16>() == Ok(port),
            },
        }
    })
}

/// `text` without its leading `word` and the colon after it, if it starts with `word`.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(word)?;
    Some(rest.strip_prefix(':').unwrap_or(rest))
}

/// One property of the unit, as `systemctl show` gives it; `None` if systemctl fails.
pub(super) fn unit_property(name: &str) -> Option<String> {
    let output = Command::new("systemctl")
        .args(["show", &format!("--property={name}"), "--value", UNIT])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Starts the daemon detached (its own session, output to the runtime directory's log)
/// and waits until it is ready, or shows why it stopped.
fn start(settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.paths.runtime_dir;
    if let Some(pid) = pidfile::running(dir) {
        println!("NSS service running with pid {pid}");
        return Ok(());
    }
    // Checked here too, so that a bad configuration is refused with its exit code (78)
    // instead of as a daemon that died.
    settings.mcas_target()?;
    // `sudo nss start`: the log and everything the daemon writes stay its user's.
    crate::privilege::act_as_state_owner(&settings.paths.state_dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the nss binary")?;
    let mut command = Command::new(exe);
    command
        .arg("--config")
        .arg(&settings.path)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session of its own: the daemon outlives the shell that started it.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().context("cannot start the daemon")?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(exit) = child.try_wait()? {
            bail!(
                "the daemon stopped at start ({exit}); its last lines:\n{}",
                tail(&log_path, 10)
            );
        }
        if status_report::read(dir).is_ok_and(|r| r.running && r.pid == Some(pid)) {
            println!("NSS service running with pid {pid}");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon (pid {pid}) did not get ready in {}s; its last lines:\n{}",
                START_TIMEOUT.as_secs(),
                tail(&log_path, 10)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the daemon to stop (SIGTERM) and waits until it is gone.
fn stop(settings: &Settings) -> anyhow::Result<()> {
    let Some(pid) = pidfile::running(&settings.paths.runtime_dir) else {
        println!("NSS service is not running");
        return Ok(());
    };
    check_is_the_daemon(pid, &settings.paths.state_dir)?;
    let target = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("cannot signal the daemon (pid {pid})"))?;
    // Its shutdown: the feed's drain, sealing, the upload in flight, and some slack.
    let deadline = Instant::now() + settings.upload.shutdown_timeout + Duration::from_secs(30);
    while nix::sys::signal::kill(target, None).is_ok() {
        if Instant::now() > deadline {
            bail!("the daemon (pid {pid}) did not stop in time; `kill -9 {pid}` loses nothing that is in the spool");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("NSS service stopped");
    Ok(())
}

/// Refuses to signal `pid` unless it runs this program (`/proc/PID/exe`) as the user the
/// daemon runs as: the owner of the state directory, or this command's user. A pidfile
/// whose number was reused by another process must not get that process killed.
fn check_is_the_daemon(pid: u32, state_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let exe = std::fs::read_link(proc_dir.join("exe")).with_context(|| {
        format!("cannot see which program pid {pid} of the pidfile runs; not signalling it")
    })?;
    let ours = std::env::current_exe().context("cannot find the nss binary")?;
    // A binary replaced by an upgrade shows as "<path> (deleted)".
    let exe_text = exe.to_string_lossy();
    let same = exe == ours
        || same_file(&exe, &ours)
        || exe_text.strip_suffix(" (deleted)") == Some(&*ours.to_string_lossy());
    if !same {
        bail!(
            "pid {pid} of the pidfile runs {}, not {}: the pidfile is stale; not signalling it",
            exe.display(),
            ours.display()
        );
    }
    let uid = std::fs::metadata(&proc_dir)
        .with_context(|| format!("cannot see who runs pid {pid}"))?
        .uid();
    // The daemon runs as the owner of the state directory (root where root owns it).
    let daemon_user = crate::privilege::state_owner(state_dir).map_or(0, |(uid, _)| uid.as_raw());
    if uid != daemon_user && uid != nix::unistd::Uid::current().as_raw() {
        bail!("pid {pid} of the pidfile runs as uid {uid}, not as the daemon's user (uid {daemon_user}); not signalling it");
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The last `lines` lines of a file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::bind_allowed;

    #[test]
    fn socket_bind_rules_as_systemctl_shows_them() {
        assert!(bind_allowed("tcp:13010 tcp:9713", 13010));
        assert!(!bind_allowed("tcp:13010 tcp:9713", 13011));
        assert!(bind_allowed("ipv4:tcp:13000-13100", 13011));
        assert!(!bind_allowed("udp:13011", 13011));
        assert!(bind_allowed("any", 1));
        assert!(bind_allowed("ipv6:tcp", 443));
        assert!(!bind_allowed("", 13010));
        // What systemd 252's `systemctl show --value` printed for the packaged unit.
        assert!(bind_allowed("tcp9713\ntcp13010", 13010));
        assert!(bind_allowed("tcp9713\ntcp13010", 9713));
        assert!(!bind_allowed("tcp9713\ntcp13010", 13011));
        assert!(bind_allowed("ipv4tcp13000-13100", 13011));
        assert!(!bind_allowed("udp13011", 13011));
    }
}
