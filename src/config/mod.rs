//! The settings: defaults, loading from the TOML file and `NSS_AGENT__SECTION__KEY`
//! environment overrides, and validation that names the key at fault.

mod domain;
mod secret;
mod size;
mod targets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

pub use domain::check_domain;
pub use secret::{check_token_shape, Secret};
pub use size::{format_duration, format_size, parse_duration, parse_size};
pub use targets::{
    EntraApp, EntraSecret, McasCredential, McasTarget, OneApiSecret, ZiaLogin, ZiaTarget,
};

/// Where the configuration is read from when neither `--config` nor `NSS_AGENT_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/nss-agent/config.toml";

/// A configuration problem: the key at fault and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The dotted key, e.g. `mcas.domain`, or the file's path when the file itself is bad.
    pub key: String,
    /// What is wrong and how to fix it, in words for an administrator.
    pub problem: String,
}

impl ConfigError {
    /// The error for `key`, saying what is wrong and how to fix it.
    pub fn new(key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

/// A size that is either given or left to the agent to choose from the machine (`"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Chosen at start from the machine's memory or disk.
    Auto,
    /// This many bytes.
    Bytes(u64),
}

/// Everything the agent is configured with. Built only by [`Settings::load`] or
/// [`Settings::default`], so every value in it has been checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings came from, whether or not it existed.
    pub path: PathBuf,
    /// Whether that file existed.
    pub file_found: bool,
    pub mcas: McasSettings,
    pub feed: FeedSettings,
    pub batch: BatchSettings,
    pub upload: UploadSettings,
    pub spool: SpoolSettings,
    pub memory: MemorySettings,
    pub sync: SyncSettings,
    pub metrics: MetricsSettings,
    pub paths: PathSettings,
}

/// `[mcas]`: the tenant to upload to.
#[derive(Debug, Clone)]
pub struct McasSettings {
    /// Host or host:port of the tenant's portal, without scheme.
    pub domain: Option<String>,
    /// The API token, from `token` or read from `token_file`.
    pub token: Option<Secret>,
    /// Where the token was read from, when it came from a file.
    pub token_file: Option<PathBuf>,
    /// `inputStreamName` of done_upload: the data source's name in the portal.
    pub data_source: String,
    /// The log format passed to upload_url (`ZSCALER_QRADAR` for the LEEF feed).
    pub source: String,
    /// Extra PEM trust anchors, added to the system's.
    pub ca_file: Option<PathBuf>,
}

/// `[feed]`: where records come from.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The TCP receiver's address; `None` when disabled with `""`.
    pub listen: Option<SocketAddr>,
    /// Files to tail.
    pub files: Vec<PathBuf>,
    /// Records longer than this are dropped and counted.
    pub max_record_bytes: u64,
}

/// `[batch]`: when a batch file is sealed, and how it is compressed.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub max_records: u64,
    /// Uncompressed bytes.
    pub max_bytes: u64,
    pub max_age: Duration,
    pub gzip_level: u32,
    /// Batch writers compressing side by side; `0` means one per core.
    pub writers: usize,
}

/// `[upload]`: how the agent talks to MCAS.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// MCAS API calls a minute, for the whole process. MCAS allows 30 a minute per tenant,
    /// shared by every agent of the tenant: lower it when several appliances upload.
    pub api_calls_per_minute: u32,
    /// How long one API call may take, and the base of a blob PUT's allowance.
    pub timeout: Duration,
    /// First wait after a failed attempt; doubled each time up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often a refused token (401/403) is tried again.
    pub auth_retry: Duration,
    /// At shutdown, how long an upload in flight may take to finish.
    pub shutdown_timeout: Duration,
}

/// `[spool]`: sealed batches waiting on disk.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub max_bytes: Limit,
}

/// `[memory]`: the one budget every buffer between socket and spool draws on.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    pub limit: Limit,
}

/// `[sync]`: the unsanctioned-apps sync into the custom URL category.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub interval: Duration,
    pub category: String,
    pub max_custom_urls: u64,
    pub max_custom_categories: u64,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
}

/// `[paths]`: where the agent keeps its state.
#[derive(Debug, Clone)]
pub struct PathSettings {
    /// Spool, checkpoints, category store.
    pub state_dir: PathBuf,
    /// Pidfile, live status.
    pub runtime_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            file_found: false,
            mcas: McasSettings {
                domain: None,
                token: None,
                token_file: None,
                data_source: "NSS".to_string(),
                source: "ZSCALER_QRADAR".to_string(),
                ca_file: None,
            },
            feed: FeedSettings {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 13010))),
                files: Vec::new(),
                max_record_bytes: 1 << 20,
            },
            batch: BatchSettings {
                max_records: 100_000,
                max_bytes: 256 << 20,
                max_age: Duration::from_secs(300),
                gzip_level: 6,
                writers: 0,
            },
            upload: UploadSettings {
                api_calls_per_minute: 30,
                timeout: Duration::from_secs(60),
                backoff_min: Duration::from_secs(1),
                backoff_max: Duration::from_secs(300),
                auth_retry: Duration::from_secs(300),
                shutdown_timeout: Duration::from_secs(30),
            },
            spool: SpoolSettings {
                max_bytes: Limit::Auto,
            },
            memory: MemorySettings { limit: Limit::Auto },
            sync: SyncSettings {
                interval: Duration::from_secs(2 * 3600),
                category: "MCAS Unsanctioned Apps".to_string(),
                max_custom_urls: 25_000,
                max_custom_categories: 48,
            },
            metrics: MetricsSettings {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9713))),
            },
            paths: PathSettings {
                state_dir: PathBuf::from("/var/lib/nss-agent"),
                runtime_dir: PathBuf::from("/run/nss-agent"),
            },
        }
    }
}

/// Every key the file may hold, so that a misspelt one is refused instead of ignored.
const KNOWN_KEYS: &[&str] = &[
    "mcas.domain",
    "mcas.token",
    "mcas.token_file",
    "mcas.data_source",
    "mcas.source",
    "mcas.ca_file",
    "feed.listen",
    "feed.files",
    "feed.max_record_bytes",
    "batch.max_records",
    "batch.max_bytes",
    "batch.max_age",
    "batch.gzip_level",
    "batch.writers",
    "upload.api_calls_per_minute",
    "upload.timeout",
    "upload.backoff_min",
    "upload.backoff_max",
    "upload.auth_retry",
    "upload.shutdown_timeout",
    "spool.max_bytes",
    "memory.limit",
    "sync.interval",
    "sync.category",
    "sync.max_custom_urls",
    "sync.max_custom_categories",
    "metrics.listen",
    "paths.state_dir",
    "paths.runtime_dir",
];

/// The largest uncompressed batch: MCAS takes files up to 5 GB, and a gzip stream of
/// incompressible data is slightly larger than its input.
const MAX_BATCH_BYTES: u64 = 4 << 30;

impl Settings {
    /// The configuration file's path: `explicit`, else `$NSS_AGENT_CONFIG`, else the default.
    pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(path) => path.to_path_buf(),
            None => std::env::var_os("NSS_AGENT_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
        }
    }

    /// Loads the file at `path` (a missing file means all defaults), applies the
    /// `NSS_AGENT__SECTION__KEY` environment overrides, and checks every value.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let file_found = path.exists();
        let file_key = path.display().to_string();
        if file_found {
            std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    &file_key,
                    format!("cannot read the configuration file: {e}"),
                )
            })?;
        }
        let raw = Config::builder()
            .add_source(File::new(&file_key, FileFormat::Toml).required(false))
            .add_source(
                Environment::with_prefix("NSS_AGENT")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("feed.files")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| {
                ConfigError::new(
                    &file_key,
                    format!("the file is not valid TOML ({e}): fix the line it names"),
                )
            })?;
        let raw = Raw(raw);
        raw.refuse_unknown_keys()?;

        let defaults = Settings::default();
        let mut settings = Settings {
            path: path.to_path_buf(),
            file_found,
            mcas: McasSettings {
                domain: raw.string("mcas.domain")?.filter(|d| !d.is_empty()),
                token: None,
                token_file: raw.path("mcas.token_file")?,
                data_source: raw.string_or("mcas.data_source", &defaults.mcas.data_source)?,
                source: raw.string_or("mcas.source", &defaults.mcas.source)?,
                ca_file: raw.path("mcas.ca_file")?,
            },
            feed: FeedSettings {
                listen: raw.listen("feed.listen", defaults.feed.listen)?,
                files: raw.paths("feed.files")?,
                max_record_bytes: raw
                    .size("feed.max_record_bytes", defaults.feed.max_record_bytes)?,
            },
            batch: BatchSettings {
                max_records: raw.number(
                    "batch.max_records",
                    defaults.batch.max_records,
                    1,
                    u64::MAX,
                )?,
                max_bytes: raw.size("batch.max_bytes", defaults.batch.max_bytes)?,
                max_age: raw.duration("batch.max_age", defaults.batch.max_age)?,
                gzip_level: raw.number("batch.gzip_level", 6, 1, 9)? as u32,
                writers: raw.number_or_auto("batch.writers", 0, 64)? as usize,
            },
            upload: UploadSettings {
                api_calls_per_minute: raw.number("upload.api_calls_per_minute", 30, 1, 10_000)?
                    as u32,
                timeout: raw.duration("upload.timeout", defaults.upload.timeout)?,
                backoff_min: raw.duration("upload.backoff_min", defaults.upload.backoff_min)?,
                backoff_max: raw.duration("upload.backoff_max", defaults.upload.backoff_max)?,
                auth_retry: raw.duration("upload.auth_retry", defaults.upload.auth_retry)?,
                shutdown_timeout: raw
                    .duration("upload.shutdown_timeout", defaults.upload.shutdown_timeout)?,
            },
            spool: SpoolSettings {
                max_bytes: raw.limit("spool.max_bytes")?,
            },
            memory: MemorySettings {
                limit: raw.limit("memory.limit")?,
            },
            sync: SyncSettings {
                interval: raw.duration("sync.interval", defaults.sync.interval)?,
                category: raw.string_or("sync.category", &defaults.sync.category)?,
                max_custom_urls: raw.number("sync.max_custom_urls", 25_000, 1, u64::MAX)?,
                max_custom_categories: raw.number("sync.max_custom_categories", 48, 1, u64::MAX)?,
            },
            metrics: MetricsSettings {
                listen: raw.listen("metrics.listen", defaults.metrics.listen)?,
            },
            paths: PathSettings {
                state_dir: raw
                    .path("paths.state_dir")?
                    .unwrap_or(defaults.paths.state_dir),
                runtime_dir: raw
                    .path("paths.runtime_dir")?
                    .unwrap_or(defaults.paths.runtime_dir),
            },
        };
        settings.mcas.token = raw.token(settings.mcas.token_file.as_deref())?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks the relations between values that each parsed fine on their own.
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(domain) = &self.mcas.domain {
            check_domain(domain).map_err(|p| ConfigError::new("mcas.domain", p))?;
        }
        if self.mcas.data_source.trim().is_empty() {
            return Err(ConfigError::new(
                "mcas.data_source",
                "is empty: set it to the data source's name in the MCAS portal (default \"NSS\")",
            ));
        }
        if self.mcas.source.is_empty()
            || !self
                .mcas
                .source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                "mcas.source",
                format!(
                    "\"{}\" is not an MCAS log format: use ZSCALER_QRADAR for the NSS MCAS feed",
                    self.mcas.source
                ),
            ));
        }
        if let Some(ca_file) = &self.mcas.ca_file {
            check_ca_file(ca_file).map_err(|p| ConfigError::new("mcas.ca_file", p))?;
        }
        if self.feed.max_record_bytes == 0 {
            return Err(ConfigError::new(
                "feed.max_record_bytes",
                "must be more than 0, e.g. \"1MiB\"",
            ));
        }
        if self.batch.max_bytes == 0 || self.batch.max_bytes > MAX_BATCH_BYTES {
            return Err(ConfigError::new(
                "batch.max_bytes",
                "must be between 1 byte and 4GiB: MCAS accepts files up to 5 GB",
            ));
        }
        if self.batch.max_age.is_zero() {
            return Err(ConfigError::new(
                "batch.max_age",
                "must be longer than 0, e.g. \"5m\"",
            ));
        }
        for (key, value) in [
            ("upload.timeout", self.upload.timeout),
            ("upload.backoff_min", self.upload.backoff_min),
            ("upload.auth_retry", self.upload.auth_retry),
            ("sync.interval", self.sync.interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be longer than 0"));
            }
        }
        if self.upload.backoff_max < self.upload.backoff_min {
            return Err(ConfigError::new(
                "upload.backoff_max",
                "must not be shorter than upload.backoff_min",
            ));
        }
        if self.sync.category.trim().is_empty() {
            return Err(ConfigError::new(
                "sync.category",
                "is empty: name the custom URL category, e.g. \"MCAS Unsanctioned Apps\"",
            ));
        }
        Ok(())
    }

    /// The MCAS target, or the error an administrator needs when domain or token is missing.
    pub fn mcas_target(&self) -> Result<McasTarget, ConfigError> {
        let domain = self.mcas.domain.clone().ok_or_else(|| {
            ConfigError::new(
                "mcas.domain",
                format!(
                    "is not set{}: run `sudo nss configure-mcas` to enter the MCAS domain and token",
                    self.missing_file_note()
                ),
            )
        })?;
        let token = self.mcas.token.clone().ok_or_else(|| {
            ConfigError::new(
                "mcas.token",
                format!(
                    "is not set{}: run `sudo nss configure-mcas` to enter the MCAS API token (or set mcas.token_file)",
                    self.missing_file_note()
                ),
            )
        })?;
        Ok(McasTarget {
            domain,
            credential: McasCredential::Token(token),
            data_source: self.mcas.data_source.clone(),
            source: self.mcas.source.clone(),
            ca_file: self.mcas.ca_file.clone(),
        })
    }

    fn missing_file_note(&self) -> String {
        if self.file_found {
            String::new()
        } else {
            format!(
                " (there is no configuration file at {})",
                self.path.display()
            )
        }
    }

    /// The spool directory inside the state directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.paths.state_dir.join("spool")
    }
}

/// Checks that `path` is a readable PEM file with at least one certificate.
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; point it at a readable PEM file of CA certificates, or remove the key",
            path.display()
        )
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at a PEM file of CA certificates",
            path.display()
        ));
    }
    Ok(())
}

/// The merged file and environment values, read one key at a time so that every error
/// names its key.
struct Raw(Config);

impl Raw {
    fn refuse_unknown_keys(&self) -> Result<(), ConfigError> {
        let top: std::collections::BTreeMap<String, Value> = self
            .0
            .clone()
            .try_deserialize()
            .map_err(|e| ConfigError::new("(file)", e.to_string()))?;
        for (section, value) in top {
            match value.kind {
                ValueKind::Table(table) => {
                    for key in table.keys() {
                        let full = format!("{section}.{key}");
                        if !KNOWN_KEYS.contains(&full.as_str()) {
                            return Err(ConfigError::new(
                                &full,
                                "is not a known key: check its spelling and section (`nss dump-config` lists every key)",
                            ));
                        }
                    }
                }
                _ => {
                    return Err(ConfigError::new(
                        &section,
                        "is not a known section: keys belong under [mcas], [feed], [batch], [upload], [spool], [memory], [sync], [metrics] or [paths]",
                    ))
                }
            }
        }
        Ok(())
    }

    fn value(&self, key: &str) -> Option<Value> {
        self.0.get::<Value>(key).ok()
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => match v.kind {
                ValueKind::String(s) => Ok(Some(s)),
                ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::I128(_) | ValueKind::U128(_) => {
                    Ok(Some(v.to_string()))
                }
                _ => Err(ConfigError::new(key, "must be a string in quotes")),
            },
        }
    }

    fn string_or(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_string()))
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self
            .string(key)?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from))
    }

    fn paths(&self, key: &str) -> Result<Vec<PathBuf>, ConfigError> {
        match self.value(key) {
            None => Ok(Vec::new()),
            Some(v) => match v.kind {
                ValueKind::Array(items) => items
                    .into_iter()
                    .map(|item| match item.kind {
                        ValueKind::String(s) if !s.is_empty() => Ok(PathBuf::from(s)),
                        _ => Err(ConfigError::new(
                            key,
                            "must be a list of file paths in quotes",
                        )),
                    })
                    .collect(),
                ValueKind::String(s) if s.is_empty() => Ok(Vec::new()),
                ValueKind::String(s) => Ok(vec![PathBuf::from(s)]),
                _ => Err(ConfigError::new(
                    key,
                    "must be a list of file paths, e.g. [\"/var/log/nss/mcas.log\"]",
                )),
            },
        }
    }

    fn size(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => parse_size(&s).map_err(|p| ConfigError::new(key, p)),
        }
    }

    fn limit(&self, key: &str) -> Result<Limit, ConfigError> {
        match self.string(key)? {
            None => Ok(Limit::Auto),
            Some(s) if s.eq_ignore_ascii_case("auto") => Ok(Limit::Auto),
            Some(s) => match parse_size(&s) {
                Ok(0) => Err(ConfigError::new(key, "must be more than 0, or \"auto\"")),
                Ok(bytes) => Ok(Limit::Bytes(bytes)),
                Err(p) => Err(ConfigError::new(key, format!("{p}, or \"auto\""))),
            },
        }
    }

    fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => parse_duration(&s).map_err(|p| ConfigError::new(key, p)),
        }
    }

    fn number(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(default);
        };
        match text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ if max == u64::MAX => Err(ConfigError::new(
                key,
                format!("\"{text}\" is not a whole number of at least {min}"),
            )),
            _ => Err(ConfigError::new(
                key,
                format!("\"{text}\" is not a whole number from {min} to {max}"),
            )),
        }
    }

    fn number_or_auto(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.string(key)? {
            Some(s) if s.eq_ignore_ascii_case("auto") => Ok(0),
            _ => self.number(key, 0, min, max),
        }
    }

    fn listen(
        &self,
        key: &str,
        default: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ConfigError::new(
                    key,
                    format!("\"{s}\" is not an address: write it like \"127.0.0.1:13010\", or \"\" to disable"),
                )
            }),
        }
    }

    fn token(&self, token_file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
        let inline = self.string("mcas.token")?.filter(|t| !t.is_empty());
        let (key, token) = match (inline, token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "mcas.token",
                    "and mcas.token_file are both set: keep one of the two",
                ))
            }
            (Some(token), None) => ("mcas.token", token),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        "mcas.token_file",
                        format!(
                            "cannot read {}: {e}; point it at a readable file holding the token",
                            path.display()
                        ),
                    )
                })?;
                ("mcas.token_file", text.trim().to_string())
            }
            (None, None) => return Ok(None),
        };
        check_token_shape(&token).map_err(|p| ConfigError::new(key, p))?;
        Ok(Some(Secret::new(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load(&path)
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_when_the_file_is_missing() {
        let settings = Settings::load(Path::new("/nonexistent/config.toml")).unwrap();
        assert!(!settings.file_found);
        assert_eq!(settings.batch.max_records, 100_000);
        assert_eq!(settings.batch.max_bytes, 256 << 20);
        assert_eq!(
            settings.feed.listen,
            Some("127.0.0.1:13010".parse().unwrap())
        );
        let err = settings.mcas_target().unwrap_err();
        assert_eq!(err.key, "mcas.domain");
        assert!(err.problem.contains("configure-mcas"));
    }

    #[test]
    fn reads_sizes_durations_and_auto() {
        let s = load(&format!(
            r#"
            [mcas]
            domain = "x.us3.portal.cloudappsecurity.com"
            token = "{TOKEN}"
            [feed]
            listen = ""
            files = ["/tmp/a.log"]
            max_record_bytes = "64KiB"
            [batch]
            max_bytes = "64MiB"
            max_age = "90s"
            max_records = 10
            [memory]
            limit = "512MiB"
            [spool]
            max_bytes = "auto"
            "#
        ))
        .unwrap();
        assert_eq!(s.feed.listen, None);
        assert_eq!(s.feed.max_record_bytes, 64 << 10);
        assert_eq!(s.batch.max_bytes, 64 << 20);
        assert_eq!(s.batch.max_age, Duration::from_secs(90));
        assert_eq!(s.memory.limit, Limit::Bytes(512 << 20));
        assert_eq!(s.spool.max_bytes, Limit::Auto);
        let target = s.mcas_target().unwrap();
        match target.credential {
            McasCredential::Token(token) => assert_eq!(token.expose(), TOKEN),
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn names_the_key_at_fault() {
        for (toml, key) in [
            ("[mcas]\ndomain = \"https://x.com\"", "mcas.domain"),
            ("[mcas]\ndomain = \"x.com/path\"", "mcas.domain"),
            ("[mcas]\ndomain = \"x .com\"", "mcas.domain"),
            ("[mcas]\nca_file = \"/nonexistent.pem\"", "mcas.ca_file"),
            ("[mcas]\ntoken = \"short\"", "mcas.token"),
            ("[batch]\nmax_age = \"soon\"", "batch.max_age"),
            ("[batch]\nmax_bytes = \"8GiB\"", "batch.max_bytes"),
            ("[batch]\ngzip_level = 11", "batch.gzip_level"),
            ("[batch]\nmax_agee = \"5m\"", "batch.max_agee"),
            ("[feed]\nlisten = \"localhost\"", "feed.listen"),
        ] {
            let err = load(toml).unwrap_err();
            assert_eq!(err.key, key, "{toml}: {err}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let s = load(&format!("[mcas]\ntoken = \"{TOKEN}\"")).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains(TOKEN));
        assert!(debug.contains("****cdef"));
    }
}
