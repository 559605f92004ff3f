//! The blob step through Azurite: the emulator's SAS URLs must be accepted by Azure's own
//! emulator, and done_upload must find the committed blob there.
//!
//! Runs when `scripts/azurite start DIR` has set AZURITE_BLOB_ENDPOINT and
//! AZURITE_CERT_DIR (the certificates Azurite serves); skipped otherwise.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mcas_emulator::{block_list_xml, AzuriteTarget};

mod common;

use common::*;

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
    let container = format!("mcas-test-{:08x}", std::process::id() ^ fastrand::u32(..));
    let harness = start_with(|cfg| {
        cfg.cert_dir = cert_dir.into();
        cfg.azurite = Some(AzuriteTarget::dev(&endpoint, &container));
    })
    .await;
    let h = &harness;
    let (emu, http) = (&h.emu, &h.http);
    let upload_url = |name: &'static str| async move {
        let (url, provider) = h.upload_target(name).await;
        assert_eq!(provider, "azure");
        url
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
    assert_eq!(h.done(&url).await.status(), 400);
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
    let r = h.put_blob(&url, data.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(h.done(&url).await.status(), 200);
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
    assert_eq!(h.done(&url).await.status(), 400);
    let r = http
        .put(format!("{url}&comp=blocklist"))
        .header("x-ms-version", "2021-08-06")
        .body(block_list_xml(&ids))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(h.done(&url).await.status(), 200);
    assert_eq!(h.done(&url).await.status(), 200);
    let ups = emu.uploads();
    assert_eq!(ups.len(), 2);
    assert_eq!((ups[1].records, ups[1].block_count), (4, 2));
    assert_eq!(ups[1].read().unwrap(), data);
    assert_eq!(emu.repeated_done(), 1);
    emu.shutdown();
}
