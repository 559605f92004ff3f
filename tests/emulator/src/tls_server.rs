//! The HTTPS accept loop both emulators share: TLS handshakes with a time limit, HTTP/1.1
//! and HTTP/2 on each connection, until shutdown is asked for.

use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Accepts connections on `listener` and answers each request with `handle`, until
/// `shutdown` turns true. `name` names the emulator in log lines.
pub(crate) async fn accept_loop<F, Fut, B, E>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    handle: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                warn!("{name}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handle = handle.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!("{name}: TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(handle);
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            // Large windows: uploads of hundreds of MiB over h2 crawl with the defaults.
            builder
                .http2()
                .timer(TokioTimer::new())
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                res = conn => if let Err(e) = res {
                    debug!("{name}: connection from {peer}: {e}");
                },
                _ = shutdown.wait_for(|&stop| stop) => {}
            }
        });
    }
}
