//! The data sources list, done_upload's refusals of an unknown data source or log
//! format, and the three answers to a repeated done_upload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcas_emulator::{DataSource, RepeatedDone};
use serde_json::{json, Value};

mod common;

use common::*;

impl Harness {
    async fn streams(&self) -> Value {
        let resp = self
            .authed_get(self.api("/api/discovery/streams/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn done_to(&self, url: &str, stream: &str) -> (u16, Value) {
        let resp = self
            .authed_post(self.api("/api/v1/discovery/done_upload/"))
            .json(&json!({"uploadUrl": url, "inputStreamName": stream}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> u16 {
        self.http
            .request(method, format!("{}/_emulator{path}", self.emu.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn streams_list_and_last_data_received() {
    let h = start().await;
    let v = h.streams().await;
    let streams = v["streams"].as_array().unwrap();
    // The "Global View" and a logical report come before the one data source.
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[0]["displayName"], "Global View");
    assert!(streams[0].get("logType").is_none());
    assert_ne!(streams[1]["streamType"], 1);
    let nss = &streams[2];
    assert_eq!(nss["displayName"], "NSS");
    assert_eq!(nss["logType"], 170);
    assert_eq!(nss["streamType"], 1);
    assert!(nss.get("lastDataReceived").is_none());
    assert!(humantime::parse_rfc3339(nss["created"].as_str().unwrap()).is_ok());

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let url = h.committed("ZSCALER_QRADAR", &["a", "b"]).await;
    assert_eq!(h.done_to(&url, "NSS").await.0, 200);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let at = h.streams().await["streams"][2]["lastDataReceived"]
        .as_str()
        .unwrap()
        .to_string();
    let ms = humantime::parse_rfc3339(&at)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // ISO-8601 with milliseconds, as MCAS writes it.
    assert!(
        (before..=after).contains(&ms) && at.ends_with('Z') && at.len() == 24,
        "{before} <= {at} <= {after}"
    );
    assert!(h.emu.data_sources()[0].last_data_received.is_some());

    // Needs authentication like every API call.
    let anonymous = h
        .http
        .get(h.api("/api/discovery/streams/"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(h.emu.stats().api_calls, 5);
}

#[tokio::test]
async fn unknown_data_source_refused_until_it_exists() {
    let h = start().await;
    let url = h.committed("ZSCALER_QRADAR", &["r1", "r2", "r3"]).await;
    let (status, body) = h.done_to(&url, "Zscaler NSS").await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("\"Zscaler NSS\" does not exist"),
        "{body}"
    );
    // Names are exact.
    assert_eq!(h.done_to(&url, "nss").await.0, 400);
    assert!(h.emu.uploads().is_empty());
    assert_eq!(h.emu.repeated_done(), 0);

    // Created through the control API, the same URL now goes through.
    assert_eq!(
        h.control(
            reqwest::Method::POST,
            "/streams",
            json!({"displayName": "Zscaler NSS", "logType": 170})
        )
        .await,
        200
    );
    assert_eq!(h.done_to(&url, "Zscaler NSS").await.0, 200);
    h.emu
        .wait_for_records(3, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.emu.uploads()[0].data_source, "Zscaler NSS");

    // Removed again: refused again.
    assert_eq!(
        h.control(reqwest::Method::DELETE, "/streams/Zscaler%20NSS", json!({}))
            .await,
        200
    );
    let url = h.committed("ZSCALER_QRADAR", &["r4"]).await;
    assert_eq!(h.done_to(&url, "Zscaler NSS").await.0, 400);
    h.emu.add_data_source(DataSource::new("Zscaler NSS", 170));
    assert_eq!(h.done_to(&url, "Zscaler NSS").await.0, 200);
    assert!(h.emu.remove_data_source("NSS"));
    let names: Vec<String> = h
        .emu
        .data_sources()
        .into_iter()
        .map(|s| s.source.display_name)
        .collect();
    assert_eq!(names, ["Zscaler NSS"]);
}

#[tokio::test]
async fn unknown_log_format_refused() {
    let h = start().await;
    for known in [
        "ZSCALER",
        "ZSCALER_QRADAR",
        "ZSCALER_CEF",
        "ZSCALER_SYSLOG",
        "ZSCALER_QRADAR_SYSLOG",
        "ZSCALER_CEF_SYSLOG",
    ] {
        let url = h.committed(known, &["x"]).await;
        assert_eq!(h.done_to(&url, "NSS").await.0, 200, "{known}");
    }
    for unknown in ["LEEF", "zscaler_qradar", "QRADAR"] {
        let url = h.committed(unknown, &["x"]).await;
        let (status, body) = h.done_to(&url, "NSS").await;
        assert_eq!(status, 400, "{unknown}");
        assert_eq!(body["source"], unknown);
        assert!(body["detail"].as_str().unwrap().contains(unknown));
    }
    assert_eq!(h.emu.uploads().len(), 6);
}

#[tokio::test]
async fn repeated_done_upload_modes() {
    let h = start_with(|c| c.repeated_done = RepeatedDone::Refuse).await;
    let url = h.committed("ZSCALER_QRADAR", &["a", "b"]).await;
    assert_eq!(h.done_to(&url, "NSS").await.0, 200);
    let (status, body) = h.done_to(&url, "NSS").await;
    assert_eq!(status, 400);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("already processed"));
    assert_eq!((h.emu.stats().records, h.emu.repeated_done()), (2, 1));

    assert_eq!(
        h.control(
            reqwest::Method::POST,
            "/repeated_done",
            json!({"mode": "ingest-twice"})
        )
        .await,
        200
    );
    assert_eq!(h.done_to(&url, "NSS").await.0, 200);
    let s = h.emu.stats();
    assert_eq!((s.uploads, s.records, s.repeated_done), (2, 4, 2));
    assert_eq!(h.emu.uploads()[1].upload_url, url);

    assert_eq!(
        h.control(
            reqwest::Method::POST,
            "/repeated_done",
            json!({"mode": "ok"})
        )
        .await,
        200
    );
    assert_eq!(h.done_to(&url, "NSS").await.0, 200);
    assert_eq!(h.emu.stats().records, 4);
    assert_eq!(
        h.control(
            reqwest::Method::POST,
            "/repeated_done",
            json!({"mode": "twice"})
        )
        .await,
        400
    );
}
