//! Every uploaded line read by the parser the upload's `source` names, through the HTTPS
//! API and the control API: lines that do not parse counted (the governance log's "The
//! log format doesn't match"), events older than 90 days counted as ignored; and upload
//! URLs pointed at another host on request.

use std::time::{Duration, SystemTime};

use mcas_emulator::log_lines::nss_time;
use serde_json::{json, Value};

mod common;

use common::*;

impl Harness {
    /// Uploads `lines` with `source` into `NSS`, all three steps.
    async fn upload(&self, source: &str, lines: &[&str]) {
        let url = self.committed(source, lines).await;
        assert_eq!(self.done(&url).await.status(), 200);
    }

    async fn control_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/_emulator{path}", self.emu.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn sample(at: SystemTime, id: u32) -> String {
    format!("{} zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Blocked\tsrc=185.27.134.11\turl=www.example.com/\trecordid={id}\tdstBytes=596219", nss_time(at))
}

#[tokio::test]
async fn lines_are_read_by_the_parser_the_source_names() {
    let h = start().await;
    let now = SystemTime::now();
    let old = now - Duration::from_secs(91 * 86_400);
    let recent = sample(now, 1);
    let ancient = sample(old, 2);
    let bare = recent.split_once("zscaler-nss: ").unwrap().1.to_string();
    // QRadar LEEF: the feed's lines, a bare header too; the 2017-style old one ignored.
    h.upload("ZSCALER_QRADAR", &[&recent, &ancient, &bare, "junk"])
        .await;
    // The syslog variant: the bare header is not read.
    h.upload("ZSCALER_QRADAR_SYSLOG", &[&recent, &bare]).await;
    // CEF wants its own header: the LEEF line is not read.
    h.upload("ZSCALER_CEF", &[&recent]).await;

    let stats = h.emu.stats();
    assert_eq!(
        (
            stats.records,
            stats.unparsed_lines,
            stats.ignored_old_events
        ),
        (7, 3, 1)
    );
    let counts = h.emu.line_counts("NSS");
    assert_eq!((counts.lines, counts.ingested()), (7, 3));

    let log = h.control_get("/governance").await;
    let entries: Vec<(Value, Value, Value, Value)> = log["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["source"].clone(),
                u["status"].clone(),
                u["unparsed"].clone(),
                u["ignored_old"].clone(),
            )
        })
        .collect();
    let mismatch = json!("The log format doesn't match");
    assert_eq!(
        entries,
        vec![
            (
                json!("ZSCALER_QRADAR"),
                mismatch.clone(),
                json!(1),
                json!(1)
            ),
            (
                json!("ZSCALER_QRADAR_SYSLOG"),
                mismatch.clone(),
                json!(1),
                json!(0)
            ),
            (json!("ZSCALER_CEF"), mismatch, json!(1), json!(0)),
        ]
    );
    let stats = h.control_get("/stats").await;
    assert_eq!(stats["unparsed_lines"], 3);
    assert_eq!(stats["ignored_old_events"], 1);
}

#[tokio::test]
async fn a_file_of_the_feeds_lines_is_completed() {
    let h = start().await;
    let lines: Vec<String> = (0..5).map(|n| sample(SystemTime::now(), n)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    h.upload("ZSCALER_QRADAR", &lines).await;
    let log = h.control_get("/governance").await;
    assert_eq!(log["uploads"][0]["status"], "Completed", "{log}");
    assert_eq!(h.emu.line_counts("NSS").ingested(), 5);
}

#[tokio::test]
async fn upload_urls_can_name_another_host() {
    let h = start().await;
    let resp = h
        .http
        .post(format!("{}/_emulator/blob_host", h.emu.base_url()))
        .json(&json!({"host": "acct.blob.core.windows.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (url, _) = h.upload_target("x.gz").await;
    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(parsed.host_str(), Some("acct.blob.core.windows.net"));
    assert_eq!(parsed.port(), None);
    assert!(parsed.path().starts_with("/blob/") && parsed.query().unwrap().contains("sig="));
    h.emu.set_blob_host(None);
    let (url, _) = h.upload_target("y.gz").await;
    assert!(url.starts_with(&h.emu.base_url()), "{url}");
}
