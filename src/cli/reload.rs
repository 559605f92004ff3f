//! `nss reload`: the running daemon reloads its configuration file, and this waits for the
//! outcome: exit 0 once the daemon runs with the new file, 78 with the daemon's reason
//! when it refused the file (it runs on with the previous one). The unit's `ExecReload=`,
//! so that `systemctl reload nss-agent` returns only then, and fails the same way.

use anyhow::{bail, Context};

use super::ConfigRefused;
use crate::config::Settings;
use crate::control::{self, Reply, Request};
use crate::pidfile;

/// Asks the daemon whose runtime directory `settings` names to reload, and prints the
/// outcome.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.paths.runtime_dir;
    let Some(pid) = pidfile::running(dir) else {
        bail!(
            "the daemon is not running (no live pidfile in {}): `sudo nss start` starts it with the file as it is",
            dir.display()
        );
    };
    let reply = control::ask(dir, &Request::Reload)
        .with_context(|| format!("cannot ask the running daemon (pid {pid}) to reload"))?;
    match reply {
        Reply::Reloaded => {
            println!(
                "NSS service (pid {pid}) reloaded {}",
                settings.path.display()
            );
            Ok(())
        }
        Reply::ReloadRefused { message } => Err(ConfigRefused(format!(
            "the daemon (pid {pid}) refused {} and runs on with the previous configuration: {message}",
            settings.path.display()
        ))
        .into()),
        Reply::Failed { message, .. } => bail!("the daemon (pid {pid}) did not reload: {message}"),
        Reply::Synced { .. } => bail!("the daemon answered a reload with a sync"),
    }
}
