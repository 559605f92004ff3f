//! One running pipeline: the inputs, the batch writers, the uploader, the sync, the status
//! and the metrics of one configuration, started from it ([`RunningPipeline::start`]) and
//! stopped in the order that loses nothing ([`RunningPipeline::shutdown`]): inputs first,
//! then the writers sealing what they hold, then the upload in flight, then the rest.
//! Every task it spawns is tracked and awaited by the shutdown.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::notify::{notify_systemd, publish_status, Reports};
use super::prepare::{Prepared, Shared};
use super::Stopped;
use crate::batch::BatchWriters;
use crate::category_sync::{self, CategoryStore};
use crate::config::{ConfigError, Limit};
use crate::feed::checkpoint::{CheckpointStore, Claim};
use crate::feed::{tail, tcp};
use crate::mcas::data_source::{self, WatchCounters};
use crate::mcas::log_format::Chosen;
use crate::memory::{self, meets_ram_floor, MemoryBudget, RAM_FLOOR};
use crate::metrics;
use crate::spool::{Recovery, Spool};
use crate::status_report::McasReport;
use crate::upload::counters::UploaderCounters;
use crate::upload::{MergeLimits, Uploader};
use crate::versioned::{NewerVersion, ReadError};

/// A pipeline started and not yet shut down.
pub(super) struct RunningPipeline {
    /// The feed's tasks (the TCP receiver, the tails), and what stops them.
    inputs: TaskTracker,
    stop_inputs: CancellationToken,
    writers: BatchWriters,
    upload_task: JoinHandle<()>,
    stop_uploads: CancellationToken,
    /// Cancels the upload in flight when it outlasts `upload_shutdown`.
    abort_uploads: CancellationToken,
    upload_shutdown: Duration,
    /// Gives back the queue of sync-now requests when it ends.
    sync_task: JoinHandle<crate::category_sync::SyncRequests>,
    data_source_task: JoinHandle<()>,
    stop_sync: CancellationToken,
    status_task: JoinHandle<()>,
    /// Stops the status file, the metrics and systemd's notifications, last.
    stop_status: CancellationToken,
    /// Every task but the inputs.
    tasks: TaskTracker,
}

impl RunningPipeline {
    /// Recovers what a killed run left in the spool, then starts every stage of
    /// `prepared`, with the counters and connections of `shared`.
    pub(super) async fn start(
        prepared: &Prepared,
        shared: &Shared,
    ) -> anyhow::Result<RunningPipeline> {
        let settings = &prepared.settings;
        let target = &prepared.target;
        let counters = &shared.counters;
        shared.limiter.set_limits(
            settings.upload.api_calls_per_minute,
            settings.upload.min_api_calls_per_minute,
        );
        let spool = prepared.spool.clone();
        let spool_dir = &prepared.spool_dir;
        // Before anything is read: what a killed run left unsealed is salvaged or let go, and
        // the checkpoints catch up with batches sealed right before the crash. Disk work, on
        // a blocking thread.
        let recovery = {
            let (spool, level, checkpoints) = (
                spool.clone(),
                settings.batch.gzip_level,
                prepared.checkpoints.clone(),
            );
            match tokio::task::spawn_blocking(move || recover_spool(&spool, level, &checkpoints))
                .await
                .context("spool recovery")?
            {
                Ok(recovery) => recovery,
                // A configuration error (exit 78): systemd does not restart into it again.
                Err(error) if NewerVersion::in_io(&error).is_some() => {
                    return Err(ConfigError::new("paths.state_dir", error.to_string()).into())
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!(
                            "cannot recover the unsealed batches in {}",
                            spool_dir.display()
                        )
                    })
                }
            }
        };
        if recovery != Default::default() {
            tracing::info!(
                salvaged_batches = recovery.salvaged_batches,
                salvaged_records = recovery.salvaged_records,
                discarded_file_batches = recovery.discarded,
                settled_claims = recovery.settled_claims,
                "recovered the unsealed batches of an interrupted run"
            );
        }

        let ram_total = memory::ram_total();
        let budget = MemoryBudget::new(prepared.memory_limit);
        if let Some(ram) = ram_total.filter(|&r| !meets_ram_floor(r)) {
            tracing::warn!(
                ram_gb = format!("{:.1}", ram as f64 / 1e9),
                "this appliance has less than the {} GB of RAM the NSS MCAS feed needs: give the VM at least 8 GB",
                RAM_FLOOR / 1_000_000_000
            );
        }

        let spool_cap = spool_cap(settings.spool.max_bytes, spool_dir, spool.ready_bytes());
        counters.spool.max_bytes.set(spool_cap);
        let (sink, writers) = BatchWriters::start(
            &settings.batch,
            spool_cap,
            budget.clone(),
            spool.clone(),
            counters.spool.clone(),
            counters.arrivals.clone(),
        )
        .context("cannot start the batch writers")?;

        let inputs = TaskTracker::new();
        let stop_inputs = CancellationToken::new();
        let input_count = settings.feed.max_connections + settings.feed.files.len() as u64;
        // The connections that stayed open across a reload hand their records here now.
        shared.connections.attach(tcp::Target {
            inputs: input_count,
            sink: sink.clone(),
            max_record_bytes: settings.feed.max_record_bytes,
            max_connections: settings.feed.max_connections,
            partial_timeout: settings.feed.partial_timeout,
        });
        if let Some((addr, listener)) = &prepared.feed {
            tracing::info!(%addr, "receiving the NSS feed");
            inputs.spawn(
                shared
                    .connections
                    .clone()
                    .accept_connections(listener.clone(), stop_inputs.clone()),
            );
        }
        for path in &settings.feed.files {
            let tail = tail::Tail {
                path: path.clone(),
                sink: sink.clone(),
                max_record_bytes: settings.feed.max_record_bytes,
                counters: counters.feed.clone(),
                checkpoints: prepared.checkpoints.clone(),
                inputs: input_count,
            };
            inputs.spawn(tail.follow(stop_inputs.clone()));
        }
        inputs.close();
        // The inputs hold the only senders now: when they end, the writers seal and stop.
        drop(sink);

        // Every other task of this pipeline: awaited before the next pipeline starts.
        let tasks = TaskTracker::new();
        let stop_uploads = CancellationToken::new();
        let abort_uploads = CancellationToken::new();
        let stop_sync = CancellationToken::new();
        counters.sync.zia.enabled.set(prepared.zia.is_some());
        let sync_requests = shared
            .sync_requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .unwrap_or_else(|| {
                // The last sync task ended without giving the queue back (it panicked):
                // sync-now is refused, the scheduled syncs go on.
                tracing::error!("the queue of sync-now requests was lost; nss sync-now cannot reach the daemon until it restarts");
                tokio::sync::mpsc::channel(1).1
            });
        let sync_task = tasks.spawn(category_sync::run(
            prepared.client.clone(),
            prepared.zia.clone(),
            CategoryStore::in_state_dir(&settings.paths.state_dir),
            settings.sync.clone(),
            counters.sync.clone(),
            sync_requests,
            stop_sync.clone(),
        ));
        let (chooser, log_format) = Chosen::new(&target.source);
        let data_source_task = tasks.spawn(data_source::watch(
            prepared.client.clone(),
            target.data_source.clone(),
            target.source.clone(),
            chooser,
            settings.upload.auth_retry,
            WatchCounters {
                seen: counters.data_source.clone(),
                last_upload: counters.upload.last_success.clone(),
                started: counters.started,
            },
            stop_sync.clone(),
        ));
        let uploader = Uploader::new(
            prepared.client.clone(),
            spool.clone(),
            UploaderCounters {
                upload: counters.upload.clone(),
                spool: counters.spool.clone(),
                data_source: counters.data_source.clone(),
                arrivals: counters.arrivals.clone(),
            },
            settings.upload.clone(),
            target,
            log_format,
        )
        .merge_up_to(MergeLimits {
            // A busy ceiling at the quiet limit keeps every upload one batch as sealed.
            max_raw_bytes: if settings.batch.busy_max_bytes > settings.batch.max_bytes {
                settings.batch.busy_max_bytes
            } else {
                0
            },
            level: settings.batch.gzip_level,
        });
        let upload_task = tasks.spawn(uploader.run(stop_uploads.clone(), abort_uploads.clone()));

        let reports = Reports {
            counters: counters.clone(),
            mcas: McasReport {
                domain: Some(target.domain.clone()),
                data_source: target.data_source.clone(),
                token: Some(target.credential.masked()),
                auth: Some(target.credential.kind().to_string()),
                ..Default::default()
            },
            budget: budget.clone(),
            ram_total: ram_total.unwrap_or(0),
        };
        let stop_status = CancellationToken::new();
        if let Some((_, listener)) = &prepared.metrics {
            let reports = reports.clone();
            tasks.spawn(metrics::answer_scrapes(
                listener.clone(),
                move || reports.report(),
                stop_status.clone(),
            ));
        }
        let reports_for_notify = reports.clone();
        let status_task = tasks.spawn(publish_status(
            settings.paths.runtime_dir.clone(),
            reports,
            stop_status.clone(),
        ));

        tasks.spawn(notify_systemd(
            writers.heartbeats(),
            reports_for_notify,
            stop_status.clone(),
        ));
        tasks.close();
        tracing::info!(domain = %target.domain, data_source = %target.data_source, memory_limit = budget.limit(), "nss-agent running");
        Ok(RunningPipeline {
            inputs,
            stop_inputs,
            writers,
            upload_task,
            stop_uploads,
            abort_uploads,
            upload_shutdown: settings.upload.shutdown_timeout,
            sync_task,
            data_source_task,
            stop_sync,
            status_task,
            stop_status,
            tasks,
        })
    }

    /// Stops the pipeline in order and waits for every task; `how` says whether the feed's
    /// connections close (an exit) or stay open for the next pipeline (a reload).
    pub(super) async fn shutdown(self, how: &Stopped, shared: &Shared) -> anyhow::Result<()> {
        let RunningPipeline {
            inputs,
            stop_inputs,
            writers,
            mut upload_task,
            stop_uploads,
            abort_uploads,
            upload_shutdown,
            sync_task,
            data_source_task,
            stop_sync,
            status_task,
            stop_status,
            tasks,
        } = self;
        stop_inputs.cancel();
        writers.stop_waiting();
        match how {
            Stopped::Exit => {
                tracing::info!("stopping the pipeline: closing the feed, sealing open batches");
                shared.connections.close().await;
                // The last clone of the sink goes: the writers can seal and stop.
                shared.connections.detach();
            }
            Stopped::Reload(..) => {
                // The feed's connections stay open: they stop handing records over until the
                // next pipeline is attached, and lose nothing.
                tracing::info!("stopping the pipeline for the reload: sealing open batches, keeping the feed's connections");
                shared.connections.detach();
            }
        }
        inputs.wait().await;
        tokio::task::spawn_blocking(move || writers.join())
            .await
            .context("batch writers")?;

        stop_uploads.cancel();
        if tokio::time::timeout(upload_shutdown, &mut upload_task)
            .await
            .is_err()
        {
            tracing::warn!("the upload in flight did not finish in time; it is cancelled and its batch stays in the spool");
            abort_uploads.cancel();
            // Awaited: no upload of this pipeline may run on beside the next one's.
            let _ = upload_task.await;
        }
        stop_sync.cancel();
        if let Ok(requests) = sync_task.await {
            *shared
                .sync_requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(requests);
        }
        let _ = data_source_task.await;
        stop_status.cancel();
        let _ = status_task.await;
        tasks.wait().await;
        Ok(())
    }
}

/// The smallest cap `spool.max_bytes = "auto"` chooses.
const SPOOL_AUTO_MIN: u64 = 64 << 20;

/// The spool's cap: given bytes, or for `auto` half the disk space the spool may use,
/// counting what it already holds (so that a restart during an outage does not halve it):
/// half of the free space plus the sealed batches, at least 64 MiB. The spool fills before
/// the disk does.
fn spool_cap(limit: Limit, dir: &Path, held: u64) -> u64 {
    match limit {
        Limit::Bytes(bytes) => bytes,
        Limit::Auto => match nix::sys::statvfs::statvfs(dir) {
            Ok(fs) => ((fs.blocks_available() * fs.fragment_size() + held) / 2).max(SPOOL_AUTO_MIN),
            Err(error) => {
                tracing::warn!(%error, "cannot see the free disk space; spool cap set to 1 GiB");
                1 << 30
            }
        },
    }
}

/// Recovers what a killed run left in the spool: unsealed batches, and the claims of
/// batches sealed before their checkpoints were saved, settled in `checkpoints`.
fn recover_spool(
    spool: &Spool,
    level: u32,
    checkpoints: &CheckpointStore,
) -> std::io::Result<Recovery> {
    let mut settle = |file: &Path, claims: &[u8]| -> std::io::Result<()> {
        for line in claims.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match Claim::read(file, line) {
                Ok(claim) => checkpoints.settle(&claim)?,
                Err(ReadError::Newer(newer)) => return Err(newer.into_io()),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "an unreadable claim of a sealed batch; its file may be read again")
                }
            }
        }
        Ok(())
    };
    spool.recover(level, &mut settle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_spool_cap_counts_what_the_spool_holds() {
        let dir = tempfile::tempdir().unwrap();
        let held = 10u64 << 30;
        let empty = spool_cap(Limit::Auto, dir.path(), 0);
        let holding = spool_cap(Limit::Auto, dir.path(), held);
        // Free space may move a little between the two looks (others write to the disk).
        let drift = 64u64 << 20;
        assert!(
            holding + drift >= empty + held / 2,
            "{holding} for a spool holding {held}, {empty} for an empty one"
        );
        assert_eq!(spool_cap(Limit::Bytes(5), dir.path(), held), 5);
    }
}
