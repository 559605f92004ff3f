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
use crate::status_report::Counters;

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
pub type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What asks the running daemon to stop or to reload its configuration: the process's
/// signals, and `nss reload` on the control socket.
#[derive(Debug)]
pub enum Request {
    /// SIGTERM or SIGINT: shut down.
    Stop,
    /// SIGHUP (`reply` none) or `nss reload`: load the configuration file again.
    Reload {
        asked_by: &'static str,
        reply: Option<ReloadReply>,
    },
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration (see
/// [`run_with_requests`]).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (requests, received) = mpsc::channel(4);
    let signals = OsSignals::watch()?;
    let stop_signals = CancellationToken::new();
    let forwarding = tokio::spawn(signals.forward(requests.clone(), stop_signals.clone()));
    let result = run_with_requests(settings, requests, received).await;
    stop_signals.cancel();
    let _ = forwarding.await;
    result
}

/// Runs the daemon until a [`Request::Stop`] arrives on `received` (or every sender is
/// gone). A reload (from `received`, or `nss reload` on the control socket, which this
/// forwards to `requests`) loads the configuration again: the new settings are checked
/// and their resources prepared while the pipeline runs on; only then does the pipeline
/// stop as at shutdown (nothing read is lost) and start again with them. A configuration
/// that fails any of this is refused with a log line naming the key, and the agent runs
/// on exactly as before.
pub async fn run_with_requests(
    settings: Settings,
    requests: mpsc::Sender<Request>,
    mut received: mpsc::Receiver<Request>,
) -> anyhow::Result<()> {
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
    let (reload_sender, mut reload_receiver) = mpsc::channel::<control::ReloadRequest>(4);
    let (sync_sender, sync_receiver) = mpsc::channel(4);
    let counters = Arc::new(Counters::default());
    let shared = Shared {
        connections: tcp::Connections::new(counters.feed.clone()),
        counters,
        limiter: Arc::new(ApiRateLimiter::adaptive(
            settings.upload.api_calls_per_minute,
            settings.upload.min_api_calls_per_minute,
        )),
        sync_requests: std::sync::Mutex::new(Some(sync_receiver)),
    };
    let control_socket = control::bind(&runtime_dir)?;
    let stop_control = CancellationToken::new();
    // `nss reload` joins the other requests.
    let reloads_task = tokio::spawn(async move {
        while let Some(reload) = reload_receiver.recv().await {
            let request = Request::Reload {
                asked_by: "nss reload",
                reply: Some(reload.reply),
            };
            if requests.send(request).await.is_err() {
                return;
            }
        }
    });
    let control_task = tokio::spawn(control::answer_commands(
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
        match run_pipeline(prepared, &shared, &mut received, reload_reply.take()).await {
            Ok(Stopped::Exit) => break Ok(()),
            Ok(Stopped::Reload(next, reply)) => {
                tracing::info!(config = %next.settings.path.display(), "configuration reloaded: starting again with it");
                prepared = *next;
                reload_reply = reply;
            }
            Err(error) => break Err(error),
        }
    };
    // Nothing reads requests any more: a reload still being forwarded fails at once
    // instead of waiting for room in a queue no one empties.
    drop(received);
    // After a failed start of the next pipeline, connections kept for it are closed.
    shared.connections.close().await;
    stop_control.cancel();
    let _ = control_task.await;
    // The control task is gone, and with it the reloads' sender.
    let _ = reloads_task.await;
    let _ = std::fs::remove_file(control::socket_path(&runtime_dir));
    result
}

/// The process's signals the daemon acts on.
struct OsSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl OsSignals {
    fn watch() -> anyhow::Result<OsSignals> {
        Ok(OsSignals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    /// Sends each signal to `requests` as what it asks, until `stop`.
    async fn forward(mut self, requests: mpsc::Sender<Request>, stop: CancellationToken) {
        loop {
            let request = tokio::select! {
                _ = self.term.recv() => Request::Stop,
                _ = self.int.recv() => Request::Stop,
                _ = self.hup.recv() => Request::Reload { asked_by: "SIGHUP", reply: None },
                _ = stop.cancelled() => return,
            };
            if requests.send(request).await.is_err() {
                return;
            }
        }
    }
}

/// Waits for a stop (then `Exit`), or a reload with a configuration that passes its checks
/// and whose resources could all be prepared (then `Reload`). A refused configuration is
/// logged, and told to the request.
async fn stopped(
    received: &mut mpsc::Receiver<Request>,
    current: &Prepared,
    shared: &Shared,
) -> Stopped {
    loop {
        let (asked_by, reply) = match received.recv().await {
            None | Some(Request::Stop) => return Stopped::Exit,
            Some(Request::Reload { asked_by, reply }) => (asked_by, reply),
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

/// Runs the pipeline until a signal stops it, then shuts it down in order: every task it
/// spawned is awaited before this returns.
/// `reloaded` is told once the pipeline runs, when a reload asked for it.
async fn run_pipeline(
    prepared: Prepared,
    shared: &Shared,
    received: &mut mpsc::Receiver<Request>,
    reloaded: Option<ReloadReply>,
) -> anyhow::Result<Stopped> {
    let running = RunningPipeline::start(&prepared, shared).await?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    if let Some(reply) = reloaded {
        let _ = reply.send(Ok(()));
    }
    let stopped = stopped(received, &prepared, shared).await;
    let state = match stopped {
        Stopped::Exit => sd_notify::NotifyState::Stopping,
        Stopped::Reload(..) => sd_notify::NotifyState::Reloading,
    };
    let _ = sd_notify::notify(false, &[state]);
    running.shutdown(&stopped, shared).await?;
    tracing::info!("stopped");
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon in this process, stopped and reloaded by what the test sends it instead
    /// of by signals: a reload is answered once the new pipeline runs, whose sync answers
    /// sync-now; a stop ends it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_daemon_serves_until_asked_to_stop_and_reloads_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let feed = dir.path().join("feed.log");
        std::fs::write(&feed, "").unwrap();
        let config = dir.path().join("config.toml");
        let text = format!(
            r#"[mcas]
domain = "127.0.0.1:9"
token = "{token}"

[feed]
listen = ""
files = ["{feed}"]

[metrics]
listen = ""

[paths]
state_dir = "{dir}/state"
runtime_dir = "{dir}/run"
"#,
            token = "0123456789abcdef".repeat(4),
            feed = feed.display(),
            dir = dir.path().display(),
        );
        std::fs::write(&config, text).unwrap();
        let settings = Settings::load(&config).unwrap();
        let (requests, received) = mpsc::channel(4);
        let daemon = tokio::spawn(run_with_requests(settings, requests.clone(), received));
        let status = dir
            .path()
            .join("run")
            .join(crate::status_report::STATUS_FILE);
        for _ in 0..200 {
            if status.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(status.exists(), "the daemon never wrote its status");

        let (reply, reloaded) = tokio::sync::oneshot::channel();
        requests
            .send(Request::Reload {
                asked_by: "the test",
                reply: Some(reply),
            })
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(20), reloaded).await;
        assert_eq!(outcome.unwrap().unwrap(), Ok(()));

        // The reloaded pipeline's sync took over the queue of sync-now requests: it
        // answers (MCAS is not there: that the sync failed).
        let run_dir = dir.path().join("run");
        let asked = tokio::task::spawn_blocking(move || {
            control::ask(
                &run_dir,
                &control::Request::SyncNow {
                    accept_empty: false,
                },
            )
        });
        let reply = tokio::time::timeout(Duration::from_secs(60), asked).await;
        let reply = reply.expect("sync-now answered").unwrap().unwrap();
        assert!(matches!(reply, control::Reply::Failed { .. }), "{reply:?}");

        requests.send(Request::Stop).await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(20), daemon).await;
        ended.expect("stopped in time").unwrap().unwrap();
        assert!(
            !control::socket_path(&dir.path().join("run")).exists(),
            "the control socket is removed"
        );
    }
}
