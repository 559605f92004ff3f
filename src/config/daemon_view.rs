//! The files a configuration names, seen as the daemon will see them: as its user, and
//! inside the unit's sandbox (`ProtectHome=` hides `/root` and `/home`, `PrivateTmp=`
//! gives it a `/tmp` of its own). `nss configure-mcas` and `configure-zia` run as root,
//! who reads everything: without this check a file only root can reach would pass there
//! and stop the daemon at its next start.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Uid, User};

use super::{ConfigError, Settings};

/// The systemd unit of the daemon.
const UNIT: &str = "nss-agent.service";

/// Where the fix puts a file the daemon cannot read.
const FIX: &str = "keep it in /etc/nss-agent, root:nss-agent 0640 (`sudo install -m 0640 -o root -g nss-agent FILE /etc/nss-agent/`), and point the key there";

/// How the daemon sees the file system.
#[derive(Debug, Default)]
pub struct DaemonView {
    /// The user and group it runs as; `None` for root, who reads everything.
    identity: Option<(Uid, Gid)>,
    /// Directories whose content it cannot see, with the unit setting that hides them.
    hidden: Vec<(PathBuf, String)>,
}

/// Checks that the daemon can read every file `settings` names for it (secrets, the
/// Entra certificate, the ZIA private key, extra CA files), as the installed unit runs
/// it: a [`ConfigError`] naming the key and the fix otherwise.
pub fn check_daemon_reads(settings: &Settings) -> Result<(), ConfigError> {
    DaemonView::of_the_service(&settings.paths.state_dir).check(settings)
}

impl DaemonView {
    /// The view of the installed unit (its `User=`, `ProtectHome=`, `PrivateTmp=` and
    /// `InaccessiblePaths=`, drop-ins included, as `systemctl show` reports them); without
    /// systemd, the owner of the state directory with no sandbox.
    pub fn of_the_service(state_dir: &Path) -> DaemonView {
        match unit_properties(&[
            "LoadState",
            "User",
            "ProtectHome",
            "PrivateTmp",
            "InaccessiblePaths",
        ]) {
            Some(props) if props.get("LoadState") == Some("loaded") => DaemonView::of_unit(&props),
            _ => DaemonView {
                identity: if Uid::effective().is_root() {
                    crate::privilege::state_owner(state_dir)
                } else {
                    None
                },
                hidden: Vec::new(),
            },
        }
    }

    fn of_unit(props: &Properties) -> DaemonView {
        let identity = props
            .get("User")
            .filter(|user| !user.is_empty() && *user != "root")
            .and_then(|name| User::from_name(name).ok().flatten())
            .map(|user| (user.uid, user.gid));
        let mut hidden = Vec::new();
        // "read-only" leaves the files readable; "yes" and "tmpfs" hide them.
        if let Some(mode @ ("yes" | "tmpfs")) = props.get("ProtectHome") {
            for dir in ["/home", "/root", "/run/user"] {
                hidden.push((PathBuf::from(dir), format!("ProtectHome={mode}")));
            }
        }
        if props.get("PrivateTmp") == Some("yes") {
            for dir in ["/tmp", "/var/tmp"] {
                hidden.push((PathBuf::from(dir), "PrivateTmp=yes".to_string()));
            }
        }
        for dir in props
            .get("InaccessiblePaths")
            .unwrap_or_default()
            .split_whitespace()
        {
            // A leading "-" only says a missing path is no error.
            let dir = dir.trim_start_matches('-');
            hidden.push((PathBuf::from(dir), format!("InaccessiblePaths={dir}")));
        }
        DaemonView { identity, hidden }
    }

    /// Checks every file `settings` names for the daemon.
    pub fn check(&self, settings: &Settings) -> Result<(), ConfigError> {
        let (mcas, zia) = (&settings.mcas, &settings.zia);
        let files = [
            ("mcas.token_file", &mcas.token_file),
            ("mcas.client_secret_file", &mcas.client_secret_file),
            ("mcas.certificate_file", &mcas.certificate_file),
            ("mcas.ca_file", &mcas.ca_file),
            ("zia.password_file", &zia.password_file),
            ("zia.api_key_file", &zia.api_key_file),
            ("zia.client_secret_file", &zia.client_secret_file),
            ("zia.private_key_file", &zia.private_key_file),
            ("zia.ca_file", &zia.ca_file),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                self.check_file(key, path)?;
            }
        }
        Ok(())
    }

    fn check_file(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        // Both as written and with its links resolved: the daemon cannot walk into a
        // hidden directory, nor follow a link that ends in one.
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        for (dir, setting) in &self.hidden {
            if path.starts_with(dir) || resolved.starts_with(dir) {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "the daemon cannot read {}: the unit's {setting} hides {} from it; {FIX}",
                        path.display(),
                        dir.display()
                    ),
                ));
            }
        }
        if let Some((uid, gid)) = self.identity {
            if let Err(errno) = readable_as(path, uid, gid) {
                let user = User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("uid {uid}"), |u| u.name);
                return Err(ConfigError::new(
                    key,
                    format!(
                        "the daemon, running as {user}, cannot read {}: {}; {FIX}",
                        path.display(),
                        errno.desc()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Opens `path` for reading in a child process that has become `uid` and `gid` (no
/// supplementary groups beyond it, as systemd runs the daemon's system user): the kernel's
/// answer, directories on the way included, instead of a reading of mode bits.
fn readable_as(path: &Path, uid: Uid, gid: Gid) -> Result<(), Errno> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // The child only makes system calls (no allocation, no lock): safe after fork even
    // where other threads run.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            let code = match open_as(&c_path, uid, gid) {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            };
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, code) => Err(Errno::from_raw(code)),
            _ => Err(Errno::EINTR),
        },
    }
}

fn open_as(path: &CString, uid: Uid, gid: Gid) -> Result<(), Errno> {
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)?;
    let fd = nix::fcntl::open(
        path.as_c_str(),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )?;
    drop(fd);
    Ok(())
}

/// `systemctl show` of the unit: property names and values.
struct Properties(Vec<(String, String)>);

impl Properties {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The unit's `names` properties; `None` where systemd does not run the system.
fn unit_properties(names: &[&str]) -> Option<Properties> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let mut command = Command::new("systemctl");
    command.arg("show");
    for name in names {
        command.arg(format!("--property={name}"));
    }
    let output = command.arg(UNIT).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(Properties(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        Properties(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_sandbox_hides_home_and_tmp() {
        let view = DaemonView::of_unit(&props(&[
            ("User", ""),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("InaccessiblePaths", "-/srv/secret"),
        ]));
        let mut settings = Settings::default();
        settings.mcas.ca_file = Some(PathBuf::from("/root/app.pem"));
        let error = view.check(&settings).unwrap_err();
        assert_eq!(error.key, "mcas.ca_file");
        assert!(
            error.problem.contains("ProtectHome=yes hides /root"),
            "{error}"
        );
        assert!(error.problem.contains("/etc/nss-agent"), "{error}");
        settings.mcas.ca_file = Some(PathBuf::from("/tmp/ca.pem"));
        assert!(view
            .check(&settings)
            .unwrap_err()
            .problem
            .contains("PrivateTmp=yes"));
        settings.mcas.ca_file = Some(PathBuf::from("/srv/secret/ca.pem"));
        assert!(view.check(&settings).is_err());
        settings.mcas.ca_file = Some(PathBuf::from("/etc/hostname"));
        assert!(view.check(&settings).is_ok());
    }

    #[test]
    fn a_read_only_home_stays_readable() {
        let view = DaemonView::of_unit(&props(&[("ProtectHome", "read-only")]));
        assert!(view.hidden.is_empty());
    }

    /// Root reads a 0600 file; the daemon's user does not.
    #[test]
    fn a_file_only_root_reads_is_refused_for_another_user() {
        if !Uid::effective().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let nobody = (Uid::from_raw(65534), Gid::from_raw(65534));
        assert_eq!(readable_as(&file, nobody.0, nobody.1), Err(Errno::EACCES));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_as(&file, nobody.0, nobody.1), Ok(()));
    }
}
