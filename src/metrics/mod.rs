//! Prometheus metrics: the status report's counters and gauges in the text exposition
//! format, served over plain HTTP on `metrics.listen` (loopback by default).

mod serve;

use std::fmt::Write as _;

pub use serve::serve;

use crate::latency::HistogramReport;
use crate::status::StatusReport;

/// Whether a figure only grows (a counter), goes up and down (a gauge), or counts
/// observations in buckets (a histogram: `_bucket{le=..}`, `_sum`, `_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Where a metric's value comes from in the report.
#[derive(Clone, Copy)]
enum Value {
    /// A counter's or a gauge's number.
    Number(fn(&StatusReport) -> f64),
    /// A histogram of the report.
    Histogram(fn(&StatusReport) -> &HistogramReport),
}

/// One exported figure: its name (after `nss_agent_`), its kind and help, the status
/// report's field it is read from, and how.
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// The field of `nss status --json` it exports, e.g. `feed.records`.
    field: &'static str,
    value: Value,
}

/// Seconds since the epoch of an RFC 3339 time of the report; 0 for none.
fn timestamp(t: &Option<String>) -> f64 {
    t.as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

/// Every metric, declared once. A test checks that every figure of the status report is
/// here, so that nothing is counted without being exported.
const METRICS: &[Metric] = &[
    Metric {
        name: "feed_records_total",
        kind: Kind::Counter,
        help: "Records read from the feed.",
        field: "feed.records",
        value: Value::Number(|r| r.feed.records as f64),
    },
    Metric {
        name: "feed_bytes_total",
        kind: Kind::Counter,
        help: "Bytes of records read from the feed.",
        field: "feed.bytes",
        value: Value::Number(|r| r.feed.bytes as f64),
    },
    Metric {
        name: "feed_oversize_dropped_total",
        kind: Kind::Counter,
        help: "Records dropped for exceeding feed.max_record_bytes.",
        field: "feed.oversize_dropped",
        value: Value::Number(|r| r.feed.oversize_dropped as f64),
    },
    Metric {
        name: "feed_connections",
        kind: Kind::Gauge,
        help: "TCP feed connections open.",
        field: "feed.connections",
        value: Value::Number(|r| r.feed.connections as f64),
    },
    Metric {
        name: "feed_connections_total",
        kind: Kind::Counter,
        help: "TCP feed connections accepted.",
        field: "feed.connections_total",
        value: Value::Number(|r| r.feed.connections_total as f64),
    },
    Metric {
        name: "feed_connections_refused_total",
        kind: Kind::Counter,
        help: "TCP feed connections closed on arrival: feed.max_connections were open.",
        field: "feed.connections_refused",
        value: Value::Number(|r| r.feed.connections_refused as f64),
    },
    Metric {
        name: "feed_partial_timeouts_total",
        kind: Kind::Counter,
        help: "TCP feed connections closed silent in the middle of a record (feed.partial_timeout).",
        field: "feed.partial_timeouts",
        value: Value::Number(|r| r.feed.partial_timeouts as f64),
    },
    Metric {
        name: "feed_inputs_waiting_for_memory",
        kind: Kind::Gauge,
        help: "Inputs waiting for the memory budget (not reading).",
        field: "feed.waiting_for_memory",
        value: Value::Number(|r| r.feed.waiting_for_memory as f64),
    },
    Metric {
        name: "feed_unterminated_total",
        kind: Kind::Counter,
        help: "Tailed files that ended without a newline (last line delivered whole).",
        field: "feed.unterminated",
        value: Value::Number(|r| r.feed.unterminated as f64),
    },
    Metric {
        name: "feed_last_record_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last record was read (0: never).",
        field: "feed.last_record",
        value: Value::Number(|r| timestamp(&r.feed.last_record)),
    },
    Metric {
        name: "spool_batches",
        kind: Kind::Gauge,
        help: "Sealed batches waiting for upload.",
        field: "spool.batches",
        value: Value::Number(|r| r.spool.batches as f64),
    },
    Metric {
        name: "spool_bytes",
        kind: Kind::Gauge,
        help: "Bytes of sealed batches waiting.",
        field: "spool.bytes",
        value: Value::Number(|r| r.spool.bytes as f64),
    },
    Metric {
        name: "spool_max_bytes",
        kind: Kind::Gauge,
        help: "The spool's cap.",
        field: "spool.max_bytes",
        value: Value::Number(|r| r.spool.max_bytes as f64),
    },
    Metric {
        name: "spool_full",
        kind: Kind::Gauge,
        help: "1 while the spool is full and reading is paused.",
        field: "spool.full",
        value: Value::Number(|r| flag(r.spool.full)),
    },
    Metric {
        name: "spool_full_events_total",
        kind: Kind::Counter,
        help: "Times the spool filled up, or the disk reached its reserve, and reading paused.",
        field: "spool.full_events",
        value: Value::Number(|r| r.spool.full_events as f64),
    },
    Metric {
        name: "spool_too_old_total",
        kind: Kind::Counter,
        help: "Batches sealed more than 90 days ago (MCAS ignores events older than 90 days), moved to quarantine instead of uploaded.",
        field: "spool.too_old",
        value: Value::Number(|r| r.spool.too_old as f64),
    },
    Metric {
        name: "spool_quarantined",
        kind: Kind::Gauge,
        help: "Batches in quarantine.",
        field: "spool.quarantined",
        value: Value::Number(|r| r.spool.quarantined as f64),
    },
    Metric {
        name: "spool_held",
        kind: Kind::Gauge,
        help: "Batches held back after failing again and again; newer batches go first.",
        field: "spool.held",
        value: Value::Number(|r| r.spool.held as f64),
    },
    Metric {
        name: "spool_delivered_undeleted",
        kind: Kind::Gauge,
        help: "Batches MCAS accepted whose removal from the spool failed (never sent again).",
        field: "spool.delivered_undeleted",
        value: Value::Number(|r| r.spool.delivered_undeleted as f64),
    },
    Metric {
        name: "spool_oldest_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the oldest waiting batch was sealed (0: none).",
        field: "spool.oldest",
        value: Value::Number(|r| timestamp(&r.spool.oldest)),
    },
    Metric {
        name: "batch_sealed_total",
        kind: Kind::Counter,
        help: "Batches sealed.",
        field: "spool.sealed",
        value: Value::Number(|r| r.spool.sealed as f64),
    },
    Metric {
        name: "batch_sealed_records_total",
        kind: Kind::Counter,
        help: "Records in sealed batches.",
        field: "spool.sealed_records",
        value: Value::Number(|r| r.spool.sealed_records as f64),
    },
    Metric {
        name: "batch_stream_records_on_disk_total",
        kind: Kind::Counter,
        help: "Records of the TCP feed handed to the operating system (flushed or sealed).",
        field: "spool.stream_records_on_disk",
        value: Value::Number(|r| r.spool.stream_records_on_disk as f64),
    },
    Metric {
        name: "batch_seal_latency_max_seconds",
        kind: Kind::Gauge,
        help: "The longest a batch stayed open, from its first record's arrival to its seal.",
        field: "spool.seal_latency_max",
        value: Value::Number(|r| r.spool.seal_latency_max),
    },
    Metric {
        name: "batch_seal_latency_seconds",
        kind: Kind::Histogram,
        help: "Batches sealed, by the time from their first record's arrival to their seal.",
        field: "spool.seal_latency",
        value: Value::Histogram(|r| &r.spool.seal_latency),
    },
    Metric {
        name: "upload_batches_total",
        kind: Kind::Counter,
        help: "Batches MCAS accepted.",
        field: "upload.batches",
        value: Value::Number(|r| r.upload.batches as f64),
    },
    Metric {
        name: "upload_records_total",
        kind: Kind::Counter,
        help: "Records in batches MCAS accepted.",
        field: "upload.records",
        value: Value::Number(|r| r.upload.records as f64),
    },
    Metric {
        name: "upload_bytes_raw_total",
        kind: Kind::Counter,
        help: "Uncompressed bytes in batches MCAS accepted.",
        field: "upload.bytes_raw",
        value: Value::Number(|r| r.upload.bytes_raw as f64),
    },
    Metric {
        name: "upload_bytes_gzip_total",
        kind: Kind::Counter,
        help: "Gzip bytes uploaded in batches MCAS accepted.",
        field: "upload.bytes_gzip",
        value: Value::Number(|r| r.upload.bytes_gzip as f64),
    },
    Metric {
        name: "upload_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When MCAS last accepted a batch (0: never).",
        field: "upload.last_success",
        value: Value::Number(|r| timestamp(&r.upload.last_success)),
    },
    Metric {
        name: "upload_failing",
        kind: Kind::Gauge,
        help: "1 while the last upload attempt failed.",
        field: "upload.last_error",
        value: Value::Number(|r| flag(r.upload.last_error.is_some())),
    },
    Metric {
        name: "upload_paused",
        kind: Kind::Gauge,
        help: "1 while uploads are paused by a refusal of the whole tenant (credential, data source, log format); the batches wait in the spool.",
        field: "upload.paused",
        value: Value::Number(|r| flag(r.upload.paused.is_some())),
    },
    Metric {
        name: "mcas_data_source_found",
        kind: Kind::Gauge,
        help: "1 when MCAS lists mcas.data_source, 0 when it does not, -1 when not known (not read yet, or the list is unreadable).",
        field: "mcas.data_source_found",
        value: Value::Number(|r| r.mcas.data_source_found.map_or(-1.0, flag)),
    },
    Metric {
        name: "mcas_last_data_received_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When MCAS last received data for the data source, as MCAS says (0: never or not known).",
        field: "mcas.last_data_received",
        value: Value::Number(|r| timestamp(&r.mcas.last_data_received)),
    },
    Metric {
        name: "upload_api_calls_total",
        kind: Kind::Counter,
        help: "MCAS API calls made; the tenant allows 30 a minute for all its agents together.",
        field: "upload.api_calls",
        value: Value::Number(|r| r.upload.api_calls as f64),
    },
    Metric {
        name: "upload_retries_total",
        kind: Kind::Counter,
        help: "Upload attempts that failed and were tried again.",
        field: "upload.retries",
        value: Value::Number(|r| r.upload.retries as f64),
    },
    Metric {
        name: "upload_throttled_total",
        kind: Kind::Counter,
        help: "API calls MCAS answered 429 (the tenant's throttle, shared with its other agents).",
        field: "upload.throttled",
        value: Value::Number(|r| r.upload.throttled as f64),
    },
    Metric {
        name: "upload_api_rate",
        kind: Kind::Gauge,
        help: "This agent's limit of API calls a minute now: halved on each 429, growing back while calls succeed.",
        field: "upload.api_rate",
        value: Value::Number(|r| r.upload.api_rate),
    },
    Metric {
        name: "upload_outage_retry_seconds",
        kind: Kind::Gauge,
        help: "Seconds between attempts while MCAS fails for every batch (upload.outage_retry).",
        field: "upload.outage_retry",
        value: Value::Number(|r| r.upload.outage_retry),
    },
    Metric {
        name: "upload_outage",
        kind: Kind::Gauge,
        help: "1 while MCAS fails for every batch (attempts at the outage cadence), else 0.",
        field: "upload.outage",
        value: Value::Number(|r| f64::from(u8::from(r.upload.outage))),
    },
    Metric {
        name: "upload_delivery_latency_seconds",
        kind: Kind::Histogram,
        help: "Records delivered, by the time from their batch's first record's arrival to MCAS's acceptance.",
        field: "upload.delivery_latency",
        value: Value::Histogram(|r| &r.upload.delivery_latency),
    },
    Metric {
        name: "sync_urls",
        kind: Kind::Gauge,
        help: "URLs in the category after the last sync.",
        field: "sync.urls",
        value: Value::Number(|r| r.sync.urls as f64),
    },
    Metric {
        name: "sync_added",
        kind: Kind::Gauge,
        help: "URLs the last sync added to the category.",
        field: "sync.added",
        value: Value::Number(|r| r.sync.added as f64),
    },
    Metric {
        name: "sync_removed",
        kind: Kind::Gauge,
        help: "URLs the last sync removed from the category.",
        field: "sync.removed",
        value: Value::Number(|r| r.sync.removed as f64),
    },
    Metric {
        name: "sync_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the last sync succeeded (0: never).",
        field: "sync.last_success",
        value: Value::Number(|r| timestamp(&r.sync.last_success)),
    },
    Metric {
        name: "sync_next_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the next sync is due (0: not scheduled).",
        field: "sync.next",
        value: Value::Number(|r| timestamp(&r.sync.next)),
    },
    Metric {
        name: "sync_failing",
        kind: Kind::Gauge,
        help: "1 while the last sync failed.",
        field: "sync.last_error",
        value: Value::Number(|r| flag(r.sync.last_error.is_some())),
    },
    Metric {
        name: "sync_zia_enabled",
        kind: Kind::Gauge,
        help: "1 when a ZIA API is configured (zia.base_url) and the category is pushed there.",
        field: "sync.zia.enabled",
        value: Value::Number(|r| flag(r.sync.zia.enabled)),
    },
    Metric {
        name: "sync_zia_urls",
        kind: Kind::Gauge,
        help: "URLs the category holds in ZIA after the last push.",
        field: "sync.zia.urls",
        value: Value::Number(|r| r.sync.zia.urls as f64),
    },
    Metric {
        name: "sync_zia_quota_remaining",
        kind: Kind::Gauge,
        help: "The tenant's custom URL quota left in ZIA after the last push (NaN: not read yet).",
        field: "sync.zia.quota_remaining",
        value: Value::Number(|r| r.sync.zia.quota_remaining.map_or(f64::NAN, |q| q as f64)),
    },
    Metric {
        name: "sync_zia_last_push_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the category was last pushed into ZIA (0: never).",
        field: "sync.zia.last_push",
        value: Value::Number(|r| timestamp(&r.sync.zia.last_push)),
    },
    Metric {
        name: "sync_zia_last_activation_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the agent last activated a change in ZIA (0: never).",
        field: "sync.zia.last_activation",
        value: Value::Number(|r| timestamp(&r.sync.zia.last_activation)),
    },
    Metric {
        name: "sync_zia_failing",
        kind: Kind::Gauge,
        help: "1 while the last push into ZIA failed.",
        field: "sync.zia.last_error",
        value: Value::Number(|r| flag(r.sync.zia.last_error.is_some())),
    },
    Metric {
        name: "sync_zia_pushes_total",
        kind: Kind::Counter,
        help: "Pushes into ZIA that succeeded.",
        field: "sync.zia.pushes",
        value: Value::Number(|r| r.sync.zia.pushes as f64),
    },
    Metric {
        name: "sync_zia_api_calls_total",
        kind: Kind::Counter,
        help: "ZIA API calls (logins and retries included).",
        field: "sync.zia.api_calls",
        value: Value::Number(|r| r.sync.zia.api_calls as f64),
    },
    Metric {
        name: "sync_zia_throttled_total",
        kind: Kind::Counter,
        help: "ZIA answers 429 (rate limit).",
        field: "sync.zia.throttled",
        value: Value::Number(|r| r.sync.zia.throttled as f64),
    },
    Metric {
        name: "sync_zia_activations_total",
        kind: Kind::Counter,
        help: "Activations the agent asked ZIA for.",
        field: "sync.zia.activations",
        value: Value::Number(|r| r.sync.zia.activations as f64),
    },
    Metric {
        name: "memory_ram_bytes",
        kind: Kind::Gauge,
        help: "The machine's memory.",
        field: "memory.ram_total",
        value: Value::Number(|r| r.memory.ram_total as f64),
    },
    Metric {
        name: "memory_meets_8gb_floor",
        kind: Kind::Gauge,
        help: "1 when the machine has the 8 GB the MCAS feed needs.",
        field: "memory.meets_8gb_floor",
        value: Value::Number(|r| flag(r.memory.meets_8gb_floor)),
    },
    Metric {
        name: "memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The memory budget of the pipeline.",
        field: "memory.limit",
        value: Value::Number(|r| r.memory.limit as f64),
    },
    Metric {
        name: "memory_in_use_bytes",
        kind: Kind::Gauge,
        help: "Bytes of the budget in use.",
        field: "memory.in_use",
        value: Value::Number(|r| r.memory.in_use as f64),
    },
];

/// The report as Prometheus text.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    for metric in METRICS {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let name = metric.name;
        let _ = writeln!(
            out,
            "# HELP nss_agent_{name} {} (nss status: {})",
            metric.help, metric.field
        );
        let _ = writeln!(out, "# TYPE nss_agent_{name} {kind}");
        match metric.value {
            Value::Number(value) => {
                let _ = writeln!(out, "nss_agent_{name} {}", value(report));
            }
            Value::Histogram(histogram) => {
                let h = histogram(report);
                for bucket in &h.buckets {
                    let _ = writeln!(
                        out,
                        "nss_agent_{name}_bucket{{le=\"{}\"}} {}",
                        bucket.le, bucket.count
                    );
                }
                let _ = writeln!(out, "nss_agent_{name}_bucket{{le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "nss_agent_{name}_sum {}", h.sum);
                let _ = writeln!(out, "nss_agent_{name}_count {}", h.count);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The dotted paths of the figures (numbers and flags) of a report, e.g. `feed.records`.
    fn figures(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    figures(value, &path, out);
                }
            }
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                out.push(prefix.to_string())
            }
            _ => {}
        }
    }

    #[test]
    fn every_figure_of_the_status_is_a_metric() {
        let stats = crate::status::Stats::default();
        // Null until known: set, so that it counts as a figure.
        *stats.data_source.found.lock().unwrap() = Some(true);
        let report = stats.report(Default::default(), Default::default());
        let mut paths = Vec::new();
        figures(&serde_json::to_value(&report).unwrap(), "", &mut paths);
        // Of the process itself, not a figure to watch over time.
        let not_figures = ["running", "pid"];
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
    }

    #[test]
    fn histograms_in_the_prometheus_format() {
        let stats = crate::status::Stats::default();
        stats.latency.sealed(0, Duration::from_millis(1500));
        stats.latency.sealed(1, Duration::from_secs(4));
        let text = render(&stats.report(Default::default(), Default::default()));
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
