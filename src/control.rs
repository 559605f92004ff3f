//! The daemon's control socket, `control.sock` in the runtime directory: how `nss
//! sync-now` asks a running daemon for a sync and prints the daemon's result, so that a
//! command run as root never writes the daemon's files itself, and how `nss reload` asks
//! it to reload its configuration and waits for the outcome. One JSON line each way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::category_sync::{SyncDone, SyncError, SyncOutcome, SyncRequest};

/// The socket's name in the runtime directory.
pub const SOCKET: &str = "control.sock";

/// A request line is at most this long.
const MAX_REQUEST: u64 = 4096;

/// An answer is at most this long (a sync's answer is a few KiB): the socket is the
/// daemon's account's, and a longer answer is not read into root's command.
const MAX_REPLY: u64 = 1 << 20;

/// How long a command waits for the daemon's answer: a sync may wait for the API rate
/// limit, a reload for the upload in flight (`upload.shutdown_timeout`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// What a command asks the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// One unsanctioned-apps sync now.
    SyncNow { accept_empty: bool },
    /// Reload the configuration file, as SIGHUP does, answering once the daemon runs
    /// with it or has refused it.
    Reload,
}

/// A reload asked for on the socket: the daemon answers on `reply` once the pipeline
/// runs with the new file (`Ok`), or with why the file was refused.
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// The sync ran: what it did, and what the push into ZIA did (when `[zia]` is set).
    Synced {
        outcome: SyncOutcome,
        zia: Option<PushReply>,
    },
    /// The sync failed: why, and whether MCAS refused or could not be reached.
    Failed { message: String, unavailable: bool },
    /// The daemon runs with the reloaded configuration.
    Reloaded,
    /// The daemon refused the new configuration and runs on with the previous one.
    ReloadRefused { message: String },
}

/// The push into ZIA after the daemon's sync.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushReply {
    /// The push as `nss sync-now` prints it.
    Pushed(String),
    /// Why ZIA did not get the category.
    Failed(String),
}

/// The socket's path in `runtime_dir`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET)
}

/// Binds the socket (replacing a leftover: the caller holds the pidfile) so that only the
/// daemon's user and group reach it (root always does).
pub fn bind(runtime_dir: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(runtime_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Where the control socket hands what it is asked: syncs to the sync task, reloads to
/// the daemon's main loop.
#[derive(Clone)]
pub struct Handlers {
    pub syncs: mpsc::Sender<SyncRequest>,
    pub reloads: mpsc::Sender<ReloadRequest>,
}

/// Answers commands until `stop`.
pub async fn answer_commands(listener: UnixListener, handlers: Handlers, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, handlers.clone(), stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a control connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.cancelled() => break,
        }
    }
    connections.close();
    connections.wait().await;
}

async fn answer(stream: UnixStream, handlers: Handlers, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(Request::SyncNow { accept_empty }) => {
            tracing::info!(accept_empty, "a sync was asked for on the control socket");
            let (reply, outcome) = oneshot::channel();
            let request = SyncRequest {
                accept_empty,
                reply,
            };
            let failed = |message: &str| Reply::Failed {
                message: message.to_string(),
                unavailable: false,
            };
            if handlers.syncs.send(request).await.is_err() {
                failed("the daemon is stopping")
            } else {
                tokio::select! {
                    outcome = outcome => match outcome {
                        Ok(result) => reply_of(result),
                        Err(_) => failed("the daemon stopped its sync before it finished (a reload or a shutdown); try again"),
                    },
                    _ = stop.cancelled() => failed("the daemon is stopping"),
                }
            }
        }
        Ok(Request::Reload) => {
            tracing::info!("a reload was asked for on the control socket");
            reload(&handlers.reloads, &stop).await
        }
        Err(error) => Reply::Failed {
            message: format!("not a request this daemon understands: {error}"),
            unavailable: false,
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }
}

/// Hands a reload to the daemon's main loop and waits for its outcome.
async fn reload(reloads: &mpsc::Sender<ReloadRequest>, stop: &CancellationToken) -> Reply {
    let stopping = || Reply::Failed {
        message: "the daemon is stopping".to_string(),
        unavailable: false,
    };
    let (reply, outcome) = oneshot::channel();
    if reloads.send(ReloadRequest { reply }).await.is_err() {
        return stopping();
    }
    tokio::select! {
        outcome = outcome => match outcome {
            Ok(Ok(())) => Reply::Reloaded,
            Ok(Err(message)) => Reply::ReloadRefused { message },
            Err(_) => Reply::Failed {
                message: "the daemon stopped before the reloaded configuration ran (its log says why)".to_string(),
                unavailable: false,
            },
        },
        _ = stop.cancelled() => stopping(),
    }
}

fn reply_of(done: SyncDone) -> Reply {
    let zia = done.pushed.map(|pushed| match pushed {
        Ok(report) => PushReply::Pushed(crate::category_sync::publish::render(&report)),
        Err(error) => PushReply::Failed(crate::error_text::one_line(&error)),
    });
    match done.result {
        Ok(outcome) => Reply::Synced { outcome, zia },
        Err(error) => Reply::Failed {
            message: crate::error_text::one_line(&error),
            unavailable: matches!(error, SyncError::Api(_)),
        },
    }
}

/// Sends `request` to the daemon whose runtime directory is `runtime_dir` and returns its
/// reply (blocking: for the command line).
pub fn ask(runtime_dir: &Path, request: &Request) -> anyhow::Result<Reply> {
    use std::io::Write;
    let path = socket_path(runtime_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "the daemon is running but does not answer on {}",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    let what = format!("the daemon's answer on {}", path.display());
    let line = crate::untrusted::read_line(std::io::BufReader::new(stream), MAX_REPLY, &what)?;
    if line.is_empty() {
        anyhow::bail!("no answer from the daemon on {}", path.display());
    }
    serde_json::from_slice(&line).with_context(|| {
        format!(
            "the daemon's answer on {} is not one this nss reads",
            path.display()
        )
    })
}
