//! Drives the emulator over HTTPS the way a client of MCAS does: the three upload steps,
//! the block path, the checks a real service makes, faults and the throttle.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mcas_emulator::{block_list_xml, Endpoint, Fault, Provider};
use serde_json::{json, Value};

mod common;

use common::*;

#[tokio::test]
async fn three_steps_with_put_blob() {
    let h = start().await;
    assert_eq!(h.emu.domain(), format!("127.0.0.1:{}", h.emu.addr().port()));
    let url = h.upload_url("nss-2024-05-01T13:00:00.log.gz").await;
    assert!(
        url.starts_with(&format!("https://{}/blob/", h.emu.domain())),
        "{url}"
    );
    assert!(url.contains("sv=2020-10-02") && url.contains("sr=b") && url.contains("sp=cw"));

    let data = mcas_emulator::gzip_lines(&["rec 1", "rec 2", "", "rec 3"]);
    let resp = h.put_blob(&url, data.clone()).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().contains_key("etag"));

    let resp = h.done(&url).await;
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v, json!({"success": true}));
    h.emu
        .wait_for_records(3, Duration::from_secs(5))
        .await
        .unwrap();

    let ups = h.emu.uploads();
    assert_eq!(ups.len(), 1);
    let u = &ups[0];
    assert_eq!(u.filename, "nss-2024-05-01T13:00:00.log.gz");
    assert_eq!(u.source, "ZSCALER_QRADAR");
    assert_eq!(u.data_source, "NSS");
    assert_eq!(u.upload_url, url);
    assert!(!u.as_snapshot);
    assert_eq!(
        (u.bytes, u.records, u.block_count),
        (data.len() as u64, 3, 0)
    );
    assert_eq!(u.read().unwrap(), data);
    assert_eq!(
        u.records_decompressed().unwrap(),
        vec![b"rec 1".to_vec(), b"rec 2".to_vec(), b"rec 3".to_vec()]
    );
    assert!(u.decode_error.is_none());

    // Idempotent: a repeat answers 200 and records nothing new.
    assert_eq!(h.done(&url).await.status(), 200);
    assert_eq!(h.emu.uploads().len(), 1);
    assert_eq!(h.emu.repeated_done(), 1);

    let calls = h.emu.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.endpoint, c.method.as_str(), c.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(Endpoint::UploadUrl), "GET", 200),
            (Some(Endpoint::Blob), "PUT", 201),
            (Some(Endpoint::DoneUpload), "POST", 200),
            (Some(Endpoint::DoneUpload), "POST", 200),
        ]
    );
    assert_eq!(calls[1].body_len, data.len() as u64);
    assert_eq!(calls[1].header("x-ms-blob-type"), Some("BlockBlob"));
    let s = h.emu.stats();
    assert_eq!(
        (s.uploads, s.records, s.api_calls, s.repeated_done),
        (1, 3, 3, 1)
    );

    // Timed out wait reports what it has.
    let e = h
        .emu
        .wait_for_records(4, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("3 in 1 uploads"), "{e}");
    h.emu.shutdown();
}

#[tokio::test]
async fn block_path() {
    let h = start().await;
    let url = h.upload_url("big.gz").await;
    // Two gzip members across three blocks, split mid-member.
    let mut data = mcas_emulator::gzip_lines(&["a", "b", "c"]);
    data.extend(mcas_emulator::gzip_lines(&["d", "e"]));
    let parts = [&data[..7], &data[7..20], &data[20..]];
    // Ids whose base64 has '+', '/' and '=': they must be URL-encoded.
    let ids: Vec<String> = [[0xfbu8, 0xff, 0x00], [0xfb, 0xff, 0x01], [0xfb, 0xff, 0x02]]
        .iter()
        .map(|raw| B64.encode([raw.as_slice(), b"0"].concat()))
        .collect();
    assert!(ids[0].contains('+') && ids[0].contains('/') && ids[0].contains('='));
    // Put the blocks out of order: the list decides the order.
    for i in [2, 0, 1] {
        let resp = h
            .http
            .put(format!("{url}&comp=block&blockid={}", enc(&ids[i])))
            .body(parts[i].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    // Not committed yet: done_upload refuses.
    assert_eq!(h.done(&url).await.status(), 400);
    // An id of another length is refused.
    let resp = h
        .http
        .put(format!(
            "{url}&comp=block&blockid={}",
            enc(&B64.encode(b"longer-id"))
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-ms-error-code"], "InvalidBlobOrBlock");
    // A raw '+' arrives as a space: not base64.
    let resp = h
        .http
        .put(format!("{url}&comp=block&blockid={}", ids[0]))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["x-ms-error-code"],
        "InvalidQueryParameterValue"
    );
    // An unknown id in the list.
    let resp = h
        .http
        .put(format!("{url}&comp=blocklist"))
        .body(block_list_xml(&[ids[0].as_str(), "AAAAAA=="]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-ms-error-code"], "InvalidBlockList");
    // Malformed XML.
    let resp = h
        .http
        .put(format!("{url}&comp=blocklist"))
        .body("<BlockList><Latest>x</BlockList>")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-ms-error-code"], "InvalidXmlDocument");

    let resp = h
        .http
        .put(format!("{url}&comp=blocklist"))
        .header("content-type", "application/xml")
        .body(block_list_xml(&ids))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    assert_eq!(h.done(&url).await.status(), 200);
    let u = &h.emu.uploads()[0];
    assert_eq!((u.block_count, u.records), (3, 5));
    assert_eq!(u.read().unwrap(), data);

    // Recommitting with <Committed> references reorders without new data.
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Committed>{}</Committed><Committed>{}</Committed></BlockList>",
        ids[2], ids[0]
    );
    let resp = h
        .http
        .put(format!("{url}&comp=blocklist"))
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // The finalized upload kept its bytes.
    assert_eq!(h.emu.uploads()[0].read().unwrap(), data);
}

#[tokio::test]
async fn validation_like_the_real_services() {
    let h = start_with(|c| c.banned = vec![".reddit.com".into(), ".redd.it".into()]).await;
    let upload_url = h.api("/api/v1/discovery/upload_url/?filename=a.gz&source=ZSCALER");

    // Auth.
    let r = h.http.get(&upload_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("detail"));
    let r = h
        .http
        .get(&upload_url)
        .header("Authorization", "Token nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .get(&upload_url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Parameters.
    let r = h
        .authed_get(h.api("/api/v1/discovery/upload_url/?filename=a.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown paths, a missing trailing slash included.
    let r = h
        .authed_get(h.api("/api/v1/discovery/upload_url?filename=a&source=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Wrong method.
    let r = h.authed_post(&upload_url).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let url = h.upload_url("b.gz").await;
    let data = mcas_emulator::gzip_lines(&["x"]);
    // No x-ms-blob-type.
    let r = h.http.put(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-ms-error-code"], "MissingRequiredHeader");
    // The API token must never go to the blob store.
    let r = h
        .http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("Authorization", format!("Token {TOKEN}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let leaked = h.emu.calls_to(Endpoint::Blob).pop().unwrap();
    assert_eq!(
        leaked.header("authorization"),
        Some(format!("Token {TOKEN}").as_str())
    );
    assert_eq!(leaked.status, 400);
    // Tampered signature, missing signature, unknown blob.
    let tampered = url.replace("sig=", "sig=A");
    assert_eq!(h.put_blob(&tampered, data.clone()).await.status(), 403);
    let unsigned = url.split('?').next().unwrap().to_string();
    assert_eq!(h.put_blob(&unsigned, data.clone()).await.status(), 403);
    let other = url.replace("-b.gz", "-c.gz");
    assert_eq!(h.put_blob(&other, data.clone()).await.status(), 403);
    // Reading is not granted.
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 403);
    // A chunked body (no Content-Length) is refused like Azure does.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(data.clone())];
    let r = h
        .http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 411);

    // done_upload: before the blob exists, for a URL never issued, without fields,
    // with a wrong content type.
    assert_eq!(h.done(&url).await.status(), 400);
    assert_eq!(h.done(&tampered).await.status(), 400);
    assert_eq!(h.done("https://example.com/x?sig=1").await.status(), 400);
    let r = h
        .authed_post(h.api("/api/v1/discovery/done_upload/"))
        .header("content-type", "application/json")
        .body(json!({"uploadUrl": url}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .authed_post(h.api("/api/v1/discovery/done_upload/"))
        .header("content-type", "text/plain")
        .body("uploadUrl=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Form-encoded is accepted.
    assert_eq!(h.put_blob(&url, data.clone()).await.status(), 201);
    let r = h
        .authed_post(h.api("/api/v1/discovery/done_upload/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "uploadUrl={}&inputStreamName=NSS&uploadAsSnapshot=true",
            enc(&url)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A snapshot report: nothing reaches the data source.
    assert!(h.emu.uploads().is_empty());
    assert!(h.emu.snapshots()[0].as_snapshot);
    assert_eq!(h.emu.snapshots()[0].records, 1);
    assert_eq!(h.emu.stats().records, 0);
    assert_eq!(h.emu.stats().snapshot_reports, 1);

    // Block scripts.
    let bs = |q: &str| {
        h.authed_get(h.api(&format!("/api/discovery_block_scripts/{q}")))
            .send()
    };
    let r = bs("?format=120&type=banned").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), ".reddit.com\n.redd.it\n");
    assert_eq!(
        bs("?format=120&type=allowed")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        ""
    );
    h.emu.set_banned(vec![]);
    assert_eq!(
        bs("?format=120&type=banned")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        ""
    );
    for q in [
        "?type=banned",
        "?format=121&type=banned",
        "?format=120",
        "?format=120&type=x",
    ] {
        assert_eq!(bs(q).await.unwrap().status(), 400, "{q}");
    }
}

#[tokio::test]
async fn expired_upload_url() {
    let h = start_with(|c| c.sas_ttl = Duration::from_millis(1100)).await;
    let url = h.upload_url("late.gz").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = h.put_blob(&url, mcas_emulator::gzip_lines(&["x"])).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ms-error-code"], "AuthenticationFailed");
}

#[tokio::test]
async fn faults() {
    let h = start().await;
    // Status faults, in FIFO order, then normal service.
    h.emu.push_fault(
        Endpoint::UploadUrl,
        Fault::Status {
            code: 503,
            retry_after: Some("2".into()),
            body: "{\"error\":\"busy\"}".into(),
        },
        2,
    );
    h.emu.push_fault(
        Endpoint::UploadUrl,
        Fault::Status {
            code: 500,
            retry_after: None,
            body: "oops".into(),
        },
        1,
    );
    let get = || {
        h.authed_get(h.api("/api/v1/discovery/upload_url/?filename=f.gz&source=ZSCALER"))
            .send()
    };
    for _ in 0..2 {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "2");
    }
    assert_eq!(get().await.unwrap().status(), 500);
    let url = serde_json::from_slice::<Value>(&get().await.unwrap().bytes().await.unwrap())
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();

    // Drop: the connection closes without an answer; the call is recorded with status 0.
    h.emu.push_fault(Endpoint::Blob, Fault::Drop, 1);
    let r = h
        .http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(mcas_emulator::gzip_lines(&["x"]))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(h.emu.calls_to(Endpoint::Blob).last().unwrap().status, 0);
    assert_eq!(
        h.put_blob(&url, mcas_emulator::gzip_lines(&["x", "y"]))
            .await
            .status(),
        201
    );

    // Delay: the client times out, the request takes effect anyway.
    h.emu.push_fault(
        Endpoint::DoneUpload,
        Fault::Delay(Duration::from_millis(800)),
        1,
    );
    let r = h
        .authed_post(h.api("/api/v1/discovery/done_upload/"))
        .header("content-type", "application/json")
        .timeout(Duration::from_millis(200))
        .body(json!({"uploadUrl": url, "inputStreamName": "NSS"}).to_string())
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    h.emu
        .wait_for_records(2, Duration::from_secs(5))
        .await
        .unwrap();
    // The client's retry is a repeat.
    assert_eq!(h.done(&url).await.status(), 200);
    assert_eq!(h.emu.uploads().len(), 1);
    assert_eq!(h.emu.repeated_done(), 1);
    let done_calls = h.emu.calls_to(Endpoint::DoneUpload);
    assert_eq!(
        done_calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [200, 200]
    );
}

#[tokio::test]
async fn throttle() {
    let h = start_with(|c| c.throttle_per_minute = Some(3)).await;
    let get = || {
        h.authed_get(h.api("/api/discovery_block_scripts/?format=120&type=banned"))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&wait), "{wait}");
    // Blob requests are not API calls.
    let url_req = h
        .authed_get(h.api("/api/v1/discovery/upload_url/?filename=f&source=s"))
        .send()
        .await
        .unwrap();
    assert_eq!(url_req.status(), 429);
    h.emu.set_throttle(None);
    assert_eq!(get().await.unwrap().status(), 200);
    let s = h.emu.stats();
    assert_eq!((s.api_calls, s.throttled), (6, 2));
}

#[tokio::test]
async fn aws_provider_and_http2() {
    let h = start_with(|c| c.provider = Provider::Aws).await;
    let r = h
        .authed_get(h.api("/api/v1/discovery/upload_url/?filename=s3.gz&source=ZSCALER"))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["provider"], "aws");
    let url = v["url"].as_str().unwrap().to_string();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let h2 = client(&h.emu, true);
    let data = mcas_emulator::gzip_lines(&["1", "2"]);
    let r = h2.put(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = h.done_request(&h2, &url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let u = &h.emu.uploads()[0];
    assert_eq!(
        (u.records, u.block_count, u.bytes),
        (2, 0, data.len() as u64)
    );
}

#[tokio::test]
async fn control_api() {
    let h = start().await;
    let post = |path: &str, body: String| h.http.post(h.api(path)).body(body).send();
    let r = post(
        "/_emulator/faults",
        json!({"endpoint":"done_upload","times":2,"status":503,"retry_after":"2"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        post(
            "/_emulator/faults",
            json!({"endpoint":"blob","drop":true}).to_string()
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post(
            "/_emulator/faults",
            json!({"endpoint":"upload_url","delay_ms":10,"times":1}).to_string()
        )
        .await
        .unwrap()
        .status(),
        200
    );
    for bad in [
        json!({"endpoint":"nope","drop":true}),
        json!({"endpoint":"blob"}),
        json!({"endpoint":"blob","drop":true,"status":500}),
    ] {
        assert_eq!(
            post("/_emulator/faults", bad.to_string())
                .await
                .unwrap()
                .status(),
            400
        );
    }
    assert_eq!(
        post("/_emulator/banned", ".a.com\n\n.b.com\n".into())
            .await
            .unwrap()
            .status(),
        200
    );
    let url = h.upload_url("c.gz").await; // delayed 10 ms
    assert_eq!(h.done(&url).await.status(), 503);
    let stats: Value = serde_json::from_slice(
        &h.http
            .get(h.api("/_emulator/stats"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["api_calls"], 2);
    assert_eq!(stats["uploads"], 0);
    for key in [
        "uploads",
        "records",
        "bytes",
        "api_calls",
        "throttled",
        "repeated_done",
    ] {
        assert!(stats.get(key).is_some(), "{key}");
    }
    let r = h
        .authed_get(h.api("/api/discovery_block_scripts/?format=120&type=banned"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), ".a.com\n.b.com\n");
    let uploads: Value = serde_json::from_slice(
        &h.http
            .get(h.api("/_emulator/uploads"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(uploads, json!([]));
    // Control requests are not recorded as calls.
    assert!(h
        .emu
        .calls()
        .iter()
        .all(|c| !c.path.starts_with("/_emulator")));
}
