//! Prometheus metrics: the status report's counters and gauges in the text exposition
//! format, served over plain HTTP on `metrics.listen` (loopback by default).

mod http;

pub use http::answer_scrapes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::latency::HistogramReport;
use crate::status_report::StatusReport;

/// Whether a figure only grows (a counter), goes up and down (a gauge), or counts
/// observations in buckets (a histogram: `_bucket{le=..}`, `_sum`, `_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// How a metric's value is read from its field of the report (as JSON).
#[derive(Clone, Copy)]
enum Read {
    /// A number, or a flag as 0 or 1; NaN while the field is null (not known yet).
    Number,
    /// A flag as 0 or 1, and -1 while it is null (not known yet).
    Known,
    /// 1 while the field holds something (an error, a pause), 0 while it is null.
    Present,
    /// An RFC 3339 time as seconds since the epoch; 0 for never.
    Time,
    /// A histogram: `{"buckets": [{"le", "count"}], "sum", "count"}`.
    Histogram,
}

/// One exported figure: its name (after `nss_agent_`), its kind and help, the status
/// report's field it is read from, and how. The figure itself is declared once, in its
/// stage's counters; this is its declaration as a metric.
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// The field of `nss status --json` it exports, e.g. `feed.records`.
    field: &'static str,
    read: Read,
}

/// The value of `field` (dotted) of the report as JSON; null for a field not there.
fn field<'a>(report: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    field
        .split('.')
        .try_fold(report, |value, key| value.get(key))
        .unwrap_or(&serde_json::Value::Null)
}

/// A figure's value, read as `read` says.
fn number(value: &serde_json::Value, read: Read) -> f64 {
    use serde_json::Value::{Bool, Null, Number, String};
    match (read, value) {
        (Read::Present, Null) | (Read::Time, Null) => 0.0,
        (Read::Present, _) => 1.0,
        (Read::Known, Null) => -1.0,
        (_, Bool(on)) => f64::from(u8::from(*on)),
        (_, Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        (Read::Time, String(t)) => humantime::parse_rfc3339(t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64()),
        _ => f64::NAN,
    }
}

/// Every metric, declared once. A test checks that every figure of the status report is
/// here, so that nothing is counted without being exported.
const METRICS: &[Metric] = &[
    Metric {
        name: "feed_records_total",
        kind: Kind::Counter,
        help: "Records read from the feed.",
        field: "feed.records",
        read: Read::Number,
    },
    Metric {
        name: "feed_bytes_total",
        kind: Kind::Counter,
        help: "Bytes of records read from the feed.",
        field: "feed.bytes",
        read: Read::Number,
    },
    Metric {
        name: "feed_oversize_dropped_total",
        kind: Kind::Counter,
        help: "Records dropped for exceeding feed.max_record_bytes.",
        field: "feed.oversize_dropped",
        read: Read::Number,
    },
    Metric {
        name: "feed_connections",
        kind: Kind::Gauge,
        help: "TCP feed connections open.",
        field: "feed.connections",
        read: Read::Number,
    },
    Metric {
        name: "feed_connections_total",
        kind: Kind::Counter,
        help: "TCP feed connections accepted.",
        field: "feed.connections_total",
        read: Read::Number,
    },
    Metric {
        name: "feed_connections_refused_total",
        kind: Kind::Counter,
        help: "TCP feed connections closed on arrival: feed.max_connections were open.",
        field: "feed.connections_refused",
        read: Read::Number,
    },
    Metric {
        name: "feed_partial_timeouts_total",
        kind: Kind::Counter,
        help: "TCP feed connections closed silent in the middle of a record (feed.partial_timeout).",
        field: "feed.partial_timeouts",
        read: Read::Number,
    },
    Metric {
        name: "feed_inputs_waiting_for_memory",
        kind: Kind::Gauge,
        help: "Inputs waiting for the memory budget (not reading).",
        field: "feed.waiting_for_memory",
        read: Read::Number,
    },
    Metric {
        name: "feed_unterminated_total",
        kind: Kind::Counter,
        help: "Tailed files that ended without a newline (last line delivered whole).",
        field: "feed.unterminated",
        read: Read::Number,
    },
    Metric {
        name: "feed_last_record_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last record was read (0: never).",
        field: "feed.last_record",
        read: Read::Time,
    },
    Metric {
        name: "spool_batches",
        kind: Kind::Gauge,
        help: "Sealed batches waiting for upload.",
        field: "spool.batches",
        read: Read::Number,
    },
    Metric {
        name: "spool_bytes",
        kind: Kind::Gauge,
        help: "Bytes of sealed batches waiting.",
        field: "spool.bytes",
        read: Read::Number,
    },
    Metric {
        name: "spool_max_bytes",
        kind: Kind::Gauge,
        help: "The spool's cap.",
        field: "spool.max_bytes",
        read: Read::Number,
    },
    Metric {
        name: "spool_full",
        kind: Kind::Gauge,
        help: "1 while the spool is full and reading is paused.",
        field: "spool.full",
        read: Read::Number,
    },
    Metric {
        name: "spool_full_events_total",
        kind: Kind::Counter,
        help: "Times the spool filled up, or the disk reached its reserve, and reading paused.",
        field: "spool.full_events",
        read: Read::Number,
    },
    Metric {
        name: "spool_too_old_total",
        kind: Kind::Counter,
        help: "Batches sealed more than 90 days ago (MCAS ignores events older than 90 days), moved to quarantine instead of uploaded.",
        field: "spool.too_old",
        read: Read::Number,
    },
    Metric {
        name: "spool_quarantined",
        kind: Kind::Gauge,
        help: "Batches in quarantine.",
        field: "spool.quarantined",
        read: Read::Number,
    },
    Metric {
        name: "spool_held",
        kind: Kind::Gauge,
        help: "Batches held back after failing again and again; newer batches go first.",
        field: "spool.held",
        read: Read::Number,
    },
    Metric {
        name: "spool_delivered_undeleted",
        kind: Kind::Gauge,
        help: "Batches MCAS accepted whose removal from the spool failed (never sent again).",
        field: "spool.delivered_undeleted",
        read: Read::Number,
    },
    Metric {
        name: "spool_oldest_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the oldest waiting batch was sealed (0: none).",
        field: "spool.oldest",
        read: Read::Time,
    },
    Metric {
        name: "batch_sealed_total",
        kind: Kind::Counter,
        help: "Batches sealed.",
        field: "spool.sealed",
        read: Read::Number,
    },
    Metric {
        name: "batch_sealed_records_total",
        kind: Kind::Counter,
        help: "Records in sealed batches.",
        field: "spool.sealed_records",
        read: Read::Number,
    },
    Metric {
        name: "spool_scanned_sealed_records",
        kind: Kind::Gauge,
        help: "Records of the batches sealed before the uploader's last scan of the spool began (below nss_agent_batch_sealed_records_total: the spool figures predate the newest seals; NaN before the first scan).",
        field: "spool.scanned_sealed_records",
        read: Read::Number,
    },
    Metric {
        name: "batch_stream_records_on_disk_total",
        kind: Kind::Counter,
        help: "Records of the TCP feed handed to the operating system (flushed or sealed).",
        field: "spool.stream_records_on_disk",
        read: Read::Number,
    },
    Metric {
        name: "batch_seal_latency_max_seconds",
        kind: Kind::Gauge,
        help: "The longest a batch stayed open, from its first record's arrival to its seal.",
        field: "spool.seal_latency_max",
        read: Read::Number,
    },
    Metric {
        name: "batch_seal_latency_seconds",
        kind: Kind::Histogram,
        help: "Batches sealed, by the time from their first record's arrival to their seal.",
        field: "spool.seal_latency",
        read: Read::Histogram,
    },
    Metric {
        name: "upload_batches_total",
        kind: Kind::Counter,
        help: "Batches MCAS accepted.",
        field: "upload.batches",
        read: Read::Number,
    },
    Metric {
        name: "upload_records_total",
        kind: Kind::Counter,
        help: "Records in batches MCAS accepted.",
        field: "upload.records",
        read: Read::Number,
    },
    Metric {
        name: "upload_bytes_raw_total",
        kind: Kind::Counter,
        help: "Uncompressed bytes in batches MCAS accepted.",
        field: "upload.bytes_raw",
        read: Read::Number,
    },
    Metric {
        name: "upload_bytes_gzip_total",
        kind: Kind::Counter,
        help: "Gzip bytes uploaded in batches MCAS accepted.",
        field: "upload.bytes_gzip",
        read: Read::Number,
    },
    Metric {
        name: "upload_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When MCAS last accepted a batch (0: never).",
        field: "upload.last_success",
        read: Read::Time,
    },
    Metric {
        name: "upload_failing",
        kind: Kind::Gauge,
        help: "1 while the last upload attempt failed.",
        field: "upload.last_error",
        read: Read::Present,
    },
    Metric {
        name: "upload_paused",
        kind: Kind::Gauge,
        help: "1 while uploads are paused by a refusal of the whole tenant (credential, data source, log format); the batches wait in the spool.",
        field: "upload.paused",
        read: Read::Present,
    },
    Metric {
        name: "mcas_data_source_found",
        kind: Kind::Gauge,
        help: "1 when MCAS lists mcas.data_source, 0 when it does not, -1 when not known (not read yet, or the list is unreadable).",
        field: "mcas.data_source_found",
        read: Read::Known,
    },
    Metric {
        name: "mcas_last_data_received_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When MCAS last received data for the data source, as MCAS says (0: never or not known).",
        field: "mcas.last_data_received",
        read: Read::Time,
    },
    Metric {
        name: "upload_api_calls_total",
        kind: Kind::Counter,
        help: "MCAS API calls made; the tenant allows 30 a minute for all its agents together.",
        field: "upload.api_calls",
        read: Read::Number,
    },
    Metric {
        name: "upload_retries_total",
        kind: Kind::Counter,
        help: "Upload attempts that failed and were tried again.",
        field: "upload.retries",
        read: Read::Number,
    },
    Metric {
        name: "upload_throttled_total",
        kind: Kind::Counter,
        help: "API calls MCAS answered 429 (the tenant's throttle, shared with its other agents).",
        field: "upload.throttled",
        read: Read::Number,
    },
    Metric {
        name: "upload_api_rate",
        kind: Kind::Gauge,
        help: "This agent's limit of API calls a minute now: halved on each 429, growing back while calls succeed.",
        field: "upload.api_rate",
        read: Read::Number,
    },
    Metric {
        name: "upload_outage_retry_seconds",
        kind: Kind::Gauge,
        help: "Seconds between attempts while MCAS fails for every batch (upload.outage_retry).",
        field: "upload.outage_retry",
        read: Read::Number,
    },
    Metric {
        name: "upload_outage",
        kind: Kind::Gauge,
        help: "1 while MCAS fails for every batch (attempts at the outage cadence), else 0.",
        field: "upload.outage",
        read: Read::Number,
    },
    Metric {
        name: "upload_delivery_latency_seconds",
        kind: Kind::Histogram,
        help: "Records delivered, by the time from their batch's first record's arrival to MCAS's acceptance.",
        field: "upload.delivery_latency",
        read: Read::Histogram,
    },
    Metric {
        name: "sync_urls",
        kind: Kind::Gauge,
        help: "URLs in the category after the last sync.",
        field: "sync.urls",
        read: Read::Number,
    },
    Metric {
        name: "sync_added",
        kind: Kind::Gauge,
        help: "URLs the last sync added to the category.",
        field: "sync.added",
        read: Read::Number,
    },
    Metric {
        name: "sync_removed",
        kind: Kind::Gauge,
        help: "URLs the last sync removed from the category.",
        field: "sync.removed",
        read: Read::Number,
    },
    Metric {
        name: "sync_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last sync succeeded (0: never).",
        field: "sync.last_success",
        read: Read::Time,
    },
    Metric {
        name: "sync_next_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the next sync is due (0: not scheduled).",
        field: "sync.next",
        read: Read::Time,
    },
    Metric {
        name: "sync_failing",
        kind: Kind::Gauge,
        help: "1 while the last sync failed.",
        field: "sync.last_error",
        read: Read::Present,
    },
    Metric {
        name: "sync_zia_enabled",
        kind: Kind::Gauge,
        help: "1 when a ZIA API is configured (zia.base_url) and the category is pushed there.",
        field: "sync.zia.enabled",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_urls",
        kind: Kind::Gauge,
        help: "URLs the category holds in ZIA after the last push.",
        field: "sync.zia.urls",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_quota_remaining",
        kind: Kind::Gauge,
        help: "The tenant's custom URL quota left in ZIA after the last push (NaN: not read yet).",
        field: "sync.zia.quota_remaining",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_last_push_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the category was last pushed into ZIA (0: never).",
        field: "sync.zia.last_push",
        read: Read::Time,
    },
    Metric {
        name: "sync_zia_last_activation_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the agent last activated a change in ZIA (0: never).",
        field: "sync.zia.last_activation",
        read: Read::Time,
    },
    Metric {
        name: "sync_zia_failing",
        kind: Kind::Gauge,
        help: "1 while the last push into ZIA failed.",
        field: "sync.zia.last_error",
        read: Read::Present,
    },
    Metric {
        name: "sync_zia_pushes_total",
        kind: Kind::Counter,
        help: "Pushes into ZIA that succeeded.",
        field: "sync.zia.pushes",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_api_calls_total",
        kind: Kind::Counter,
        help: "ZIA API calls (logins and retries included).",
        field: "sync.zia.api_calls",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_throttled_total",
        kind: Kind::Counter,
        help: "ZIA answers 429 (rate limit).",
        field: "sync.zia.throttled",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_activations_total",
        kind: Kind::Counter,
        help: "Activations the agent asked ZIA for.",
        field: "sync.zia.activations",
        read: Read::Number,
    },
    Metric {
        name: "sync_zia_logins_total",
        kind: Kind::Counter,
        help: "ZIA logins (API key sessions or OneAPI tokens) attempted.",
        field: "sync.zia.logins",
        read: Read::Number,
    },
    Metric {
        name: "memory_ram_bytes",
        kind: Kind::Gauge,
        help: "The machine's memory.",
        field: "memory.ram_total",
        read: Read::Number,
    },
    Metric {
        name: "memory_meets_8gb_floor",
        kind: Kind::Gauge,
        help: "1 when the machine has the 8 GB the MCAS feed needs.",
        field: "memory.meets_8gb_floor",
        read: Read::Number,
    },
    Metric {
        name: "memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The memory budget of the pipeline.",
        field: "memory.limit",
        read: Read::Number,
    },
    Metric {
        name: "memory_in_use_bytes",
        kind: Kind::Gauge,
        help: "Bytes of the budget in use.",
        field: "memory.in_use",
        read: Read::Number,
    },
];

/// A figure that is a whole number, as an integer: written `1`, not `1.0`, as scrapers and
/// people have always read this endpoint's flags, counts and times.
fn whole(figure: f64) -> Option<i64> {
    // Below 2^53 every whole f64 is exact as an i64.
    (figure.is_finite() && figure.fract() == 0.0 && figure.abs() < 9_007_199_254_740_992.0)
        .then_some(figure as i64)
}

/// One scrape's figures, read from the report as the table says.
#[derive(Debug)]
struct ReportCollector(serde_json::Value);

impl Collector for ReportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for metric in METRICS {
            let value = field(&self.0, metric.field);
            let help = format!("{} (nss status: {})", metric.help, metric.field);
            match metric.kind {
                Kind::Counter => {
                    // The encoder adds the `_total` every counter's name ends with.
                    let name = metric.name.strip_suffix("_total").unwrap_or(metric.name);
                    let mut out =
                        encoder.encode_descriptor(name, &help, None, MetricType::Counter)?;
                    let figure = number(value, metric.read);
                    match whole(figure).and_then(|count| u64::try_from(count).ok()) {
                        Some(count) => out.encode_counter::<NoLabelSet, _, u64>(&count, None)?,
                        None => out.encode_counter::<NoLabelSet, _, u64>(&figure, None)?,
                    }
                }
                Kind::Gauge => {
                    let mut out =
                        encoder.encode_descriptor(metric.name, &help, None, MetricType::Gauge)?;
                    let figure = number(value, metric.read);
                    match whole(figure) {
                        Some(whole) => out.encode_gauge(&whole)?,
                        None => out.encode_gauge(&figure)?,
                    }
                }
                Kind::Histogram => {
                    let mut out = encoder.encode_descriptor(
                        metric.name,
                        &help,
                        None,
                        MetricType::Histogram,
                    )?;
                    let h: HistogramReport =
                        serde_json::from_value(value.clone()).unwrap_or_default();
                    // The report's buckets are cumulative; the encoder adds them up itself.
                    let mut below = 0;
                    let buckets: Vec<(f64, u64)> = h
                        .buckets
                        .iter()
                        .map(|bucket| {
                            let own = bucket.count.saturating_sub(below);
                            below = bucket.count;
                            (bucket.le, own)
                        })
                        .collect();
                    out.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
                }
            }
        }
        Ok(())
    }
}

/// The report in Prometheus's text format (version 0.0.4), every metric named
/// `nss_agent_<name>`.
pub fn render(report: &StatusReport) -> String {
    let mut registry = Registry::with_prefix("nss_agent");
    registry.register_collector(Box::new(ReportCollector(
        serde_json::to_value(report).unwrap_or_default(),
    )));
    let mut out = String::new();
    // Writing into a String cannot fail, nor can the collector: this is not expected.
    if let Err(error) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!(%error, "the metrics could not be encoded; the answer is cut short");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The dotted paths of the figures (numbers and flags) of a report, e.g. `feed.records`,
    /// outside lists.
    fn figures(report: &StatusReport) -> Vec<String> {
        let mut lines = Vec::new();
        crate::status_report::tests::shape(&serde_json::to_value(report).unwrap(), "", &mut lines);
        lines
            .iter()
            .filter(|line| !line.contains("[]"))
            .filter_map(|line| {
                let (path, kind) = line.split_once(": ")?;
                matches!(kind, "integer" | "float" | "bool").then(|| path.to_string())
            })
            .collect()
    }

    #[test]
    fn every_figure_of_the_status_is_a_metric() {
        let counters = crate::status_report::Counters::default();
        // Null until known: set, so that they count as figures.
        counters.data_source.found.set(Some(true));
        counters.sync.zia.quota_remaining.set(Some(7));
        let report = counters.report(Default::default(), Default::default());
        let paths = figures(&report);
        // Of the process and the file itself, not figures to watch over time.
        let not_figures = ["running", "pid", "version"];
        let exported: Vec<&str> = METRICS.iter().map(|m| m.field).collect();
        // A histogram exports every figure under its field (its sum and count).
        let covered = |p: &str| {
            exported.contains(&p)
                || METRICS
                    .iter()
                    .any(|m| m.kind == Kind::Histogram && p.starts_with(&format!("{}.", m.field)))
        };
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !not_figures.contains(&p.as_str()) && !covered(p))
            .collect();
        assert!(
            missing.is_empty(),
            "status figures without a metric: {missing:?}"
        );
        let text = render(&report);
        for metric in METRICS {
            let sample = match metric.kind {
                Kind::Histogram => format!("\nnss_agent_{}_count ", metric.name),
                _ => format!("\nnss_agent_{} ", metric.name),
            };
            assert!(text.contains(&sample), "{sample}");
        }
        // And no metric names a field the report does not have.
        let json = serde_json::to_value(&report).unwrap();
        for metric in METRICS {
            assert!(
                json.pointer(&format!("/{}", metric.field.replace('.', "/")))
                    .is_some(),
                "{} reads {}, not in the report",
                metric.name,
                metric.field
            );
        }
    }

    #[test]
    fn counters_and_gauges_in_the_prometheus_format() {
        let counters = crate::status_report::Counters::default();
        counters.feed.records.add(1234);
        let text = render(&counters.report(Default::default(), Default::default()));
        assert!(
            text.starts_with(
                "# HELP nss_agent_feed_records_total Records read from the feed. (nss status: feed.records)\n\
                 # TYPE nss_agent_feed_records_total counter\n\
                 nss_agent_feed_records_total 1234\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n# TYPE nss_agent_feed_connections gauge\nnss_agent_feed_connections 0\n"
            ),
            "{text}"
        );
        // Flags, "not known yet" and times never set: whole numbers, as integers.
        assert!(text.contains("\nnss_agent_spool_full 0\n"), "{text}");
        assert!(
            text.contains("\nnss_agent_feed_last_record_timestamp_seconds 0\n"),
            "{text}"
        );
        // Every line is a comment or `name value`, and every value a number Prometheus reads.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("nss_agent_"), "{line}");
            assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn histograms_in_the_prometheus_format() {
        let counters = crate::status_report::Counters::default();
        counters
            .spool
            .seal_latency
            .observe(Duration::from_millis(1500), 1);
        counters
            .spool
            .seal_latency
            .observe(Duration::from_secs(4), 1);
        let text = render(&counters.report(Default::default(), Default::default()));
        assert!(text.contains("# TYPE nss_agent_batch_seal_latency_seconds histogram\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_sum 5.5\n"));
        assert!(text.contains("\nnss_agent_batch_seal_latency_seconds_count 2\n"));
    }

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for metric in METRICS {
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}",
                metric.name
            );
        }
    }
}
