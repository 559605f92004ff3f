//! A configuration's resources, prepared before the running pipeline is touched, so that
//! a reload that fails leaves the agent as it was.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::category_sync::SyncRequests;
use crate::config::{format_size, ConfigError, McasTarget, Settings};
use crate::feed::checkpoint::CheckpointStore;
use crate::feed::tcp::{self, Connections};
use crate::feed::READ_SIZE;
use crate::mcas::{ApiRateLimiter, McasClient};
use crate::memory::{self, MemoryBudget};
use crate::spool::Spool;
use crate::status_report::Counters;
use crate::zia::ZiaClient;

/// What lives as long as the process, across reloads: the counters, the API rate
/// limiter's history (a reload must not grant a fresh minute of calls), the queue of
/// syncs asked for on the control socket.
pub(super) struct Shared {
    pub(super) counters: Arc<Counters>,
    pub(super) limiter: Arc<ApiRateLimiter>,
    /// Taken by each pipeline's sync task, and given back when it stops.
    pub(super) sync_requests: std::sync::Mutex<Option<SyncRequests>>,
    /// The feed's TCP connections, kept open across reloads.
    pub(super) connections: Arc<Connections>,
}

/// A configuration with everything it needs made ready: checked, the HTTP client built
/// (its CA bundle parsed), the spool and checkpoints opened, the listeners bound. A reload
/// makes one of these while the running pipeline goes on, and touches that pipeline only
/// once this succeeded.
pub(super) struct Prepared {
    pub(super) settings: Settings,
    /// The memory budget `memory.limit` comes to on this machine, in bytes.
    pub(super) memory_limit: u64,
    pub(super) target: McasTarget,
    pub(super) client: McasClient,
    /// The ZIA client, when `[zia]` is set.
    pub(super) zia: Option<Arc<ZiaClient>>,
    pub(super) spool: Arc<Spool>,
    pub(super) spool_dir: PathBuf,
    pub(super) checkpoints: Arc<CheckpointStore>,
    pub(super) feed: Option<(SocketAddr, Arc<TcpListener>)>,
    pub(super) metrics: Option<(SocketAddr, Arc<TcpListener>)>,
}

impl Prepared {
    /// Prepares `settings`. Resources `current` already holds for the same address or
    /// directory are shared with it (a listener on the same port cannot be bound twice).
    pub(super) async fn new(
        settings: Settings,
        current: Option<&Prepared>,
        shared: &Shared,
    ) -> anyhow::Result<Prepared> {
        let target = settings.mcas_target()?;
        let memory_limit = MemoryBudget::resolve(settings.memory.limit, memory::ram_total());
        check_record_fits(settings.feed.max_record_bytes, memory_limit)?;
        for (key, dir) in [
            ("paths.state_dir", &settings.paths.state_dir),
            ("paths.runtime_dir", &settings.paths.runtime_dir),
        ] {
            std::fs::create_dir_all(dir).map_err(|e| ConfigError {
                key: key.to_string(),
                problem: format!(
                    "cannot create {}: {e}; point it at a writable directory",
                    dir.display()
                ),
            })?;
        }
        let http = crate::https::client(
            target.ca_file.as_deref(),
            "mcas.ca_file",
            target.proxy.as_ref(),
        )?;
        let client = McasClient::new(
            &target,
            http,
            shared.limiter.clone(),
            settings.upload.timeout,
            shared.counters.mcas.clone(),
        )?;
        let zia = match settings.zia_target()? {
            Some(target) => Some(Arc::new(
                ZiaClient::new(&target)
                    .map_err(|e| ConfigError {
                        key: "zia.ca_file".to_string(),
                        problem: e.to_string(),
                    })?
                    // The counters of the process, kept across reloads.
                    .with_counters(shared.counters.sync.zia.client.clone()),
            )),
            None => None,
        };
        let spool_dir = settings.spool_dir();
        let spool = match current.filter(|c| c.spool_dir == spool_dir) {
            Some(current) => current.spool.clone(),
            None => Arc::new(Spool::prepare(&spool_dir).map_err(|e| ConfigError {
                key: "paths.state_dir".to_string(),
                problem: format!("cannot open the spool in {}: {e}", spool_dir.display()),
            })?),
        };
        let checkpoint_dir = settings.paths.state_dir.join("checkpoints");
        let checkpoints =
            Arc::new(
                CheckpointStore::open(&checkpoint_dir).map_err(|e| ConfigError {
                    key: "paths.state_dir".to_string(),
                    problem: format!(
                        "cannot open the checkpoint directory {}: {e}",
                        checkpoint_dir.display()
                    ),
                })?,
            );
        let feed = match settings.feed.listen {
            None => None,
            Some(addr) => Some(match current.and_then(|c| c.feed.as_ref()) {
                Some((old, listener)) if *old == addr => (addr, listener.clone()),
                _ => (
                    addr,
                    Arc::new(tcp::bind(addr).await.map_err(|e| ConfigError {
                        key: "feed.listen".to_string(),
                        problem: format!(
                            "cannot listen on {addr}: {e}: {}",
                            bind_hint(&e, addr, "is another receiver using the port?")
                        ),
                    })?),
                ),
            }),
        };
        let metrics = match settings.metrics.listen {
            None => None,
            Some(addr) => Some(match current.and_then(|c| c.metrics.as_ref()) {
                Some((old, listener)) if *old == addr => (addr, listener.clone()),
                _ => (
                    addr,
                    Arc::new(TcpListener::bind(addr).await.map_err(|e| ConfigError {
                        key: "metrics.listen".to_string(),
                        problem: format!(
                            "cannot serve metrics on {addr}: {e}: {}",
                            bind_hint(&e, addr, "is the port taken? \"\" disables metrics")
                        ),
                    })?),
                ),
            }),
        };
        Ok(Prepared {
            settings,
            memory_limit,
            target,
            client,
            zia,
            spool,
            spool_dir,
            checkpoints,
            feed,
            metrics,
        })
    }
}

/// What to do about a failed bind. EPERM is the unit's `SocketBindDeny=any` (enforced by
/// systemd built with BPF, e.g. 257; Debian 12's 252 does not): the port needs its own
/// `SocketBindAllow=` in a drop-in.
fn bind_hint(error: &std::io::Error, addr: std::net::SocketAddr, otherwise: &str) -> String {
    if error.raw_os_error() == Some(nix::libc::EPERM) {
        format!(
            "the unit allows binding only its SocketBindAllow= ports: add a drop-in with `sudo systemctl edit nss-agent`: [Service] SocketBindAllow=tcp:{}",
            addr.port()
        )
    } else {
        otherwise.to_string()
    }
}

/// Refuses a record limit whose record (with the read around it) would not fit in the
/// quarter of the budget one long unfinished record may hold: such a record could never
/// be completed, and its input would wait for ever.
fn check_record_fits(max_record_bytes: u64, memory_limit: u64) -> Result<(), ConfigError> {
    let pool = MemoryBudget::unfinished_quarter(memory_limit);
    let needs = max_record_bytes + READ_SIZE as u64;
    if needs <= pool {
        return Ok(());
    }
    Err(ConfigError {
        key: "feed.max_record_bytes".to_string(),
        problem: format!(
            "{} (plus a read of {}) does not fit in the quarter of memory.limit ({} here) that one unfinished record may hold: lower feed.max_record_bytes to at most {} or raise memory.limit to at least {}",
            format_size(max_record_bytes),
            format_size(READ_SIZE as u64),
            format_size(memory_limit),
            format_size(pool.saturating_sub(READ_SIZE as u64)),
            format_size(needs * 4),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_must_fit_in_a_quarter_of_the_budget() {
        assert!(check_record_fits(1 << 20, 256 << 20).is_ok());
        assert!(check_record_fits(63 << 20, 256 << 20).is_ok());
        let error = check_record_fits(64 << 20, 256 << 20).unwrap_err();
        assert_eq!(error.key, "feed.max_record_bytes");
        assert!(error.problem.contains("memory.limit"), "{}", error.problem);
    }
}
