//! The daemon: wires feed, batch writers, spool and uploader together, and shuts them
//! down in order so that nothing read is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::control;
use crate::feed::tcp;
use crate::mcas::ApiRateLimiter;
use crate::pidfile::PidLock;
use crate::status::Counters;

mod notify;
mod prepare;
mod running;

use prepare::{Prepared, Shared};
use running::RunningPipeline;

/// How often the status file is rewritten.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How the pipeline came to a stop.
enum Stopped {
    /// SIGTERM or SIGINT: the process ends.
    Exit,
    /// SIGHUP (or `nss reload`, whose answer waits in the sender) with a configuration
    /// whose resources are all ready: the pipeline starts again with them.
    Reload(Box<Prepared>, Option<ReloadReply>),
}

/// Where a reload asked for on the control socket gets its outcome.
type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP (or `nss reload`, on the control
/// socket) reloads the configuration: the new
/// settings are checked and their resources prepared while the pipeline runs on; only then
/// does the pipeline stop as at shutdown (nothing read is lost) and start again with them.
/// A configuration that fails any of this is refused with a log line naming the key, and
/// the agent runs on exactly as before.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime_dir = settings.paths.runtime_dir.clone();
    std::fs::create_dir_all(&runtime_dir).map_err(|e| ConfigError {
        key: "paths.runtime_dir".to_string(),
        problem: format!(
            "cannot create {}: {e}; point it at a writable directory",
            runtime_dir.display()
        ),
    })?;
    // Held until the daemon exits, across reloads.
    let _pidfile = PidLock::acquire(&runtime_dir)?;
    let (reload_sender, reload_receiver) = mpsc::channel(4);
    let mut signals = Signals::new(reload_receiver)?;
    let (sync_sender, sync_receiver) = mpsc::channel(4);
    let counters = Arc::new(Counters::default());
    let shared = Shared {
        connections: tcp::Connections::new(counters.feed.clone()),
        counters,
        limiter: Arc::new(ApiRateLimiter::adaptive(
            settings.upload.api_calls_per_minute,
            settings.upload.min_api_calls_per_minute,
        )),
        sync_requests: Arc::new(tokio::sync::Mutex::new(sync_receiver)),
    };
    let control_socket = control::bind(&runtime_dir)?;
    let stop_control = CancellationToken::new();
    let control_task = tokio::spawn(control::serve(
        control_socket,
        control::Handlers {
            syncs: sync_sender,
            reloads: reload_sender,
        },
        stop_control.clone(),
    ));

    let mut prepared = Prepared::new(settings, None, &shared).await?;
    let mut reload_reply = None;
    let result = loop {
        for warning in prepared.settings.warnings() {
            tracing::warn!("configuration: {warning}");
        }
        match run_pipeline(prepared, &shared, &mut signals, reload_reply.take()).await {
            Ok(Stopped::Exit) => break Ok(()),
            Ok(Stopped::Reload(next, reply)) => {
                tracing::info!(config = %next.settings.path.display(), "configuration reloaded: starting again with it");
                prepared = *next;
                reload_reply = reply;
            }
            Err(error) => break Err(error),
        }
    };
    // After a failed start of the next pipeline, connections kept for it are closed.
    shared.connections.close().await;
    stop_control.cancel();
    let _ = control_task.await;
    let _ = std::fs::remove_file(control::socket_path(&runtime_dir));
    result
}

/// The signals the daemon acts on, and the reloads asked for on the control socket.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    reloads: mpsc::Receiver<control::ReloadRequest>,
}

impl Signals {
    fn new(reloads: mpsc::Receiver<control::ReloadRequest>) -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
            reloads,
        })
    }

    /// Waits for SIGTERM or SIGINT (then `Exit`), or SIGHUP or a reload request with a
    /// configuration that passes its checks and whose resources could all be prepared
    /// (then `Reload`). A refused configuration is logged, and told to the request.
    async fn stopped(&mut self, current: &Prepared, shared: &Shared) -> Stopped {
        loop {
            let (asked_by, reply) = tokio::select! {
                _ = self.term.recv() => return Stopped::Exit,
                _ = self.int.recv() => return Stopped::Exit,
                _ = self.hup.recv() => ("SIGHUP", None),
                Some(request) = self.reloads.recv() => ("nss reload", Some(request.reply)),
            };
            let next = match Settings::load(&current.settings.path) {
                Ok(settings) => Prepared::new(settings, Some(current), shared).await,
                Err(error) => Err(error.into()),
            };
            match next {
                Ok(next) => return Stopped::Reload(Box::new(next), reply),
                Err(error) => {
                    let error = crate::error_text::one_line(&*error);
                    tracing::error!(
                        %error,
                        "{asked_by}: the configuration was not reloaded (configuration error: {error}); running on with the previous one"
                    );
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(format!("configuration error: {error}")));
                    }
                }
            }
        }
    }
}

/// Runs the pipeline until a signal stops it, then shuts it down in order: every task it
/// spawned is awaited before this returns.
/// `reloaded` is told once the pipeline runs, when a reload asked for it.
async fn run_pipeline(
    prepared: Prepared,
    shared: &Shared,
    signals: &mut Signals,
    reloaded: Option<ReloadReply>,
) -> anyhow::Result<Stopped> {
    let running = RunningPipeline::start(&prepared, shared).await?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    if let Some(reply) = reloaded {
        let _ = reply.send(Ok(()));
    }
    let stopped = signals.stopped(&prepared, shared).await;
    let state = match stopped {
        Stopped::Exit => sd_notify::NotifyState::Stopping,
        Stopped::Reload(..) => sd_notify::NotifyState::Reloading,
    };
    let _ = sd_notify::notify(false, &[state]);
    running.shutdown(&stopped, shared).await?;
    tracing::info!("stopped");
    Ok(stopped)
}
