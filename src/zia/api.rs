//! One ZIA API call as the book says: logged in (again once on 401), paced under ZIA's
//! rate limits, retried on 429, edit-lock 409s, load shedding, 5xx and connection
//! errors, and its answer read within a size limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::error::{LoginKind, ZiaError};
use super::login::{self, Credential, SessionRequest, TokenProof};
use super::retry_policy;
use super::{ZiaCounters, ZiaOptions};
use crate::config::{OneApiSecret, ZiaLogin};
use crate::retry::{Backoff, Retry};

/// The largest answer of the category list (and of a write, which answers the category).
pub const LARGE_ANSWER: usize = 8 << 20;
/// The largest answer of any other call.
pub const SMALL_ANSWER: usize = 16 << 10;

/// Which of ZIA's rate limits a call falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GET: 2 a second.
    Read,
    /// POST, PUT (activation included): 1 a second.
    Write,
    /// Login, logout and the token endpoint: not paced.
    Login,
}

impl Kind {
    fn spacing(self) -> Duration {
        match self {
            Kind::Read => Duration::from_millis(500),
            Kind::Write => Duration::from_secs(1),
            Kind::Login => Duration::ZERO,
        }
    }
}

/// A complete answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// When the last read and write answers came back, to space the next ones.
#[derive(Default)]
struct Pacer {
    last_read: Option<Instant>,
    last_write: Option<Instant>,
}

/// The HTTP side of a [`super::ZiaClient`].
pub struct Api {
    http: reqwest::Client,
    /// `{base}/api/v1` or `{base}/zia/api/v1`.
    pub api_base: String,
    login: ZiaLogin,
    options: ZiaOptions,
    credential: Mutex<Option<Credential>>,
    pacer: Mutex<Pacer>,
    pub counters: Arc<ZiaCounters>,
}

impl Api {
    pub fn new(http: reqwest::Client, base_url: &str, login: ZiaLogin, options: ZiaOptions) -> Api {
        let base = base_url.trim_end_matches('/');
        let api_base = match login {
            ZiaLogin::ApiKey { .. } => format!("{base}/api/v1"),
            ZiaLogin::OneApi { .. } => format!("{base}/zia/api/v1"),
        };
        Api {
            http,
            api_base,
            login,
            options,
            credential: Mutex::new(None),
            pacer: Mutex::new(Pacer::default()),
            counters: Arc::new(ZiaCounters::default()),
        }
    }

    /// An API call answering JSON: `path` is relative to the API base (`/urlCategories`).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        limit: usize,
    ) -> Result<T, ZiaError> {
        let endpoint = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let kind = if method == Method::GET {
            Kind::Read
        } else {
            Kind::Write
        };
        let url = format!("{}{path}", self.api_base);
        let mut logged_in_again = false;
        loop {
            // Spaced first, so that a token about to end is renewed after the wait, not
            // before it.
            self.pace(kind).await;
            let credential = self.credential().await?;
            let answer = self
                .exchange(&endpoint, kind, limit, || {
                    let request = self.http.request(method.clone(), &url);
                    let request = credential.authorize(request);
                    match body {
                        Some(body) => request.json(body),
                        None => request,
                    }
                })
                .await?;
            match answer.status {
                s if s.is_success() => {
                    return serde_json::from_slice(&answer.body).map_err(|e| ZiaError::BadAnswer {
                        endpoint,
                        reason: format!("not the documented JSON ({e})"),
                    });
                }
                StatusCode::UNAUTHORIZED if !logged_in_again => {
                    info!(
                        endpoint,
                        answer = %login::refusal_message(&answer.body),
                        "ZIA: the session or token ended; logging in again"
                    );
                    logged_in_again = true;
                    *self.credential.lock().await = None;
                }
                StatusCode::UNAUTHORIZED => return Err(ZiaError::Unauthorized { endpoint }),
                StatusCode::FORBIDDEN if is_read_only(&answer.headers) => {
                    return Err(ZiaError::ReadOnly { endpoint });
                }
                status => return Err(rejected(endpoint, status, &answer.body)),
            }
        }
    }

    /// Ends the API key session, which also activates what is pending. Nothing to do for
    /// OneAPI. Failures are logged: the session times out anyway.
    pub async fn logout(&self) {
        let Some(credential) = self.credential.lock().await.take() else {
            return;
        };
        if !matches!(credential, Credential::Session(_)) {
            return;
        }
        let url = format!("{}/authenticatedSession", self.api_base);
        let endpoint = "DELETE /authenticatedSession";
        let result = self
            .exchange(endpoint, Kind::Login, SMALL_ANSWER, || {
                credential.authorize(self.http.delete(&url))
            })
            .await;
        match result {
            Ok(answer) if answer.status.is_success() => debug!("ZIA: logged out"),
            Ok(answer) => warn!(
                endpoint,
                status = answer.status.as_u16(),
                answer = %login::refusal_message(&answer.body),
                "ZIA: the logout was refused"
            ),
            Err(error) => warn!(%error, "ZIA: the logout failed"),
        }
    }

    /// The credential to use now: the kept one, or a new login.
    async fn credential(&self) -> Result<Credential, ZiaError> {
        let mut kept = self.credential.lock().await;
        if let Some(credential) = kept.as_ref().filter(|c| c.is_fresh()) {
            return Ok(credential.clone());
        }
        let credential = self.log_in().await?;
        *kept = Some(credential.clone());
        Ok(credential)
    }

    async fn log_in(&self) -> Result<Credential, ZiaError> {
        self.counters.logins.add(1);
        match &self.login {
            ZiaLogin::ApiKey {
                username,
                password,
                api_key,
            } => {
                let endpoint = "POST /authenticatedSession";
                let url = format!("{}/authenticatedSession", self.api_base);
                // Checked first, so that a malformed key is reported as such.
                SessionRequest::new(username, password, api_key)?;
                let answer = self
                    .exchange(endpoint, Kind::Login, SMALL_ANSWER, || {
                        // A fresh timestamp each try: ZIA checks it against its clock.
                        match SessionRequest::new(username, password, api_key) {
                            Ok(body) => self.http.post(&url).json(&body),
                            Err(_) => self.http.post(&url),
                        }
                    })
                    .await?;
                if !answer.status.is_success() {
                    return Err(ZiaError::LoginRefused {
                        login: LoginKind::ApiKey,
                        status: answer.status.as_u16(),
                        message: login::refusal_message(&answer.body),
                    });
                }
                login::session_cookie(&answer.headers).ok_or_else(|| ZiaError::BadAnswer {
                    endpoint: endpoint.to_string(),
                    reason: "no JSESSIONID cookie".to_string(),
                })
            }
            ZiaLogin::OneApi {
                token_url,
                client_id,
                secret,
            } => {
                let endpoint = "POST oauth2 token";
                let proof = || -> Result<TokenProof, ZiaError> {
                    Ok(match secret {
                        OneApiSecret::ClientSecret(secret) => TokenProof::Secret(secret.clone()),
                        OneApiSecret::PrivateKey(path) => {
                            let pem = std::fs::read(path).map_err(|e| {
                                ZiaError::PrivateKey(format!("cannot read {}: {e}", path.display()))
                            })?;
                            TokenProof::Assertion(login::client_assertion(client_id, &pem)?)
                        }
                    })
                };
                // Built before the exchange so that a bad key file is reported as such.
                let form = login::token_form(client_id, proof()?);
                let answer = self
                    .exchange(endpoint, Kind::Login, SMALL_ANSWER, || {
                        self.http.post(token_url).form(&form)
                    })
                    .await?;
                if !answer.status.is_success() {
                    return Err(ZiaError::LoginRefused {
                        login: LoginKind::OneApi,
                        status: answer.status.as_u16(),
                        message: login::refusal_message(&answer.body),
                    });
                }
                let token: login::TokenAnswer =
                    serde_json::from_slice(&answer.body).map_err(|e| ZiaError::BadAnswer {
                        endpoint: endpoint.to_string(),
                        reason: format!("not a token answer ({e})"),
                    })?;
                token
                    .into_credential()
                    .map_err(|reason| ZiaError::BadAnswer {
                        endpoint: endpoint.to_string(),
                        reason,
                    })
            }
        }
    }

    /// Sends the request `build` makes until an answer that is not to be retried, as
    /// [`retry_policy::classify`] sorts them: paced by `kind`, 429 after the wait it asks
    /// for (at most `max_throttled` times), 409 EDIT_LOCK_NOT_AVAILABLE after
    /// `edit_lock_wait` (at most `max_edit_lock_retries`), and load shedding, 5xx and
    /// connection errors with backoff, `max_retries` times in all.
    async fn exchange(
        &self,
        endpoint: &str,
        kind: Kind,
        limit: usize,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, ZiaError> {
        let options = &self.options;
        let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
        let (mut failures, mut throttled, mut locked) = (0u32, 0u32, 0u32);
        loop {
            self.pace(kind).await;
            self.counters.api_calls.add(1);
            let sent = build().timeout(options.request_timeout).send().await;
            // A 401 refused the call before it did anything: the
            // retry after the new login needs no spacing (and an idle session would end
            // again while it waited).
            if !sent
                .as_ref()
                .is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED)
            {
                self.mark(kind).await;
            }
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    failures += 1;
                    let proxy = crate::https::proxy_failure(&e);
                    // reqwest's message names the URL, never a header or the body.
                    let reason = match &proxy {
                        Some(failure) => failure.message.clone(),
                        None => format!("cannot reach ZIA ({})", crate::error_text::one_line(&e)),
                    };
                    // The same credentials would be refused again.
                    let hopeless = proxy.is_some_and(|f| f.credentials_refused);
                    let give_up = hopeless || failures > options.max_retries;
                    failed_for_now(endpoint, reason, give_up, &mut backoff, None).await?;
                    continue;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = if status.is_success() {
                read_limited(response, limit, endpoint).await?
            } else {
                read_truncated(response, SMALL_ANSWER).await
            };
            match retry_policy::classify(status, &headers, &body) {
                Retry::Never => {}
                Retry::Throttled { asked } => {
                    self.counters.throttled.add(1);
                    throttled += 1;
                    if throttled > options.max_throttled {
                        return Err(ZiaError::Unavailable {
                            endpoint: endpoint.to_string(),
                            reason: format!(
                                "ZIA kept answering 429 ({})",
                                login::refusal_message(&body)
                            ),
                        });
                    }
                    // "0 seconds" means the next second: never sooner than the limit allows.
                    let wait = asked
                        .unwrap_or(Duration::ZERO)
                        .max(kind.spacing())
                        .max(Duration::from_millis(500));
                    info!(endpoint, ?wait, "ZIA: rate limited (429); trying again");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Retry::Busy => {
                    locked += 1;
                    if locked > options.max_edit_lock_retries {
                        return Err(ZiaError::EditLocked {
                            endpoint: endpoint.to_string(),
                            attempts: locked,
                        });
                    }
                    info!(
                        endpoint,
                        wait = ?options.edit_lock_wait,
                        "ZIA: another admin session holds the edit lock; trying again"
                    );
                    tokio::time::sleep(options.edit_lock_wait).await;
                    continue;
                }
                Retry::Transient { asked } => {
                    // 5xx and load shedding share the bound of connection errors.
                    failures += 1;
                    let reason = retry_policy::transient_reason(status, &body);
                    let give_up = failures > options.max_retries;
                    failed_for_now(endpoint, reason, give_up, &mut backoff, asked).await?;
                    continue;
                }
            }
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
    }

    /// Waits until a call of `kind` keeps within ZIA's per-second limit.
    async fn pace(&self, kind: Kind) {
        let last = {
            let pacer = self.pacer.lock().await;
            match kind {
                Kind::Read => pacer.last_read,
                Kind::Write => pacer.last_write,
                Kind::Login => None,
            }
        };
        if let Some(last) = last {
            let ready = last + kind.spacing();
            tokio::time::sleep_until(ready.into()).await;
        }
    }

    /// Notes when the answer of a call of `kind` came back: the next one is spaced from
    /// here, so that ZIA, which counted the call on arrival, sees them far enough apart.
    async fn mark(&self, kind: Kind) {
        let mut pacer = self.pacer.lock().await;
        match kind {
            Kind::Read => pacer.last_read = Some(Instant::now()),
            Kind::Write => pacer.last_write = Some(Instant::now()),
            Kind::Login => {}
        }
    }
}

/// Reads a 2xx body, failing when it is larger than `limit`.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    endpoint: &str,
) -> Result<Vec<u8>, ZiaError> {
    let oversized = || ZiaError::Oversized {
        endpoint: endpoint.to_string(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(oversized());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(oversized());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(ZiaError::Unavailable {
                    endpoint: endpoint.to_string(),
                    reason: format!(
                        "reading the answer failed ({})",
                        crate::error_text::one_line(&e)
                    ),
                })
            }
        }
    }
}

/// Reads at most `limit` bytes of an error answer: only its message is wanted.
async fn read_truncated(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    body
}

/// After a call that failed for now (a 5xx, load shedding, no connection): ZIA unavailable
/// for `reason` when `give_up`, else the backoff's next wait (at least the one `asked`),
/// logged and slept.
async fn failed_for_now(
    endpoint: &str,
    reason: String,
    give_up: bool,
    backoff: &mut Backoff,
    asked: Option<Duration>,
) -> Result<(), ZiaError> {
    if give_up {
        return Err(ZiaError::Unavailable {
            endpoint: endpoint.to_string(),
            reason,
        });
    }
    let wait = backoff.next(asked);
    warn!(endpoint, %reason, ?wait, "ZIA: the call failed; trying again");
    tokio::time::sleep(wait).await;
    Ok(())
}

/// 403 because the tenant is in maintenance: only when ZIA says so with
/// `x-zscaler-mode: read-only` (normal answers carry `read-write`). Any other 403 is a
/// refusal, shown with ZIA's message.
fn is_read_only(headers: &HeaderMap) -> bool {
    headers
        .get("x-zscaler-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("read-only"))
}

/// A 4xx answer as an error showing ZIA's message.
fn rejected(endpoint: String, status: StatusCode, body: &[u8]) -> ZiaError {
    #[derive(serde::Deserialize)]
    struct Error {
        code: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Error>(body).ok();
    let code = parsed.as_ref().and_then(|e| e.code.clone());
    let message = parsed
        .and_then(|e| e.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    ZiaError::Rejected {
        endpoint,
        status: status.as_u16(),
        code,
        message,
    }
}
