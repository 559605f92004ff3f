//! The metrics' HTTP endpoint: `GET /metrics` over plain HTTP/1.1 on `metrics.listen`
//! (loopback by default), served by hyper, one request a connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::render;
use crate::status_report::StatusReport;

/// The most a request's head may hold; a scraper sends a few hundred bytes (hyper's
/// smallest buffer).
const MAX_REQUEST: usize = 8 << 10;

/// How long a client may take to send its request's head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` with the report `report` makes at each request, until `cancel`;
/// returns once every connection has ended.
pub async fn answer_scrapes(
    listener: Arc<TcpListener>,
    report: impl Fn() -> StatusReport + Send + Sync + 'static,
    cancel: CancellationToken,
) {
    let report = Arc::new(report);
    let connections = TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let report = report.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let report = report.clone();
                async move { Ok::<_, Infallible>(answer(&request, || render(&report()))) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "a metrics request failed");
                },
                _ = cancel.cancelled() => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The answer to `request`: the metrics for `GET /metrics`, 404 otherwise.
fn answer(request: &Request<Incoming>, body: impl FnOnce() -> String) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            (StatusCode::OK, prometheus_text::CONTENT_TYPE, body())
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: the metrics are at /metrics\n".to_string(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
