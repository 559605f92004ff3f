//! An HTTPS emulator of the ZIA Cloud Service API, as far as pushing a custom URL category
//! needs it: both logins (API key session, OneAPI token endpoint), custom URL categories
//! with ZIA's URL rules, quota and category limit, saved changes kept apart from the
//! activated configuration until an activation (or a logout, or a session timeout), the
//! rate limits, and faults to inject (429, edit lock, read-only, load shedding, 403, 5xx).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mcas_emulator::zia::{ZiaConfig, ZiaEmulator};
//! let dir = std::env::temp_dir().join("zia");
//! let zia = ZiaEmulator::start(ZiaConfig::new(&dir.join("certs"))).await?;
//! println!("zia.base_url = {}, zia.token_url = {}", zia.base_url(), zia.token_url());
//! # Ok(()) }
//! ```

mod auth;
mod control;
mod limits;
mod server;
mod tenant;
mod test_key;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

pub use auth::{obfuscate as obfuscate_api_key, ONEAPI_AUDIENCE};
pub use tenant::{url_is_valid, ZiaCategory};
pub use test_key::{TEST_CLIENT_KEY_PEM, TEST_CLIENT_PUBLIC_KEY_PEM};

/// The API admin the default configuration accepts.
pub const DEFAULT_USERNAME: &str = "api-admin@example.com";
/// That admin's password.
pub const DEFAULT_PASSWORD: &str = "zia-Passw0rd-SECRET";
/// The tenant's 12-character cloud service API key.
pub const DEFAULT_API_KEY: &str = "Zk3yAbCd9XyZ";
/// The OneAPI client the default configuration accepts.
pub const DEFAULT_CLIENT_ID: &str = "nss-agent-client";
/// That client's secret.
pub const DEFAULT_CLIENT_SECRET: &str = "oneapi-client-SECRET-0123456789";

/// How to run a [`ZiaEmulator`].
#[derive(Debug, Clone)]
pub struct ZiaConfig {
    /// Address to listen on; port 0 picks a free one. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Holds `ca.pem`, `server.pem`, `server.key`: loaded if all present, else generated.
    pub cert_dir: PathBuf,
    /// The API admin of the API key login.
    pub username: String,
    pub password: String,
    /// The cloud service API key (12 characters).
    pub api_key: String,
    /// The OneAPI client.
    pub client_id: String,
    /// Its secret; `None` refuses secrets.
    pub client_secret: Option<String>,
    /// The SPKI PEM public key its client assertions are checked with; `None` refuses
    /// assertions. Default [`TEST_CLIENT_PUBLIC_KEY_PEM`].
    pub client_public_key_pem: Option<String>,
    /// Life of an access token (`expires_in`, whole seconds rounded up). Default 1 hour.
    pub token_lifetime: Duration,
    /// A session ends after this long idle (401 SESSION_NOT_VALID). Default 5 minutes.
    pub session_idle: Duration,
    /// Custom URLs the tenant may hold across its custom categories. Default 25,000.
    pub quota: u64,
    /// Custom categories the tenant may have. Default 64.
    pub max_custom_categories: usize,
    /// Enforce ZIA's rate limits (1 write a second, 2 reads, ...). Default on.
    pub rate_limits: bool,
    /// Chance that a write is answered 409 EDIT_LOCK_NOT_AVAILABLE. Default 0.
    pub edit_lock_probability: f64,
}

impl ZiaConfig {
    /// The default tenant (credentials above), certificates in `cert_dir`.
    pub fn new(cert_dir: &Path) -> ZiaConfig {
        ZiaConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cert_dir: cert_dir.to_path_buf(),
            username: DEFAULT_USERNAME.to_string(),
            password: DEFAULT_PASSWORD.to_string(),
            api_key: DEFAULT_API_KEY.to_string(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: Some(DEFAULT_CLIENT_SECRET.to_string()),
            client_public_key_pem: Some(TEST_CLIENT_PUBLIC_KEY_PEM.to_string()),
            token_lifetime: Duration::from_secs(3600),
            session_idle: Duration::from_secs(300),
            quota: 25_000,
            max_custom_categories: 64,
            rate_limits: true,
            edit_lock_probability: 0.0,
        }
    }
}

/// Which API requests a queued fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FaultScope {
    /// GET requests.
    Reads,
    /// POST, PUT and DELETE requests, activation included.
    Writes,
    /// Any API request (logins and the token endpoint excepted).
    Any,
}

/// An answer given instead of processing an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ZiaFault {
    /// 429 `{"message": "Rate Limit (1/SECOND) exceeded", "Retry-After": "0 seconds"}`.
    RateLimit,
    /// 409 `EDIT_LOCK_NOT_AVAILABLE`.
    EditLock,
    /// 403 with `x-zscaler-mode: read-only` and a `message` alone (maintenance).
    ReadOnly,
    /// 403 `STATE_READONLY` without `x-zscaler-mode: read-only`: a refusal, not
    /// maintenance.
    Forbidden,
    /// This status (409 or 412) with `{"message": "Failed during enter Org barrier"}`:
    /// load shedding.
    OrgBarrier(u16),
    /// 401 `{"message": "Resource Access Blocked"}`: load shedding.
    AccessBlocked,
    /// This status, e.g. 503.
    Status(u16),
}

/// One request the emulator received (control API requests excepted).
#[derive(Debug, Clone, Serialize)]
pub struct ZiaCall {
    pub method: String,
    /// Path as sent, e.g. `/api/v1/urlCategories/CUSTOM_01`.
    pub path: String,
    /// Query string without `?`, e.g. `action=ADD_TO_LIST`.
    pub query: String,
    /// The JSON body; `None` for none, and always for logins and token requests.
    pub body: Option<Value>,
    /// Status answered.
    pub status: u16,
    pub at: SystemTime,
}

impl ZiaCall {
    /// The `urls` of the body, if any.
    pub fn urls(&self) -> Vec<String> {
        self.body
            .as_ref()
            .and_then(|b| b.get("urls"))
            .and_then(|u| serde_json::from_value(u.clone()).ok())
            .unwrap_or_default()
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ZiaStats {
    /// Requests received (control API excepted), whatever the answer.
    pub api_calls: u64,
    /// Category writes that took effect.
    pub writes: u64,
    /// `POST /status/activate` answered 200.
    pub activations: u64,
    /// Pending changes activated by a logout or a session timeout.
    pub implicit_activations: u64,
    /// API key logins accepted.
    pub logins: u64,
    /// Logins and token requests refused.
    pub failed_logins: u64,
    pub logouts: u64,
    /// Access tokens issued.
    pub tokens: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Answers 409 EDIT_LOCK_NOT_AVAILABLE.
    pub edit_locks: u64,
    /// Load-shedding answers (409/412 "Failed during enter Org barrier", 401 "Resource
    /// Access Blocked").
    pub load_shed: u64,
    /// Sessions ended by idle time (or [`ZiaEmulator::expire_sessions`]).
    pub session_timeouts: u64,
}

/// A running ZIA emulator. Cheap to clone: clones share the server and its state.
#[derive(Clone)]
pub struct ZiaEmulator {
    inner: Arc<server::Shared>,
}

impl std::fmt::Debug for ZiaEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZiaEmulator")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl ZiaEmulator {
    /// Loads or generates the certificates, binds and serves in the background of the
    /// current tokio runtime.
    pub async fn start(cfg: ZiaConfig) -> anyhow::Result<ZiaEmulator> {
        Ok(ZiaEmulator {
            inner: server::start(cfg).await?,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `https://127.0.0.1:PORT`: the `zia.base_url` of both logins (API key paths under
    /// `/api/v1`, OneAPI paths under `/zia/api/v1`).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.inner.host)
    }

    /// `https://127.0.0.1:PORT/oauth2/v1/token`: the OneAPI `zia.token_url`.
    pub fn token_url(&self) -> String {
        format!("https://{}/oauth2/v1/token", self.inner.host)
    }

    /// The CA certificate clients must trust (`zia.ca_file`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.inner.cert_dir.join(crate::CA_FILE)
    }

    /// The categories as ZIA enforces them (as of the last activation).
    pub fn activated(&self) -> Vec<ZiaCategory> {
        self.inner
            .swept()
            .tenant
            .activated
            .values()
            .cloned()
            .collect()
    }

    /// The categories as saved, pending changes included (what the API reads).
    pub fn saved(&self) -> Vec<ZiaCategory> {
        self.inner.swept().tenant.saved.values().cloned().collect()
    }

    /// The activated category called `name`.
    pub fn activated_category(&self, name: &str) -> Option<ZiaCategory> {
        self.activated()
            .into_iter()
            .find(|c| c.configured_name == name)
    }

    /// The saved category called `name`.
    pub fn saved_category(&self, name: &str) -> Option<ZiaCategory> {
        self.saved().into_iter().find(|c| c.configured_name == name)
    }

    /// Whether saved changes wait for an activation.
    pub fn pending(&self) -> bool {
        self.inner.swept().tenant.pending()
    }

    /// Adds a category as another administrator would, saved and activated. Answers its id.
    pub fn seed(&self, category: ZiaCategory) -> String {
        self.inner.state().tenant.seed(category)
    }

    /// Every request received, in order (control API excepted).
    pub fn calls(&self) -> Vec<ZiaCall> {
        self.inner.state().calls.clone()
    }

    /// The requests that changed categories or asked for activation and succeeded.
    pub fn successful_writes(&self) -> Vec<ZiaCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != "GET" && (200..300).contains(&c.status))
            .filter(|c| c.path.contains("/urlCategories"))
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> ZiaStats {
        self.inner.swept().stats
    }

    /// Answers the next `times` API requests in `scope` with `fault`.
    pub fn push_fault(&self, scope: FaultScope, fault: ZiaFault, times: u32) {
        let mut st = self.inner.state();
        for _ in 0..times {
            st.faults.push_back((scope, fault));
        }
    }

    /// Read-only mode (maintenance): every write answered 403 with
    /// `x-zscaler-mode: read-only`; reads still work.
    pub fn set_read_only(&self, on: bool) {
        self.inner.state().read_only = on;
    }

    /// Chance that a write is answered 409 EDIT_LOCK_NOT_AVAILABLE.
    pub fn set_edit_lock_probability(&self, probability: f64) {
        self.inner.state().edit_lock_probability = probability;
    }

    /// Changes the tenant's custom URL quota.
    pub fn set_quota(&self, quota: u64) {
        self.inner.state().tenant.quota = quota;
    }

    /// Ends every session now, as a timeout would (pending changes are activated).
    pub fn expire_sessions(&self) {
        let mut st = self.inner.state();
        let ended = st.logins.end_all_sessions();
        if ended > 0 {
            st.stats.session_timeouts += ended as u64;
            st.end_sessions_activation();
        }
    }

    /// Ends every access token now.
    pub fn revoke_tokens(&self) {
        self.inner.state().logins.revoke_tokens();
    }

    /// Stops accepting and closes open connections. State stays readable.
    pub fn shutdown(&self) {
        self.inner.shutdown_tx.send_replace(true);
    }
}
