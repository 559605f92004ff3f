//! The blob step through Azurite: the emulator's SAS URLs must be accepted by Azure's own
//! emulator, and done_upload must find the committed blob there.
//!
//! Runs when `scripts/azurite start DIR` has set AZURITE_BLOB_ENDPOINT and
//! AZURITE_CERT_DIR (the certificates Azurite serves); skipped otherwise.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mcas_emulator::{block_list_xml, AzuriteTarget, Emulator, EmulatorConfig};
use serde_json::{json, Value};

const TOKEN: &str = "azurite-test-token-0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn upload_through_azurite() {
    let Ok(endpoint) = std::env::var("AZURITE_BLOB_ENDPOINT") else {
        eprintln!(
            "note: upload_through_azurite skipped: AZURITE_BLOB_ENDPOINT is not set \
             (eval \"$(scripts/azurite start DIR)\" sets it)"
        );
        return;
    };
    let cert_dir = std::env::var("AZURITE_CERT_DIR")
        .expect("AZURITE_CERT_DIR must name the certificates Azurite serves");
    let dir = tempfile::tempdir().unwrap();
    let container = format!("mcas-test-{:08x}", std::process::id() ^ fastrand::u32(..));
    let mut cfg = EmulatorConfig::new(TOKEN, &dir.path().join("store"), cert_dir.as_ref());
    cfg.azurite = Some(AzuriteTarget::dev(&endpoint, &container));
    let emu = Emulator::start(cfg).await.unwrap();

    let ca = std::fs::read(emu.ca_pem_path()).unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let api = |p: &str| format!("{}{p}", emu.base_url());
    let upload_url = |name: &'static str| {
        let http = http.clone();
        let u = api("/api/v1/discovery/upload_url/");
        async move {
            let r = http
                .get(u)
                .query(&[("filename", name), ("source", "ZSCALER_QRADAR")])
                .header("Authorization", format!("Token {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(v["provider"], "azure");
            v["url"].as_str().unwrap().to_string()
        }
    };
    let done = |url: String| {
        http.post(api("/api/v1/discovery/done_upload/"))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("content-type", "application/json")
            .body(
                json!({"uploadUrl": url, "inputStreamName": "NSS", "uploadAsSnapshot": false})
                    .to_string(),
            )
            .send()
    };

    // Put Blob.
    let url = upload_url("whole.gz").await;
    assert!(
        url.starts_with(&format!("{endpoint}/{container}/")),
        "{url}"
    );
    assert!(
        url.contains("sv=2021-08-06") && url.contains("sp=rcw"),
        "{url}"
    );
    // Nothing uploaded yet.
    assert_eq!(done(url.clone()).await.unwrap().status(), 400);
    let data = mcas_emulator::gzip_lines(&["r1", "r2", "r3"]);
    // Azurite checks the signature: a tampered one is refused.
    let r = http
        .put(url.replace("sig=", "sig=AAAA"))
        .header("x-ms-blob-type", "BlockBlob")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", "2021-08-06")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(done(url.clone()).await.unwrap().status(), 200);
    emu.wait_for_records(3, Duration::from_secs(10))
        .await
        .unwrap();
    let u = &emu.uploads()[0];
    assert_eq!(
        (u.records, u.block_count, u.bytes),
        (3, 0, data.len() as u64)
    );
    assert_eq!(u.read().unwrap(), data);

    // Put Block + Put Block List.
    let url = upload_url("blocks.gz").await;
    let data = mcas_emulator::gzip_lines(&["b1", "b2", "b3", "b4"]);
    let (first, second) = data.split_at(data.len() / 2);
    let ids = [B64.encode(b"blk-000000"), B64.encode(b"blk-000001")];
    for (id, part) in ids.iter().zip([first, second]) {
        let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let r = http
            .put(format!("{url}&comp=block&blockid={enc}"))
            .header("x-ms-version", "2021-08-06")
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    // Blocks alone are not a blob.
    assert_eq!(done(url.clone()).await.unwrap().status(), 400);
    let r = http
        .put(format!("{url}&comp=blocklist"))
        .header("x-ms-version", "2021-08-06")
        .body(block_list_xml(&ids))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(done(url.clone()).await.unwrap().status(), 200);
    assert_eq!(done(url.clone()).await.unwrap().status(), 200);
    let ups = emu.uploads();
    assert_eq!(ups.len(), 2);
    assert_eq!((ups[1].records, ups[1].block_count), (4, 2));
    assert_eq!(ups[1].read().unwrap(), data);
    assert_eq!(emu.repeated_done(), 1);
    emu.shutdown();
}
