//! Prometheus metrics: the status report's counters and gauges in the text exposition
//! format, served over plain HTTP on `metrics.listen` (loopback by default).

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::status::StatusReport;

/// The largest request head read; a scraper sends a few hundred bytes.
const MAX_REQUEST: usize = 8 << 10;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` with the report `report` makes at each request, until `cancel`.
pub async fn serve(
    listener: TcpListener,
    report: impl Fn() -> StatusReport + Send + Sync + 'static,
    cancel: CancellationToken,
) {
    let report = std::sync::Arc::new(report);
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
            _ = cancel.cancelled() => return,
        };
        let report = report.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, || render(&report())).await {
                tracing::debug!(%error, "a metrics request failed");
            }
        });
    }
}

/// Reads one request head and answers it: the metrics for `GET /metrics`, 404 otherwise.
async fn answer(mut stream: TcpStream, body: impl FnOnce() -> String) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read_head)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let response = if method == b"GET" && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
        let body = body();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let body = "not found: the metrics are at /metrics\n";
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The report as Prometheus text.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP nss_agent_{name} {help}");
        let _ = writeln!(out, "# TYPE nss_agent_{name} {kind}");
        let _ = writeln!(out, "nss_agent_{name} {value}");
    };
    let timestamp = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (feed, spool, upload, sync, memory) = (
        &report.feed,
        &report.spool,
        &report.upload,
        &report.sync,
        &report.memory,
    );
    metric(
        "feed_records_total",
        "counter",
        "Records read from the feed.",
        feed.records as f64,
    );
    metric(
        "feed_bytes_total",
        "counter",
        "Bytes of records read from the feed.",
        feed.bytes as f64,
    );
    metric(
        "feed_oversize_dropped_total",
        "counter",
        "Records dropped for exceeding feed.max_record_bytes.",
        feed.oversize_dropped as f64,
    );
    metric(
        "feed_connections",
        "gauge",
        "TCP feed connections open.",
        feed.connections as f64,
    );
    metric(
        "feed_last_record_timestamp_seconds",
        "gauge",
        "When the last record was read (0: never).",
        timestamp(&feed.last_record),
    );
    metric(
        "spool_batches",
        "gauge",
        "Sealed batches waiting for upload.",
        spool.batches as f64,
    );
    metric(
        "spool_bytes",
        "gauge",
        "Bytes of sealed batches waiting.",
        spool.bytes as f64,
    );
    metric(
        "spool_max_bytes",
        "gauge",
        "The spool's cap.",
        spool.max_bytes as f64,
    );
    metric(
        "spool_full",
        "gauge",
        "1 while the spool is full and reading is paused.",
        f64::from(u8::from(spool.full)),
    );
    metric(
        "spool_quarantined",
        "gauge",
        "Batches in quarantine.",
        spool.quarantined as f64,
    );
    metric(
        "batch_sealed_total",
        "counter",
        "Batches sealed.",
        spool.sealed as f64,
    );
    metric(
        "batch_sealed_records_total",
        "counter",
        "Records in sealed batches.",
        spool.sealed_records as f64,
    );
    metric(
        "batch_seal_latency_max_seconds",
        "gauge",
        "The longest a batch stayed open, from its first record's arrival to its seal.",
        spool.seal_latency_max,
    );
    metric(
        "spool_oldest_timestamp_seconds",
        "gauge",
        "When the oldest waiting batch was sealed (0: none).",
        timestamp(&spool.oldest),
    );
    metric(
        "upload_batches_total",
        "counter",
        "Batches MCAS accepted.",
        upload.batches as f64,
    );
    metric(
        "upload_records_total",
        "counter",
        "Records in batches MCAS accepted.",
        upload.records as f64,
    );
    metric(
        "upload_bytes_raw_total",
        "counter",
        "Uncompressed bytes in batches MCAS accepted.",
        upload.bytes_raw as f64,
    );
    metric(
        "upload_bytes_gzip_total",
        "counter",
        "Gzip bytes uploaded in batches MCAS accepted.",
        upload.bytes_gzip as f64,
    );
    metric(
        "upload_last_success_timestamp_seconds",
        "gauge",
        "When MCAS last accepted a batch (0: never).",
        timestamp(&upload.last_success),
    );
    metric(
        "upload_failing",
        "gauge",
        "1 while the last upload attempt failed.",
        f64::from(u8::from(upload.last_error.is_some())),
    );
    metric(
        "sync_urls",
        "gauge",
        "URLs in the category after the last sync.",
        sync.urls as f64,
    );
    metric(
        "sync_last_success_timestamp_seconds",
        "gauge",
        "When the last sync succeeded (0: never).",
        timestamp(&sync.last_success),
    );
    metric(
        "sync_failing",
        "gauge",
        "1 while the last sync failed.",
        f64::from(u8::from(sync.last_error.is_some())),
    );
    metric(
        "memory_ram_bytes",
        "gauge",
        "The machine's memory.",
        memory.ram_total as f64,
    );
    metric(
        "memory_meets_8gb_floor",
        "gauge",
        "1 when the machine has the 8 GB the MCAS feed needs.",
        f64::from(u8::from(memory.meets_8gb_floor)),
    );
    metric(
        "memory_limit_bytes",
        "gauge",
        "The memory budget of the pipeline.",
        memory.limit as f64,
    );
    metric(
        "memory_in_use_bytes",
        "gauge",
        "Bytes of the budget in use.",
        memory.in_use as f64,
    );
    out
}
