//! Commands run as root (`sudo nss sync-now`, `sudo nss start`) act as the daemon's user,
//! so that every file they leave in the state and runtime directories belongs to it and
//! the daemon, running as that user, can still replace them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use nix::unistd::{Gid, Uid, User};

/// The user the packaged unit runs the daemon as, for when the state directory does not
/// exist yet.
const SERVICE_USER: &str = "nss-agent";

/// Whose files the state directory holds: its owner, or where it does not exist yet, the
/// service user if there is one. `None` when that is root (nothing to change).
pub fn state_owner(state_dir: &Path) -> Option<(Uid, Gid)> {
    let owner = match std::fs::metadata(state_dir) {
        Ok(meta) => (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid())),
        Err(_) => {
            let user = User::from_name(SERVICE_USER).ok()??;
            (user.uid, user.gid)
        }
    };
    (!owner.0.is_root()).then_some(owner)
}

/// When run as root, becomes the owner of `state_dir` (see [`state_owner`]) for the rest
/// of the process: supplementary groups, group, then user, so that there is no way back.
/// Does nothing for another user, or when the state belongs to root.
pub fn act_as_state_owner(state_dir: &Path) -> anyhow::Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let Some((uid, gid)) = state_owner(state_dir) else {
        return Ok(());
    };
    nix::unistd::setgroups(&[gid]).context("cannot drop the supplementary groups")?;
    nix::unistd::setgid(gid).with_context(|| format!("cannot become group {gid}"))?;
    nix::unistd::setuid(uid).with_context(|| format!("cannot become user {uid}"))?;
    Ok(())
}
