//! The MCAS Cloud Discovery API: upload_url, done_upload and the block script.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder};
use serde::Deserialize;

use super::error::{ApiError, Step};
use super::limit::ApiRateLimiter;
use super::retry::retry_after;
use crate::config::{ConfigError, McasCredential, McasTarget, Secret, UploadSettings};
use crate::status::Stats;

/// Where the blob store wants the file, as upload_url answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    /// The pre-signed blob URL. It carries a signature: never logged.
    pub url: String,
    pub provider: Provider,
}

/// An API answer as it came.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// The storage behind the upload URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Azure Blob: Put Blob, or Put Block and Put Block List for large files.
    Azure,
    /// Amazon S3: one PUT of the object.
    Aws,
}

#[derive(Deserialize)]
struct UploadUrlAnswer {
    url: String,
    provider: Option<String>,
}

/// A client of one tenant's API. Every call waits for the process-wide rate limiter.
#[derive(Debug, Clone)]
pub struct McasClient {
    http: Client,
    domain: String,
    authorization: HeaderValue,
    limiter: Arc<ApiRateLimiter>,
    timeout: Duration,
    stats: Arc<Stats>,
}

impl McasClient {
    /// A client of `target`'s tenant.
    pub fn new(
        target: &McasTarget,
        http: Client,
        limiter: Arc<ApiRateLimiter>,
        timeout: Duration,
        stats: Arc<Stats>,
    ) -> Result<McasClient, ConfigError> {
        let authorization = match &target.credential {
            McasCredential::Token(token) => authorization(token),
            McasCredential::Entra(_) => {
                return Err(ConfigError::new(
                    "mcas.auth",
                    "\"entra\" is not available in this build: use a legacy API token (auth = \"token\")",
                ))
            }
        };
        stats
            .upload
            .api_rate_millis
            .store((limiter.rate() * 1000.0) as u64, Ordering::Relaxed);
        Ok(McasClient {
            http,
            domain: target.domain.clone(),
            authorization,
            limiter,
            timeout,
            stats,
        })
    }

    /// A client of `target`'s tenant with its own HTTPS client (trusting `mcas.ca_file`
    /// too) and rate limiter, per the `[upload]` settings: one per process, so that every
    /// API call of the process shares the limiter.
    pub fn from_settings(
        target: &McasTarget,
        settings: &UploadSettings,
        stats: Arc<Stats>,
    ) -> Result<McasClient, ConfigError> {
        let http =
            super::http::client(target.ca_file.as_deref()).map_err(|problem| ConfigError {
                key: "mcas.ca_file".to_string(),
                problem,
            })?;
        let limiter = Arc::new(ApiRateLimiter::adaptive(
            settings.api_calls_per_minute,
            settings.min_api_calls_per_minute,
        ));
        McasClient::new(target, http, limiter, settings.timeout, stats)
    }

    /// Waits until the rate limiter would let an API call through, without making one.
    pub async fn call_available(&self) {
        self.limiter.ready().await
    }

    /// The HTTP client, shared with the blob upload.
    pub fn http(&self) -> &Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.domain)
    }

    /// Sends an API request once the rate limiter lets it, with the token, and returns the
    /// answer as it came: status, Retry-After and body.
    async fn send(&self, request: RequestBuilder) -> Result<RawAnswer, reqwest::Error> {
        self.limiter.acquire().await;
        self.stats.upload.api_calls.fetch_add(1, Ordering::Relaxed);
        let answer = request
            .header(AUTHORIZATION, self.authorization.clone())
            .timeout(self.timeout)
            .send()
            .await?;
        let status = answer.status().as_u16();
        let retry_after = retry_after(answer.headers());
        let body = answer.bytes().await?;
        if status == 429 {
            // The throttle is the tenant's: every call of this process waits, and this
            // agent takes a smaller share from now on.
            self.limiter
                .hold_for(retry_after.unwrap_or(Duration::from_secs(10)));
            self.limiter.throttled();
            self.stats.upload.throttled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.limiter.succeeded();
        }
        self.stats
            .upload
            .api_rate_millis
            .store((self.limiter.rate() * 1000.0) as u64, Ordering::Relaxed);
        Ok(RawAnswer {
            status,
            retry_after,
            body,
        })
    }

    /// Sends an API request and returns the body of a 2xx answer; any other answer or
    /// failure sorted by what to do about it.
    async fn call(&self, step: Step, request: RequestBuilder) -> Result<Bytes, ApiError> {
        let answer = self
            .send(request)
            .await
            .map_err(|e| ApiError::from_transport(step, e))?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        Err(ApiError::from_api_status(
            step,
            answer.status,
            answer.retry_after,
            &self.domain,
            &answer.body,
        ))
    }

    /// Step 1: asks where to put a file named `filename` of log format `source`.
    pub async fn upload_url(&self, filename: &str, source: &str) -> Result<UploadTarget, ApiError> {
        let request = self
            .http
            .get(self.url("/api/v1/discovery/upload_url/"))
            .query(&[("filename", filename), ("source", source)]);
        let body = self.call(Step::UploadUrl, request).await?;
        let answer: UploadUrlAnswer =
            serde_json::from_slice(&body).map_err(|e| ApiError::Transient {
                step: Step::UploadUrl,
                reason: format!(
                    "the answer is not the expected {{\"url\", \"provider\"}} JSON: {e}"
                ),
                retry_after: None,
                throttled: false,
            })?;
        let provider = match answer.provider.as_deref() {
            None | Some("azure") => Provider::Azure,
            Some("aws") => Provider::Aws,
            Some(other) => {
                tracing::warn!(
                    provider = other,
                    "upload_url named an unknown storage provider; uploading with one plain PUT"
                );
                Provider::Aws
            }
        };
        Ok(UploadTarget {
            url: answer.url,
            provider,
        })
    }

    /// Step 3: tells MCAS the file at `upload_url` is complete and belongs to `data_source`.
    pub async fn done_upload(&self, upload_url: &str, data_source: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "uploadUrl": upload_url,
            "inputStreamName": data_source,
            "uploadAsSnapshot": false,
        });
        let request = self
            .http
            .post(self.url("/api/v1/discovery/done_upload/"))
            .json(&body);
        self.call(Step::DoneUpload, request).await.map(drop)
    }

    /// The block script of format 120 (Zscaler): `banned` for unsanctioned apps,
    /// `allowed` for sanctioned ones. One domain a line.
    pub async fn block_script(&self, kind: &str) -> Result<Bytes, ApiError> {
        self.call(Step::BlockScript, self.block_script_request(kind))
            .await
    }

    /// The block script's answer as it came, for `nss troubleshoot mcas` to explain.
    pub async fn block_script_answer(&self, kind: &str) -> Result<RawAnswer, reqwest::Error> {
        self.send(self.block_script_request(kind)).await
    }

    fn block_script_request(&self, kind: &str) -> RequestBuilder {
        self.http
            .get(self.url("/api/discovery_block_scripts/"))
            .query(&[("format", "120"), ("type", kind)])
    }

    /// The URL of the block script, as the documented curl check writes it.
    pub fn block_script_url(&self, kind: &str) -> String {
        self.url(&format!(
            "/api/discovery_block_scripts/?format=120&type={kind}"
        ))
    }
}

/// The Authorization header for `token`: `Token <token>` for a legacy API token, `Bearer
/// <token>` for an Entra ID access token (a JWT). Marked sensitive so it is never logged.
fn authorization(token: &Secret) -> HeaderValue {
    let token = token.expose();
    let scheme = if token.starts_with("eyJ") && token.matches('.').count() == 2 {
        "Bearer"
    } else {
        "Token"
    };
    let mut value = HeaderValue::from_str(&format!("{scheme} {token}"))
        .expect("the token's characters were checked when the configuration was loaded");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_tokens_and_jwts() {
        let legacy = Secret::new("a".repeat(64));
        assert_eq!(
            authorization(&legacy).to_str().unwrap(),
            format!("Token {}", "a".repeat(64))
        );
        let jwt = Secret::new("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ");
        assert!(authorization(&jwt)
            .to_str()
            .unwrap()
            .starts_with("Bearer eyJ"));
        assert!(authorization(&jwt).is_sensitive());
    }
}
