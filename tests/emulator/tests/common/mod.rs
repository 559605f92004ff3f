//! The test harness shared by the emulator's HTTPS tests: an emulator in a temporary
//! directory and a client that trusts its CA.

#![allow(dead_code)]

use std::time::Duration;

use mcas_emulator::{Emulator, EmulatorConfig};
use reqwest::{IntoUrl, RequestBuilder};
use serde_json::{json, Value};

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Harness {
    pub emu: Emulator,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn start_with(edit: impl FnOnce(&mut EmulatorConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(TOKEN, &dir.path().join("store"), &dir.path().join("certs"));
    edit(&mut cfg);
    let emu = Emulator::start(cfg).await.unwrap();
    let http = client(&emu, false);
    Harness {
        emu,
        http,
        _dir: dir,
    }
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

pub fn client(emu: &Emulator, h2: bool) -> reqwest::Client {
    let ca = std::fs::read(emu.ca_pem_path()).unwrap();
    let mut b = mcas_emulator::client_trusting(&ca)
        .unwrap()
        .timeout(Duration::from_secs(30));
    b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Harness {
    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    /// A GET with the API token.
    pub fn authed_get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.http
            .get(url)
            .header("Authorization", format!("Token {TOKEN}"))
    }

    /// A POST with the API token.
    pub fn authed_post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.http
            .post(url)
            .header("Authorization", format!("Token {TOKEN}"))
    }

    /// upload_url's answer: the blob URL and the provider.
    pub async fn upload_target(&self, filename: &str) -> (String, String) {
        let resp = self
            .authed_get(self.api("/api/v1/discovery/upload_url/"))
            .query(&[("filename", filename), ("source", "ZSCALER_QRADAR")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        (
            v["url"].as_str().unwrap().to_string(),
            v["provider"].as_str().unwrap_or_default().to_string(),
        )
    }

    pub async fn upload_url(&self, filename: &str) -> String {
        self.upload_target(filename).await.0
    }

    /// A committed blob at a new upload URL, for `source`.
    pub async fn committed(&self, source: &str, lines: &[&str]) -> String {
        let resp = self
            .authed_get(self.api("/api/v1/discovery/upload_url/"))
            .query(&[("filename", "b.log.gz"), ("source", source)])
            .send()
            .await
            .unwrap();
        let url = resp.json::<Value>().await.unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string();
        let put = self.put_blob(&url, mcas_emulator::gzip_lines(lines)).await;
        assert_eq!(put.status(), 201);
        url
    }

    pub async fn put_blob(&self, url: &str, data: Vec<u8>) -> reqwest::Response {
        self.http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", "2021-08-06")
            .body(data)
            .send()
            .await
            .unwrap()
    }

    pub async fn done(&self, url: &str) -> reqwest::Response {
        self.done_request(&self.http, url).send().await.unwrap()
    }

    /// A done_upload request for `url`, sent through `http`.
    pub fn done_request(&self, http: &reqwest::Client, url: &str) -> RequestBuilder {
        http.post(self.api("/api/v1/discovery/done_upload/"))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("content-type", "application/json")
            .body(json!({"uploadUrl": url, "inputStreamName": "NSS"}).to_string())
    }
}
