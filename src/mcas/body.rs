//! Bounded answers: every body read from MCAS or the blob store has a size limit fit for
//! its purpose, so that an endless or oversized answer (a misbehaving proxy, say) is an
//! error naming the endpoint, never an out-of-memory. Redirects are not followed (a
//! redirected POST becomes a GET, and a token must not go to another host): a 3xx is an
//! error saying where the server tried to send the client.

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::Response;

use super::error::{ApiError, Step};
use super::RawAnswer;

/// The block script: one domain a line. MCAS lists a few thousand unsanctioned apps; the
/// appliance holds at most tens of thousands of custom URLs.
pub const BLOCK_SCRIPT_LIMIT: usize = 8 << 20;

/// The data sources list: a JSON object of a few hundred bytes a data source; a tenant
/// has tens of them, rarely hundreds.
pub const DATA_SOURCES_LIMIT: usize = 1 << 20;

/// Any other answer: a small JSON object (upload_url, done_upload) or an error page.
pub const API_LIMIT: usize = 16 << 10;

/// The limit for an answer from `path`.
pub fn limit_for(path: &str) -> usize {
    if path.starts_with("/api/discovery_block_scripts") {
        BLOCK_SCRIPT_LIMIT
    } else if path.starts_with("/api/discovery/streams") {
        DATA_SOURCES_LIMIT
    } else {
        API_LIMIT
    }
}

/// The path of an API step, for error messages.
fn path_of(step: Step) -> &'static str {
    match step {
        Step::UploadUrl => "/api/v1/discovery/upload_url/",
        Step::DoneUpload => "/api/v1/discovery/done_upload/",
        Step::BlockScript => "/api/discovery_block_scripts/",
        Step::DataSources => "/api/discovery/streams/",
        Step::Blob => "the blob store",
    }
}

/// The error for an API answer that was redirected, or longer than its limit.
pub fn check(step: Step, answer: &RawAnswer) -> Result<(), ApiError> {
    if (300..400).contains(&answer.status) {
        return Err(redirected(step, answer.status, answer.location.as_deref()));
    }
    if answer.oversized {
        let path = path_of(step);
        return Err(oversized(step, path, limit_for(path)));
    }
    Ok(())
}

/// An answer's body, read up to `limit` bytes; `true` when the answer was longer (or said
/// it would be), in which case no more was read.
pub async fn read(mut answer: Response, limit: usize) -> Result<(Bytes, bool), reqwest::Error> {
    if answer
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Ok((Bytes::new(), true));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

/// Where a redirect points, without its query (a signed URL's signature stays out of logs).
pub fn location(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(LOCATION)?.to_str().ok()?;
    Some(
        text.split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The error for a redirect of `step` to `location`.
pub fn redirected(step: Step, status: u16, location: Option<&str>) -> ApiError {
    ApiError::Transient {
        step,
        reason: format!(
            "HTTP {status}: the server tried to send the client to {}; redirects are not followed \
             (a redirected POST becomes a GET, and the credentials must not go elsewhere): \
             check mcas.domain (the tenant's portal host) and any proxy in between",
            location.unwrap_or("(no Location given)")
        ),
        retry_after: None,
        throttled: false,
    }
}

/// The error for an answer of `step` at `path` longer than `limit`.
pub fn oversized(step: Step, path: &str, limit: usize) -> ApiError {
    ApiError::Transient {
        step,
        reason: format!(
            "the answer of {path} is larger than {} KiB, far more than it can hold: not read further \
             (a proxy or a captive portal answering in MCAS's stead?)",
            limit >> 10
        ),
        retry_after: None,
        throttled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_endpoint() {
        assert_eq!(
            limit_for("/api/discovery_block_scripts/"),
            BLOCK_SCRIPT_LIMIT
        );
        assert_eq!(limit_for("/api/v1/discovery/upload_url/"), API_LIMIT);
    }

    #[test]
    fn a_location_loses_its_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            "https://elsewhere.example/x?sig=secret".parse().unwrap(),
        );
        assert_eq!(
            location(&headers).as_deref(),
            Some("https://elsewhere.example/x")
        );
        let error = redirected(Step::DoneUpload, 307, location(&headers).as_deref());
        assert!(error.to_string().contains("elsewhere.example/x"));
        assert!(!error.to_string().contains("secret"));
    }
}
