//! The settings, declared once: each section's fields, how the file writes them, and
//! their defaults. [`super::load`] fills them from the file and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::size::{deserialize_duration as duration, deserialize_size as size, Limit};
use super::values::{files, listen, non_empty, writers, McasAuth, ZiaAuth};
use super::{Secret, DEFAULT_CONFIG_PATH};

/// Everything the agent is configured with. Built only by [`Settings::load`] or
/// [`Settings::default`], so every value in it has been checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The file the settings came from, whether or not it existed.
    #[serde(skip)]
    pub path: PathBuf,
    /// Whether that file existed.
    #[serde(skip)]
    pub file_found: bool,
    pub mcas: McasSettings,
    pub feed: FeedSettings,
    pub batch: BatchSettings,
    pub upload: UploadSettings,
    pub spool: SpoolSettings,
    pub memory: MemorySettings,
    pub sync: SyncSettings,
    pub zia: ZiaSettings,
    pub proxy: ProxySettings,
    pub metrics: MetricsSettings,
    pub paths: PathSettings,
    /// What the administrator should know but that does not stop the agent.
    #[serde(skip)]
    pub(super) warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            file_found: false,
            mcas: McasSettings::default(),
            feed: FeedSettings::default(),
            batch: BatchSettings::default(),
            upload: UploadSettings::default(),
            spool: SpoolSettings::default(),
            memory: MemorySettings::default(),
            sync: SyncSettings::default(),
            zia: ZiaSettings::default(),
            proxy: ProxySettings::default(),
            metrics: MetricsSettings::default(),
            paths: PathSettings::default(),
            warnings: Vec::new(),
        }
    }
}

/// `[mcas]`: the tenant to upload to, and how the agent proves itself to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McasSettings {
    /// Host or host:port of the tenant's portal, without scheme.
    #[serde(deserialize_with = "non_empty")]
    pub domain: Option<String>,
    /// A legacy API token (`"token"`) or an Entra application (`"entra"`).
    pub auth: McasAuth,
    /// The API token, from `token`, `token_file` or the credentials directory.
    #[serde(deserialize_with = "non_empty")]
    pub token: Option<Secret>,
    /// Where the token was read from, when it came from a file.
    #[serde(deserialize_with = "non_empty")]
    pub token_file: Option<PathBuf>,
    /// Entra: the directory (tenant) id or a verified domain.
    #[serde(deserialize_with = "non_empty")]
    pub tenant_id: Option<String>,
    /// Entra: the application (client) id.
    #[serde(deserialize_with = "non_empty")]
    pub client_id: Option<String>,
    /// Entra: the client secret, from `client_secret`, `client_secret_file` or the
    /// credentials directory.
    #[serde(deserialize_with = "non_empty")]
    pub client_secret: Option<Secret>,
    /// Entra: where the client secret was read from.
    #[serde(deserialize_with = "non_empty")]
    pub client_secret_file: Option<PathBuf>,
    /// Entra: a PEM file with the application's certificate and private key.
    #[serde(deserialize_with = "non_empty")]
    pub certificate_file: Option<PathBuf>,
    /// Entra: the login authority, `https://login.microsoftonline.com` by default.
    pub authority: String,
    /// `inputStreamName` of done_upload: the data source's name in the portal.
    pub data_source: String,
    /// The log format passed to upload_url: `auto` (the data source's own log type as
    /// MCAS lists it, else `ZSCALER_QRADAR`) or one of the six Zscaler names.
    pub source: String,
    /// Extra PEM trust anchors, added to the system's.
    #[serde(deserialize_with = "non_empty")]
    pub ca_file: Option<PathBuf>,
}

impl Default for McasSettings {
    fn default() -> McasSettings {
        McasSettings {
            domain: None,
            auth: McasAuth::Token,
            token: None,
            token_file: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            certificate_file: None,
            authority: "https://login.microsoftonline.com".to_string(),
            data_source: "NSS".to_string(),
            source: "auto".to_string(),
            ca_file: None,
        }
    }
}

/// `[feed]`: where records come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    /// The TCP receiver's address; `None` when disabled with `""`.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// Whether `listen` may be an address other hosts reach (the port has no authentication).
    pub allow_remote: bool,
    /// Files to tail.
    #[serde(deserialize_with = "files")]
    pub files: Vec<PathBuf>,
    /// Records longer than this are dropped and counted.
    #[serde(deserialize_with = "size")]
    pub max_record_bytes: u64,
    /// TCP connections read at once; more are closed as they arrive, and counted.
    pub max_connections: u64,
    /// How long a TCP connection may send nothing (or wait for the budget of unfinished
    /// records) while it holds part of a record; then it is closed, its fragment dropped.
    #[serde(deserialize_with = "duration")]
    pub partial_timeout: Duration,
}

impl Default for FeedSettings {
    fn default() -> FeedSettings {
        FeedSettings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 13010))),
            allow_remote: false,
            files: Vec::new(),
            max_record_bytes: 1 << 20,
            max_connections: 64,
            partial_timeout: Duration::from_secs(30),
        }
    }
}

/// `[batch]`: when a batch file is sealed, and how it is compressed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    pub max_records: u64,
    /// Uncompressed bytes.
    #[serde(deserialize_with = "size")]
    pub max_bytes: u64,
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// The ceiling of uncompressed bytes a batch grows to while sealed batches wait for
    /// upload (`max_records` and `max_bytes` are then set aside), and of a merge of
    /// waiting batches into one upload.
    #[serde(deserialize_with = "size")]
    pub busy_max_bytes: u64,
    pub gzip_level: u32,
    /// Batch writers compressing side by side; `0` means one per core.
    #[serde(deserialize_with = "writers")]
    pub writers: usize,
}

impl Default for BatchSettings {
    fn default() -> BatchSettings {
        BatchSettings {
            max_records: 100_000,
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(300),
            busy_max_bytes: 4 << 30,
            gzip_level: 6,
            writers: 0,
        }
    }
}

/// `[upload]`: how the agent talks to MCAS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// MCAS API calls a minute, for the whole process. MCAS allows 30 a minute per tenant,
    /// shared by every agent of the tenant: lower it when several appliances upload.
    pub api_calls_per_minute: u32,
    /// The least this agent's own rate of API calls falls to when MCAS answers 429 (other
    /// agents share the tenant); it halves on each 429 and grows back by one call a minute
    /// per minute's worth of calls that succeed, up to `api_calls_per_minute` (which also
    /// caps this floor).
    pub min_api_calls_per_minute: u32,
    /// How long one API call may take, and the base of a blob PUT's allowance.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// First wait after a failed attempt; doubled each time up to `backoff_max`.
    #[serde(deserialize_with = "duration")]
    pub backoff_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// While MCAS fails for every batch (an outage), one attempt every this long, so that
    /// an outage of any length costs at most this long after MCAS is back and few of the
    /// tenant's calls meanwhile (4 a minute at 15 s).
    #[serde(deserialize_with = "duration")]
    pub outage_retry: Duration,
    /// How often a refused token (401/403) is tried again.
    #[serde(deserialize_with = "duration")]
    pub auth_retry: Duration,
    /// At shutdown, how long an upload in flight may take to finish.
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for UploadSettings {
    fn default() -> UploadSettings {
        UploadSettings {
            api_calls_per_minute: 30,
            min_api_calls_per_minute: 4,
            timeout: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            outage_retry: Duration::from_secs(15),
            auth_retry: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `[spool]`: sealed batches waiting on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    pub max_bytes: Limit,
}

impl Default for SpoolSettings {
    fn default() -> SpoolSettings {
        SpoolSettings {
            max_bytes: Limit::Auto,
        }
    }
}

/// `[memory]`: the one budget every buffer between socket and spool draws on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    pub limit: Limit,
}

impl Default for MemorySettings {
    fn default() -> MemorySettings {
        MemorySettings { limit: Limit::Auto }
    }
}

/// `[sync]`: the unsanctioned-apps sync into the custom URL category.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    pub category: String,
    pub max_custom_urls: u64,
    pub max_custom_categories: u64,
}

impl Default for SyncSettings {
    fn default() -> SyncSettings {
        SyncSettings {
            interval: Duration::from_secs(2 * 3600),
            category: "MCAS Unsanctioned Apps".to_string(),
            max_custom_urls: 25_000,
            max_custom_categories: 48,
        }
    }
}

/// `[zia]`: the tenant's ZIA API, where the unsanctioned-apps category is pushed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZiaSettings {
    /// `https://zsapi.<cloud>.net` or `https://api.zsapi.net`; `None` (`""`) keeps the
    /// category on the appliance only.
    #[serde(deserialize_with = "non_empty")]
    pub base_url: Option<String>,
    /// `"api_key"` (admin and API key) or `"oneapi"` (ZIdentity client credentials).
    pub auth: ZiaAuth,
    /// api_key: the API admin's login name.
    #[serde(deserialize_with = "non_empty")]
    pub username: Option<String>,
    /// api_key: the admin's password, from `password`, `password_file` or the credentials
    /// directory.
    #[serde(deserialize_with = "non_empty")]
    pub password: Option<Secret>,
    #[serde(deserialize_with = "non_empty")]
    pub password_file: Option<PathBuf>,
    /// api_key: the 12-character cloud service API key.
    #[serde(deserialize_with = "non_empty")]
    pub api_key: Option<Secret>,
    #[serde(deserialize_with = "non_empty")]
    pub api_key_file: Option<PathBuf>,
    /// oneapi: `https://<vanity>.zslogin.net/oauth2/v1/token`.
    #[serde(deserialize_with = "non_empty")]
    pub token_url: Option<String>,
    /// oneapi: the client id.
    #[serde(deserialize_with = "non_empty")]
    pub client_id: Option<String>,
    /// oneapi: the client secret, from `client_secret`, `client_secret_file` or the
    /// credentials directory.
    #[serde(deserialize_with = "non_empty")]
    pub client_secret: Option<Secret>,
    #[serde(deserialize_with = "non_empty")]
    pub client_secret_file: Option<PathBuf>,
    /// oneapi: a PEM RSA key that signs a client assertion, instead of a secret.
    #[serde(deserialize_with = "non_empty")]
    pub private_key_file: Option<PathBuf>,
    /// Extra PEM trust anchors for ZIA and its token endpoint.
    #[serde(deserialize_with = "non_empty")]
    pub ca_file: Option<PathBuf>,
}

/// `[proxy]`: the outbound HTTP proxy every HTTPS connection goes through (MCAS, its blob
/// store, the Entra token endpoint, ZIA and its token endpoint), with CONNECT. Empty
/// `url`: every connection is direct, whatever `HTTPS_PROXY` the environment holds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// `http://host:port`.
    #[serde(deserialize_with = "non_empty")]
    pub url: Option<String>,
    /// The user, when the proxy asks for Basic credentials.
    #[serde(deserialize_with = "non_empty")]
    pub username: Option<String>,
    /// Its password, from `password`, `password_file` or the credentials directory.
    #[serde(deserialize_with = "non_empty")]
    pub password: Option<Secret>,
    #[serde(deserialize_with = "non_empty")]
    pub password_file: Option<PathBuf>,
    /// Hosts reached directly, comma-separated: `host`, `.domain` (and its subdomains),
    /// IP addresses, CIDR ranges.
    pub no_proxy: String,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// Whether `listen` may be an address other hosts reach.
    pub allow_remote: bool,
}

impl Default for MetricsSettings {
    fn default() -> MetricsSettings {
        MetricsSettings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9713))),
            allow_remote: false,
        }
    }
}

/// `[paths]`: where the agent keeps its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSettings {
    /// Spool, checkpoints, category store.
    pub state_dir: PathBuf,
    /// Pidfile, live status.
    pub runtime_dir: PathBuf,
}

impl Default for PathSettings {
    fn default() -> PathSettings {
        PathSettings {
            state_dir: PathBuf::from("/var/lib/nss-agent"),
            runtime_dir: PathBuf::from("/run/nss-agent"),
        }
    }
}
