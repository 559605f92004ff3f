//! The MCAS Cloud Discovery API: upload_url, done_upload, the block script and the data
//! sources list, authorised by a legacy API token or an Entra application's token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder};
use serde::Deserialize;

use super::body;
use super::counters::McasCounters;
use super::entra::{EntraError, EntraTokens};
use super::error::{ApiError, Step};
use super::limit::ApiRateLimiter;
use super::retry_after::retry_after;
use crate::config::{ConfigError, McasCredential, McasTarget, Secret, UploadSettings};

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
    /// At most [`super::body::limit_for`] its path.
    pub body: Bytes,
    /// The answer was longer than its limit; `body` holds only its start.
    pub oversized: bool,
    /// Where a 3xx pointed (not followed), without the query.
    pub location: Option<String>,
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

/// A data source as MCAS lists it (the portal's "Data sources" tab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    /// Its name, what done_upload's `inputStreamName` gives.
    pub display_name: String,
    /// Its log type number (170: Zscaler QRadar LEEF).
    pub log_type: u32,
    /// When MCAS last received data for it.
    pub last_data_received: Option<SystemTime>,
}

/// Why the data sources list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataSourcesError {
    /// MCAS answered 403: the credential may not read data sources.
    #[error("MCAS refused to list the data sources (HTTP 403): the credential may not read them; an Entra application needs the Discovery.read permission of Microsoft Cloud App Security, with admin consent")]
    NotPermitted,
    /// Any other failure.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Why an API request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connection, TLS or timeout.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// No Entra access token could be had.
    #[error(transparent)]
    Entra(#[from] EntraError),
}

/// How the calls are authorised.
#[derive(Debug, Clone)]
enum Authorization {
    /// A legacy API token: one fixed header.
    Fixed(HeaderValue),
    /// An Entra application: a token renewed as it expires.
    Entra(Arc<EntraTokens>),
}

/// A client of one tenant's API. Every call waits for the process-wide rate limiter.
#[derive(Debug, Clone)]
pub struct McasClient {
    http: Client,
    domain: String,
    authorization: Authorization,
    limiter: Arc<ApiRateLimiter>,
    timeout: Duration,
    counters: Arc<McasCounters>,
}

impl McasClient {
    /// A client of `target`'s tenant.
    pub fn new(
        target: &McasTarget,
        http: Client,
        limiter: Arc<ApiRateLimiter>,
        timeout: Duration,
        counters: Arc<McasCounters>,
    ) -> Result<McasClient, ConfigError> {
        let authorization = match &target.credential {
            McasCredential::Token(token) => Authorization::Fixed(authorization(token)),
            // Token requests go to another host: not through the API's rate limiter.
            McasCredential::Entra(app) => {
                Authorization::Entra(Arc::new(EntraTokens::new(app, http.clone(), timeout)?))
            }
        };
        counters.api_rate.set(limiter.rate());
        Ok(McasClient {
            http,
            domain: target.domain.clone(),
            authorization,
            limiter,
            timeout,
            counters,
        })
    }

    /// A client of `target`'s tenant with its own HTTPS client (trusting `mcas.ca_file`
    /// too) and rate limiter, per the `[upload]` settings: one per process, so that every
    /// API call of the process shares the limiter.
    pub fn from_settings(
        target: &McasTarget,
        settings: &UploadSettings,
        counters: Arc<McasCounters>,
    ) -> Result<McasClient, ConfigError> {
        let http = crate::https::client(
            target.ca_file.as_deref(),
            "mcas.ca_file",
            target.proxy.as_ref(),
        )?;
        let limiter = Arc::new(ApiRateLimiter::adaptive(
            settings.api_calls_per_minute,
            settings.min_api_calls_per_minute,
        ));
        McasClient::new(target, http, limiter, settings.timeout, counters)
    }

    /// Waits until the rate limiter would let an API call through, without making one.
    pub async fn call_available(&self) {
        self.limiter.ready().await
    }

    /// How long until `calls` more API calls could all have gone through the rate
    /// limiter, one after the other.
    pub fn wait_for_calls(&self, calls: u32) -> Duration {
        self.limiter.wait_for(calls)
    }

    /// The most API calls the rate limiter ever lets go back to back.
    pub fn most_back_to_back(&self) -> u32 {
        self.limiter.most_back_to_back()
    }

    /// How long until fewer than `share` API calls of the process are in the rate
    /// limiter's minute.
    pub fn wait_for_share(&self, share: u32) -> Duration {
        self.limiter.wait_for_share(share)
    }

    /// The HTTP client, shared with the blob upload.
    pub fn http(&self) -> &Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.domain)
    }

    /// Whether the calls carry an Entra application's tokens.
    pub fn uses_entra(&self) -> bool {
        matches!(self.authorization, Authorization::Entra(_))
    }

    /// The Entra token endpoint, when the calls carry an Entra application's tokens.
    pub fn entra_token_url(&self) -> Option<&str> {
        match &self.authorization {
            Authorization::Entra(tokens) => Some(tokens.token_url()),
            Authorization::Fixed(_) => None,
        }
    }

    /// Sends an API request once the rate limiter lets it, with the token, and returns the
    /// answer as it came: status, Retry-After and body.
    async fn send(&self, request: RequestBuilder) -> Result<RawAnswer, SendError> {
        self.limiter.acquire().await;
        // After the limiter's wait, so that the token is fresh when it is sent.
        let authorization = match &self.authorization {
            Authorization::Fixed(value) => value.clone(),
            Authorization::Entra(tokens) => tokens.authorization().await?,
        };
        self.counters.api_calls.add(1);
        let answer = request
            .header(AUTHORIZATION, authorization.clone())
            .timeout(self.timeout)
            .send()
            .await?;
        let path = answer.url().path().to_string();
        let status = answer.status().as_u16();
        let retry_after = retry_after(answer.headers());
        let location = body::location(answer.headers());
        let (body, oversized) = body::read(answer, body::limit_for(&path)).await?;
        if let (Authorization::Entra(tokens), 401) = (&self.authorization, status) {
            // Refused before its time (revoked, or clocks apart): the next call gets a new one.
            tokens.forget(&authorization).await;
        }
        if status == 429 {
            // The throttle is the tenant's: every call of this process waits, and this
            // agent takes a smaller share from now on.
            self.limiter
                .hold_for(retry_after.unwrap_or(Duration::from_secs(10)));
            self.limiter.throttled();
            self.counters.throttled.add(1);
        } else {
            self.limiter.succeeded();
        }
        self.counters.api_rate.set(self.limiter.rate());
        Ok(RawAnswer {
            status,
            retry_after,
            body,
            oversized,
            location,
        })
    }

    /// Sends an API request and returns the body of a 2xx answer; any other answer or
    /// failure sorted by what to do about it.
    async fn call(&self, step: Step, request: RequestBuilder) -> Result<Bytes, ApiError> {
        let answer = match self.send(request).await {
            Ok(answer) => answer,
            Err(SendError::Transport(e)) => return Err(ApiError::from_transport(step, e)),
            Err(SendError::Entra(e)) => return Err(entra_api_error(step, e)),
        };
        body::check(step, &answer)?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        if self.uses_entra() {
            match answer.status {
                401 => {
                    return Err(ApiError::Transient {
                        step,
                        reason: "MCAS refused the Entra access token (HTTP 401); a new one is requested for the next attempt".to_string(),
                        retry_after: None,
                        throttled: false,
                    })
                }
                403 => {
                    return Err(ApiError::TokenRefused {
                        step,
                        status: 403,
                        reason: ENTRA_FORBIDDEN.to_string(),
                    })
                }
                _ => {}
            }
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
        // A blob URL carries a signature: it is never sent in clear, nor anywhere but a
        // host; a URL that is not one is MCAS's fault, not the batch's.
        match url::Url::parse(&answer.url) {
            Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
            Ok(url) => {
                return Err(ApiError::UnusableUploadUrl {
                    reason: format!("its scheme is {}, not https", url.scheme()),
                })
            }
            Err(e) => {
                return Err(ApiError::UnusableUploadUrl {
                    reason: format!("it is not a URL: {e}"),
                })
            }
        }
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
    /// `uploadAsSnapshot` is left out: MCAS makes a one-off snapshot report "if this
    /// parameter is set", whatever its value, and the data source would stay empty.
    pub async fn done_upload(&self, upload_url: &str, data_source: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "uploadUrl": upload_url,
            "inputStreamName": data_source,
        });
        let request = self
            .http
            .post(self.url("/api/v1/discovery/done_upload/"))
            .json(&body);
        self.call(Step::DoneUpload, request).await.map(drop)
    }

    /// The block script of format 120 (Zscaler) of `kind`. One domain a line.
    pub async fn block_script(&self, kind: BlockScript) -> Result<Bytes, ApiError> {
        self.call(Step::BlockScript, self.block_script_request(kind))
            .await
    }

    /// The block script's answer as it came, for `nss troubleshoot mcas` to explain.
    pub async fn block_script_answer(&self, kind: BlockScript) -> Result<RawAnswer, SendError> {
        self.send(self.block_script_request(kind)).await
    }

    fn block_script_request(&self, kind: BlockScript) -> RequestBuilder {
        self.http
            .get(self.url("/api/discovery_block_scripts/"))
            .query(&[("format", "120"), ("type", kind.name())])
    }

    /// The tenant's data sources (`GET /api/discovery/streams/`, needs Discovery.read).
    pub async fn data_sources(&self) -> Result<Vec<DataSource>, DataSourcesError> {
        let request = self.http.get(self.url("/api/discovery/streams/"));
        let body = match self.call(Step::DataSources, request).await {
            Ok(body) => body,
            Err(ApiError::TokenRefused { status: 403, .. }) => {
                return Err(DataSourcesError::NotPermitted)
            }
            Err(e) => return Err(e.into()),
        };
        parse_data_sources(&body).ok_or_else(|| {
            DataSourcesError::Api(ApiError::Transient {
                step: Step::DataSources,
                reason: "the answer is not the expected {\"streams\": [...]} JSON".to_string(),
                retry_after: None,
                throttled: false,
            })
        })
    }

    /// The URL of the block script, as the documented curl check writes it.
    pub fn block_script_url(&self, kind: BlockScript) -> String {
        self.url(&format!(
            "/api/discovery_block_scripts/?format=120&type={}",
            kind.name()
        ))
    }
}

/// Which apps a block script lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockScript {
    /// The unsanctioned apps (`type=banned`): what the sync makes a ZIA category.
    Banned,
    /// The sanctioned apps (`type=allowed`).
    Allowed,
}

impl BlockScript {
    /// The name of the `type` parameter.
    pub fn name(self) -> &'static str {
        match self {
            BlockScript::Banned => "banned",
            BlockScript::Allowed => "allowed",
        }
    }
}

/// What a 403 to an Entra token means.
pub const ENTRA_FORBIDDEN: &str = "MCAS refused the Entra application (HTTP 403): it lacks the Discovery.manage permission; add the application permission Discovery.manage of Microsoft Cloud App Security to the app registration and grant admin consent";

/// A failure to get an Entra token, as the API step that needed it failed.
fn entra_api_error(step: Step, error: EntraError) -> ApiError {
    if error.is_transient() {
        ApiError::Transient {
            step,
            reason: error.to_string(),
            retry_after: None,
            throttled: false,
        }
    } else {
        let status = match &error {
            EntraError::Refused { status, .. } | EntraError::Failed { status, .. } => *status,
            EntraError::Unreachable { .. } => 0,
        };
        ApiError::TokenRefused {
            step,
            status,
            reason: error.to_string(),
        }
    }
}

/// The data sources of a streams answer; `None` if it is not one. Entries that are not
/// data sources (`streamType` other than 1: the "Global View", logical and other reports,
/// which may lack `logType`) are skipped, as is an entry without a name or log type:
/// one odd entry never hides the others.
fn parse_data_sources(body: &[u8]) -> Option<Vec<DataSource>> {
    let document: serde_json::Value = serde_json::from_slice(body).ok()?;
    let sources = document["streams"]
        .as_array()?
        .iter()
        .filter(|s| s.get("streamType").is_none_or(|t| t.as_u64() == Some(1)))
        .filter_map(|s| {
            Some(DataSource {
                display_name: s["displayName"].as_str()?.to_string(),
                log_type: u32::try_from(s["logType"].as_u64()?).ok()?,
                last_data_received: instant(&s["lastDataReceived"]),
            })
        })
        .collect();
    Some(sources)
}

/// A date of the streams list: an ISO-8601 string as MCAS documents it
/// (`2020-12-18T06:33:32.908Z`), or milliseconds since the epoch as the rest of its API
/// writes times.
fn instant(value: &serde_json::Value) -> Option<SystemTime> {
    match value {
        serde_json::Value::String(text) => humantime::parse_rfc3339_weak(text).ok(),
        serde_json::Value::Number(ms) => Some(UNIX_EPOCH + Duration::from_millis(ms.as_u64()?)),
        _ => None,
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
    fn data_sources_answers() {
        let body = br#"{"streams": [{"_id": "a1", "displayName": "NSS", "logType": 170, "lastDataReceived": 1714568405000},
                                     {"displayName": "Other", "logType": 196, "lastDataReceived": null}]}"#;
        let sources = parse_data_sources(body).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(
            (sources[0].display_name.as_str(), sources[0].log_type),
            ("NSS", 170)
        );
        assert_eq!(
            sources[0].last_data_received,
            Some(UNIX_EPOCH + Duration::from_secs(1_714_568_405))
        );
        assert_eq!(sources[1].last_data_received, None);
        assert!(parse_data_sources(b"{}").is_none());
        assert_eq!(
            parse_data_sources(br#"{"streams": [{"logType": 1}]}"#),
            Some(vec![])
        );
    }

    #[test]
    fn data_sources_as_mcas_documents_them() {
        let body = br#"{"streams": [
            {"_id": "g", "displayName": "Global View", "streamType": 0, "created": "2020-12-18T06:30:01.227Z"},
            {"_id": "l", "displayName": "Logical", "streamType": 2, "logType": 170},
            {"_id": "a", "displayName": "NSS", "logType": 170, "receiverType": "syslog", "streamType": 1,
             "created": "2020-12-18T06:30:01.227Z", "lastDataReceived": "2020-12-18T06:33:32.908Z"},
            {"_id": "b", "displayName": "New", "logType": 171, "streamType": 1}]}"#;
        let sources = parse_data_sources(body).unwrap();
        let names: Vec<&str> = sources.iter().map(|s| s.display_name.as_str()).collect();
        assert_eq!(names, ["NSS", "New"]);
        assert_eq!(
            sources[0].last_data_received,
            Some(UNIX_EPOCH + Duration::from_millis(1_608_273_212_908))
        );
        assert_eq!(sources[1].last_data_received, None);
        assert_eq!(
            instant(&serde_json::json!("2020-12-18T06:33:32Z")),
            Some(UNIX_EPOCH + Duration::from_secs(1_608_273_212))
        );
        assert_eq!(instant(&serde_json::json!("yesterday")), None);
    }

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
