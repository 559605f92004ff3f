//! The TCP receiver the NSS service streams the MCAS feed to (127.0.0.1:13010).
//!
//! Connections live as long as the process, not as a pipeline: a reload stops the batch
//! writers and starts new ones while every connection stays open, its unread bytes in the
//! kernel and its unfinished record in its buffer, and hands its next records to the new
//! writers ([`Connections::attach`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{descriptors, Framer, Throttle};
use crate::batch::DiskGate;
use crate::feed::counters::FeedCounters;
use crate::handoff::RecordSink;
use crate::memory::MemoryBudget;

/// After shutdown is asked for, how long a connection may go on delivering what its peer
/// already sent before it is closed.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Connections closed on arrival (at the cap) are logged at most once a minute.
static REFUSED_LOG: Throttle = Throttle::new(Duration::from_secs(60));

/// Failed accepts (out of descriptors and the like) are logged at most once a minute.
static ACCEPT_LOG: Throttle = Throttle::new(Duration::from_secs(60));

/// How long accepting pauses after it failed, so that a full descriptor table is not
/// spun on.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// Binds the feed's listener. Fails (before the daemon says it is ready) when the address
/// is taken or is not one of this machine's.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// What the running pipeline gives the feed's connections: where records go, and the
/// feed's settings.
#[derive(Clone)]
pub struct Target {
    pub sink: RecordSink,
    pub max_record_bytes: u64,
    pub max_connections: u64,
    pub partial_timeout: Duration,
    /// Every input that may hold an unfinished record at once: the connections and the
    /// tailed files; each gets a fair share of the memory for them.
    pub inputs: u64,
}

/// The feed's connections, across reloads.
pub struct Connections {
    target: watch::Sender<Option<Target>>,
    tracker: TaskTracker,
    /// The process is stopping: connections deliver what their peers sent, then close.
    stop: CancellationToken,
    counters: Arc<FeedCounters>,
    /// The open files the process may have.
    descriptors: u64,
}

impl Connections {
    /// No connections yet, and no pipeline: [`Connections::attach`] gives them one. Raises
    /// the process's limit of open files where allowed.
    pub fn new(counters: Arc<FeedCounters>) -> Arc<Connections> {
        let descriptors = descriptors::raise_limit();
        Arc::new(Connections {
            target: watch::Sender::new(None),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            counters,
            descriptors,
        })
    }

    /// The connections' records go to `target` from now on.
    pub fn attach(&self, target: Target) {
        let cap = descriptors::connection_cap(target.max_connections, self.descriptors);
        if cap < target.max_connections {
            tracing::warn!(
                max_connections = target.max_connections,
                open_files_limit = self.descriptors,
                cap,
                "the limit of open files leaves room for fewer feed connections than feed.max_connections (raise LimitNOFILE=)"
            );
        }
        self.target.send_replace(Some(target));
    }

    /// The pipeline is stopping for a reload: connections keep their bytes and wait for
    /// the next one. Their in-flight hand-overs finish; then none holds the old sink, and
    /// its writers can seal and stop.
    pub fn detach(&self) {
        self.target.send_replace(None);
    }

    /// The process is stopping: every connection delivers what its peer sent (for up to
    /// 2 s) and closes. Returns once all are closed.
    pub async fn close(&self) {
        self.tracker.close();
        self.stop.cancel();
        self.tracker.wait().await;
    }

    /// Accepts connections on `listener` until `cancel` (the end of a pipeline, or of
    /// the listener's address in the configuration); each is read by a task of its own,
    /// which outlives this.
    pub async fn accept_connections(
        self: Arc<Self>,
        listener: Arc<TcpListener>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(error) => {
                        if let Some(held_back) = ACCEPT_LOG.pass() {
                            tracing::warn!(%error, failed_since_last_line = held_back, "accepting a feed connection failed; pausing accepts");
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
    }

    /// Reads `stream`, or closes it at once when the cap is reached.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let max = self
            .target
            .borrow()
            .as_ref()
            .map_or(1, |t| t.max_connections);
        let cap = descriptors::connection_cap(max, self.descriptors);
        let feed = &self.counters;
        if feed.connections.get() >= cap {
            drop(stream);
            feed.connections_refused.add(1);
            if let Some(held_back) = REFUSED_LOG.pass() {
                tracing::warn!(%peer, cap, refused_since_last_line = held_back, "closed a feed connection on arrival: feed.max_connections are open");
            }
            return;
        }
        feed.connections.add(1);
        feed.connections_total.add(1);
        let connections = self.clone();
        self.tracker.spawn(async move {
            connections.receive(stream, peer).await;
            connections.counters.connections.sub(1);
        });
    }

    /// The pipeline running now, once there is one; `None` when the process stops first.
    async fn current(&self, rx: &mut watch::Receiver<Option<Target>>) -> Option<Target> {
        tokio::select! {
            target = rx.wait_for(Option::is_some) => return target.ok().and_then(|t| t.clone()),
            _ = self.stop.cancelled() => {}
        }
        // Stopping: what is attached now, if anything, takes the last records.
        rx.borrow().clone()
    }

    /// Reads one connection to its end.
    async fn receive(&self, stream: TcpStream, peer: SocketAddr) {
        tracing::info!(%peer, "feed connection opened");
        let mut rx = self.target.subscribe();
        let Some(first) = self.current(&mut rx).await else {
            return;
        };
        let mut framer = Framer::new(
            format!("tcp {peer}"),
            first.max_record_bytes,
            self.counters.clone(),
            first.sink.budget().clone(),
            first.inputs,
        );
        drop(first);
        let mut drain_until = None;
        let mut last_bytes = Instant::now();
        loop {
            // The budget and limits of the pipeline running now; not its sink, which a
            // connection holds only while it hands records over (a reload waits for that).
            let Some(target) = self.current(&mut rx).await else {
                break;
            };
            let budget: MemoryBudget = target.sink.budget().clone();
            let disk = target.sink.disk().clone();
            let partial_timeout = target.partial_timeout;
            framer
                .adopt(&budget, target.max_record_bytes, target.inputs)
                .await;
            drop(target);

            let idle_deadline = (framer.pending() > 0).then(|| last_bytes + partial_timeout);
            let read = match drain_until {
                // Checked here too: a peer that keeps bytes ready would never let the
                // timeout below see its deadline.
                Some(deadline) if Instant::now() >= deadline => Read::Cut,
                Some(deadline) => tokio::time::timeout_at(
                    deadline,
                    read_some(&stream, &mut framer, idle_deadline, &disk),
                )
                .await
                .unwrap_or(Read::Cut),
                None => tokio::select! {
                    read = read_some(&stream, &mut framer, idle_deadline, &disk) => read,
                    _ = self.stop.cancelled() => {
                        drain_until = Some(Instant::now() + DRAIN_DEADLINE);
                        continue;
                    }
                },
            };
            // A peer that closes mid-line still sent its last record; a connection that
            // failed, was cut at shutdown or timed out did not finish its line, so that
            // fragment is no record.
            let (end, complete) = match read {
                Read::Bytes(n) => {
                    last_bytes = Instant::now();
                    framer.read_done(n);
                    (false, false)
                }
                Read::End => (true, true),
                Read::Failed(error) => {
                    tracing::warn!(%peer, %error, "feed connection failed");
                    (true, false)
                }
                Read::Cut => (true, false),
                Read::Idle => {
                    self.counters.partial_timeouts.add(1);
                    tracing::warn!(%peer, timeout = ?partial_timeout, "feed connection sent nothing for feed.partial_timeout in the middle of a record: closing it (its complete records are kept)");
                    (true, false)
                }
            };
            let records = match framer.records(complete) {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%peer, %error, "cannot frame the feed");
                    break;
                }
            };
            if !records.records.is_empty() {
                let Some(target) = self.current(&mut rx).await else {
                    break;
                };
                if target.sink.send(records, None).await.is_err() {
                    break;
                }
            }
            if end {
                break;
            }
        }
        if framer.pending() > 0 {
            tracing::warn!(%peer, bytes = framer.pending(), "feed connection closed in the middle of a record; its fragment was dropped");
        }
        tracing::info!(%peer, "feed connection closed");
    }
}

/// What one read of a connection came to.
enum Read {
    /// Bytes were added to the framer's buffer.
    Bytes(usize),
    /// The peer closed its side, everything it sent read.
    End,
    Failed(std::io::Error),
    /// Cut off at shutdown.
    Cut,
    /// Nothing came for `feed.partial_timeout` while a record was unfinished.
    Idle,
}

/// Reads what the peer sent into the framer. Waits for the bytes first, and only then for
/// the memory to hold them, so that a silent connection holds no more than its unfinished
/// record; while it waits for memory, a peer that goes away ends the wait. Nothing is
/// taken from the socket while the spool's disk refuses writes: the bytes wait in the
/// kernel, and the sender waits for them to be read.
async fn read_some(
    stream: &TcpStream,
    framer: &mut Framer,
    idle: Option<Instant>,
    disk: &DiskGate,
) -> Read {
    let idle_passed = || async move {
        match idle {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    loop {
        tokio::select! {
            ready = stream.readable() => if let Err(error) = ready {
                return Read::Failed(error);
            },
            _ = idle_passed() => return Read::Idle,
        }
        tokio::select! {
            _ = framer.partial_room() => {}
            end = peer_gone(stream) => return end,
        }
        let buf = tokio::select! {
            buf = framer.buffer() => buf,
            end = peer_gone(stream) => return end,
        };
        // Looked at last, right before the read: the disk may have gone read-only while
        // this connection waited for memory.
        if disk.refuses() {
            framer.release_spare();
            tokio::select! {
                _ = disk.accepting() => {}
                end = peer_gone(stream) => return end,
            }
            continue;
        }
        match stream.try_read_buf(buf) {
            Ok(0) => return Read::End,
            Ok(n) => return Read::Bytes(n),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                // Nothing to read after all: hold no more than the unfinished record.
                framer.release_spare();
            }
            Err(error) => return Read::Failed(error),
        }
    }
}

/// Returns once the peer is gone with nothing left unread: closed (then `End`) or reset
/// (`Failed`). While unread bytes wait in the socket, they are the peer's records: this
/// never returns then.
async fn peer_gone(stream: &TcpStream) -> Read {
    match stream.ready(Interest::READABLE).await {
        Err(error) => return Read::Failed(error),
        Ok(ready) if ready.is_read_closed() || ready.is_error() => {
            match stream.peek(&mut [0u8; 1]).await {
                Ok(0) => return Read::End,
                Err(error) => return Read::Failed(error),
                Ok(_) => {}
            }
        }
        Ok(_) => {}
    }
    std::future::pending().await
}
