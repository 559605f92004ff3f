//! Step 2: the file to the pre-signed blob URL. Not an API call: no token, no rate limit.

use std::io;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Client, RequestBuilder};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::client::{Provider, UploadTarget};
use super::error::{ApiError, Step};
use super::retry_after::retry_after;

/// Azure takes a file below this in one Put Blob; larger ones go up in blocks.
pub const SINGLE_PUT_LIMIT: u64 = 64 << 20;

/// The size of one Put Block.
pub const BLOCK_SIZE: u64 = 16 << 20;

/// The Azure Storage REST version spoken.
const AZURE_VERSION: &str = "2021-08-06";

/// The slowest uplink a blob request is given time for, beyond the base timeout.
const SLOWEST_UPLINK: u64 = 512 << 10;

/// Uploads the `len` bytes of the file at `path` to `target`, streamed from disk.
pub async fn put(
    http: &Client,
    target: &UploadTarget,
    path: &Path,
    len: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    match target.provider {
        Provider::Azure if len >= SINGLE_PUT_LIMIT => {
            put_blocks(http, &target.url, path, len, timeout).await
        }
        Provider::Azure => {
            let request = http
                .put(&target.url)
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-version", AZURE_VERSION);
            send(request, path, 0, len, timeout).await
        }
        Provider::Aws => send(http.put(&target.url), path, 0, len, timeout).await,
    }
}

/// Put Block for each slice of the file, then Put Block List in order.
async fn put_blocks(
    http: &Client,
    url: &str,
    path: &Path,
    len: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let mut count = 0;
    let mut offset = 0;
    while offset < len {
        let size = BLOCK_SIZE.min(len - offset);
        let request = block_request(http, url, count);
        send(request, path, offset, size, timeout).await?;
        count += 1;
        offset += size;
    }
    put_block_list(http, url, count, timeout).await
}

/// Azure Put Block of `bytes` as block number `index` of the blob at `url`: staged, not
/// yet part of the blob (uncommitted blocks are dropped by Azure after a week).
pub async fn put_block(
    http: &Client,
    url: &str,
    index: usize,
    bytes: bytes::Bytes,
    timeout: Duration,
) -> Result<(), ApiError> {
    let allowance = timeout + Duration::from_secs(bytes.len() as u64 / SLOWEST_UPLINK);
    let request = block_request(http, url, index)
        .header(CONTENT_LENGTH, bytes.len())
        .body(bytes);
    execute(request, allowance).await
}

fn block_request(http: &Client, url: &str, index: usize) -> RequestBuilder {
    http.put(with_query(
        url,
        &[("comp", "block"), ("blockid", &block_id(index))],
    ))
    .header("x-ms-version", AZURE_VERSION)
}

/// Azure Put Block List: blocks `0..count` of the blob at `url`, in order, become the
/// blob.
pub async fn put_block_list(
    http: &Client,
    url: &str,
    count: usize,
    timeout: Duration,
) -> Result<(), ApiError> {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for index in 0..count {
        xml.push_str("<Latest>");
        xml.push_str(&block_id(index));
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    let request = http
        .put(with_query(url, &[("comp", "blocklist")]))
        .header("x-ms-version", AZURE_VERSION)
        .header(CONTENT_TYPE, "application/xml")
        .body(xml);
    execute(request, timeout).await
}

/// Block ids must all have the same length within a blob.
fn block_id(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("block-{index:09}"))
}

fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().extend_pairs(pairs);
            parsed.into()
        }
        // Not a URL: the request fails with a clear transport error below.
        Err(_) => url.to_string(),
    }
}

/// Sends `len` bytes of the file from `offset` as the request's body.
async fn send(
    request: RequestBuilder,
    path: &Path,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let body = file_body(path, offset, len).await?;
    let allowance = timeout + Duration::from_secs(len / SLOWEST_UPLINK);
    execute(request.header(CONTENT_LENGTH, len).body(body), allowance).await
}

/// Sends a blob request and sorts its answer.
async fn execute(request: RequestBuilder, timeout: Duration) -> Result<(), ApiError> {
    let answer = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ApiError::from_transport(Step::Blob, e))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    if (300..400).contains(&status) {
        let location = super::body::location(answer.headers());
        return Err(super::body::redirected(
            Step::Blob,
            status,
            location.as_deref(),
        ));
    }
    let retry_after = retry_after(answer.headers());
    // Only for the error message: what fits the limit is enough.
    let (body, _) = super::body::read(answer, super::body::API_LIMIT)
        .await
        .unwrap_or_default();
    Err(ApiError::from_blob_status(status, retry_after, &body))
}

async fn file_body(path: &Path, offset: u64, len: u64) -> io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(io::SeekFrom::Start(offset)).await?;
    Ok(Body::wrap_stream(ReaderStream::with_capacity(
        file.take(len),
        256 << 10,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(0).len(), block_id(49_999).len());
        assert_ne!(block_id(1), block_id(2));
    }

    #[test]
    fn query_is_appended_to_the_signature() {
        let url = with_query(
            "https://a.blob.core.windows.net/c/b.gz?sv=2020&sig=a%2Bb%3D",
            &[("comp", "block"), ("blockid", "YQ==")],
        );
        assert_eq!(url, "https://a.blob.core.windows.net/c/b.gz?sv=2020&sig=a%2Bb%3D&comp=block&blockid=YQ%3D%3D");
    }
}
