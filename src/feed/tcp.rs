//! The TCP receiver the NSS service streams the MCAS feed to (127.0.0.1:13010).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Framer;
use crate::pipeline::RecordSink;
use crate::status::Stats;

/// After shutdown is asked for, how long a connection may go on delivering what its peer
/// already sent before it is closed.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Binds the feed's listener. Fails (before the daemon says it is ready) when the address
/// is taken or is not one of this machine's.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until `cancel`, each read by a task of its own; returns once every
/// connection has handed over its records. The listener is shared so that a reload keeps
/// it open: connections that arrive meanwhile wait in its backlog.
pub async fn serve(
    listener: Arc<TcpListener>,
    sink: RecordSink,
    max_record_bytes: u64,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let framer = Framer::new(format!("tcp {peer}"), max_record_bytes, stats.clone(), sink.budget().clone());
                    connections.spawn(receive(stream, peer, framer, sink.clone(), stats.clone(), cancel.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accepting a feed connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Reads one connection to its end.
async fn receive(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut framer: Framer,
    sink: RecordSink,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    stats.feed.connections.fetch_add(1, Ordering::Relaxed);
    stats.feed.connections_total.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, "feed connection opened");
    let mut drain_until = None;
    loop {
        let read = match drain_until {
            Some(deadline) => tokio::time::timeout_at(deadline, async {
                stream.read_buf(framer.buffer().await).await
            })
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => tokio::select! {
                // Waits for the memory budget first: TCP then pushes back to the sender.
                read = async { stream.read_buf(framer.buffer().await).await } => read,
                _ = cancel.cancelled() => {
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_DEADLINE);
                    continue;
                }
            },
        };
        // A peer that closes mid-line still sent its last record; a connection that failed
        // or was cut at shutdown did not finish its line, so that fragment is no record.
        let (end, complete) = match read {
            Ok(0) => (true, true),
            Ok(_) => (false, false),
            Err(error) => {
                if error.kind() != std::io::ErrorKind::TimedOut {
                    tracing::warn!(%peer, %error, "feed connection failed");
                }
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
        if sink.send(records, None).await.is_err() || end {
            break;
        }
    }
    if framer.pending() > 0 {
        tracing::warn!(%peer, bytes = framer.pending(), "feed connection closed in the middle of a record; its fragment was dropped");
    }
    stats.feed.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(%peer, "feed connection closed");
}
