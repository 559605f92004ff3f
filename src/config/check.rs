//! The checks that run once every value has parsed: each value within its bounds (so that
//! no accepted value can overflow arithmetic elsewhere), paths absolute, listeners on
//! loopback unless allowed, and the relations between keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::load::SecretSources;
use super::size::{format_duration, format_size};
use super::{check_domain, check_token_shape, ConfigError, Limit, Settings};

/// The longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The largest uncompressed batch: MCAS takes files up to 5 GB, and a gzip stream of
/// incompressible data is slightly larger than its input.
const MAX_BATCH_BYTES: u64 = 4 << 30;

/// The longest record: one must fit in memory, with the read buffer around it.
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// The largest memory budget.
const MAX_MEMORY: u64 = 1 << 40;

/// The largest spool cap.
const MAX_SPOOL: u64 = 1 << 50;

/// The log formats MCAS's upload_url takes for Zscaler's logs.
pub const MCAS_SOURCES: [&str; 6] = [
    "ZSCALER",
    "ZSCALER_QRADAR",
    "ZSCALER_CEF",
    "ZSCALER_SYSLOG",
    "ZSCALER_QRADAR_SYSLOG",
    "ZSCALER_CEF_SYSLOG",
];

/// The length of ZIA's cloud service API key.
const ZIA_API_KEY_LENGTH: usize = 12;

impl Settings {
    /// Refuses relative paths: the daemon's working directory is not the administrator's.
    pub(super) fn check_paths(&self) -> Result<(), ConfigError> {
        let single = |key: &'static str, path: &Option<PathBuf>| path.clone().map(|p| (key, p));
        let paths: Vec<(&str, PathBuf)> = [
            single("mcas.token_file", &self.mcas.token_file),
            single("mcas.client_secret_file", &self.mcas.client_secret_file),
            single("mcas.certificate_file", &self.mcas.certificate_file),
            single("mcas.ca_file", &self.mcas.ca_file),
            single("zia.password_file", &self.zia.password_file),
            single("zia.api_key_file", &self.zia.api_key_file),
            single("zia.client_secret_file", &self.zia.client_secret_file),
            single("zia.private_key_file", &self.zia.private_key_file),
            single("zia.ca_file", &self.zia.ca_file),
            single("proxy.password_file", &self.proxy.password_file),
            Some(("paths.state_dir", self.paths.state_dir.clone())),
            Some(("paths.runtime_dir", self.paths.runtime_dir.clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        const FIX: &str = "write the absolute path (starting with /), since the daemon does not run in the directory you write it from";
        // The value is not shown (a value under the wrong key may be a secret): a list's
        // entry is named by its place.
        for (key, path) in paths {
            if !path.is_absolute() {
                return Err(ConfigError::new(
                    key,
                    format!("is not an absolute path: {FIX}"),
                ));
            }
        }
        for (n, path) in self.feed.files.iter().enumerate() {
            if !path.is_absolute() {
                return Err(ConfigError::new(
                    "feed.files",
                    format!(
                        "entry {} of {} is not an absolute path: {FIX}",
                        n + 1,
                        self.feed.files.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks each value's bounds and the relations between values that each parsed fine
    /// on their own.
    pub(super) fn check(&self, secrets: &SecretSources) -> Result<(), ConfigError> {
        self.check_mcas(secrets)?;
        self.check_listeners()?;
        self.check_sizes()?;
        self.check_durations()?;
        self.check_numbers()?;
        self.check_zia(secrets)?;
        self.proxy_target()?;
        if self.sync.category.trim().is_empty() {
            return Err(ConfigError::new(
                "sync.category",
                "is empty: name the custom URL category, e.g. \"MCAS Unsanctioned Apps\"",
            ));
        }
        Ok(())
    }

    fn check_mcas(&self, secrets: &SecretSources) -> Result<(), ConfigError> {
        let mcas = &self.mcas;
        if let Some(domain) = &mcas.domain {
            check_domain(domain).map_err(|p| ConfigError::new("mcas.domain", p))?;
        }
        if let Some(token) = &mcas.token {
            let token = token.expose().trim();
            check_token_shape(token)
                .map_err(|p| ConfigError::new(&secrets.key("mcas", "token"), p))?;
        }
        if mcas.data_source.trim().is_empty() {
            return Err(ConfigError::new(
                "mcas.data_source",
                "is empty: set it to the data source's name in the MCAS portal (default \"NSS\")",
            ));
        }
        if mcas.source != "auto" && !MCAS_SOURCES.contains(&mcas.source.as_str()) {
            return Err(ConfigError::new(
                "mcas.source",
                format!(
                    "is not an MCAS log format for Zscaler: use \"auto\" (the data source's own log type) or one of {}",
                    MCAS_SOURCES.join(", ")
                ),
            ));
        }
        if let Some(ca_file) = &mcas.ca_file {
            check_ca_file(ca_file).map_err(|p| ConfigError::new("mcas.ca_file", p))?;
        }
        check_https_base("mcas.authority", &mcas.authority)?;
        for (key, id) in [
            ("mcas.tenant_id", &mcas.tenant_id),
            ("mcas.client_id", &mcas.client_id),
        ] {
            if let Some(id) = id {
                check_entra_id(id).map_err(|p| ConfigError::new(key, p))?;
            }
        }
        if let Some(certificate) = &mcas.certificate_file {
            if mcas.client_secret.is_some() {
                let secret_key = secrets.key("mcas", "client_secret");
                return Err(ConfigError::new(
                    "mcas.certificate_file",
                    format!("and {secret_key} are both set: keep one of the two"),
                ));
            }
            check_certificate_file(certificate)
                .map_err(|p| ConfigError::new("mcas.certificate_file", p))?;
        }
        Ok(())
    }

    fn check_listeners(&self) -> Result<(), ConfigError> {
        check_listen(
            "feed",
            self.feed.listen,
            self.feed.allow_remote,
            "the feed port has no authentication: anyone who reaches it can write records into the tenant's MCAS",
        )?;
        check_listen(
            "metrics",
            self.metrics.listen,
            self.metrics.allow_remote,
            "the metrics port has no authentication: anyone who reaches it can read the agent's figures",
        )
    }

    fn check_sizes(&self) -> Result<(), ConfigError> {
        let limits = [
            (
                "feed.max_record_bytes",
                Some(self.feed.max_record_bytes),
                MAX_RECORD_BYTES,
                "",
            ),
            (
                "batch.max_bytes",
                Some(self.batch.max_bytes),
                MAX_BATCH_BYTES,
                ": MCAS accepts files up to 5 GB",
            ),
            (
                "batch.busy_max_bytes",
                Some(self.batch.busy_max_bytes),
                MAX_BATCH_BYTES,
                ": MCAS accepts files up to 5 GB",
            ),
            (
                "memory.limit",
                bytes(self.memory.limit),
                MAX_MEMORY,
                ", or \"auto\"",
            ),
            (
                "spool.max_bytes",
                bytes(self.spool.max_bytes),
                MAX_SPOOL,
                ", or \"auto\"",
            ),
        ];
        for (key, value, max, why) in limits {
            match value {
                Some(value) if value == 0 || value > max => {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "{} is out of range: write a size from 1 byte to {}{why}",
                            format_size(value),
                            format_size(max)
                        ),
                    ))
                }
                _ => {}
            }
        }
        if self.batch.busy_max_bytes < self.batch.max_bytes {
            return Err(ConfigError::new(
                "batch.busy_max_bytes",
                format!(
                    "{} is smaller than batch.max_bytes ({}): the busy ceiling must be at least the quiet limit",
                    format_size(self.batch.busy_max_bytes),
                    format_size(self.batch.max_bytes)
                ),
            ));
        }
        Ok(())
    }

    fn check_durations(&self) -> Result<(), ConfigError> {
        let upload = &self.upload;
        // Zero is allowed where it means "do not wait".
        for (key, value, may_be_zero) in [
            ("batch.max_age", self.batch.max_age, false),
            ("upload.timeout", upload.timeout, false),
            ("upload.backoff_min", upload.backoff_min, false),
            ("upload.backoff_max", upload.backoff_max, true),
            ("upload.auth_retry", upload.auth_retry, false),
            ("upload.outage_retry", upload.outage_retry, false),
            ("upload.shutdown_timeout", upload.shutdown_timeout, true),
            ("sync.interval", self.sync.interval, false),
            ("feed.partial_timeout", self.feed.partial_timeout, false),
        ] {
            if value.is_zero() && !may_be_zero {
                return Err(ConfigError::new(key, "must be longer than 0, e.g. \"5m\""));
            }
            if value > MAX_DURATION {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{} is too long: the longest any duration may be is 30 days (\"30d\")",
                        format_duration(value),
                    ),
                ));
            }
        }
        if upload.backoff_max < upload.backoff_min {
            return Err(ConfigError::new(
                "upload.backoff_max",
                "must not be shorter than upload.backoff_min",
            ));
        }
        Ok(())
    }

    fn check_numbers(&self) -> Result<(), ConfigError> {
        for (key, value, min, max) in [
            ("batch.max_records", self.batch.max_records, 1, u64::MAX),
            ("batch.gzip_level", u64::from(self.batch.gzip_level), 1, 9),
            ("batch.writers", self.batch.writers as u64, 0, 64),
            ("feed.max_connections", self.feed.max_connections, 1, 65_536),
            (
                "upload.api_calls_per_minute",
                u64::from(self.upload.api_calls_per_minute),
                1,
                10_000,
            ),
            (
                "upload.min_api_calls_per_minute",
                u64::from(self.upload.min_api_calls_per_minute),
                1,
                10_000,
            ),
            (
                "sync.max_custom_urls",
                self.sync.max_custom_urls,
                1,
                u64::MAX,
            ),
            (
                "sync.max_custom_categories",
                self.sync.max_custom_categories,
                1,
                u64::MAX,
            ),
        ] {
            if !(min..=max).contains(&value) {
                let range = if max == u64::MAX {
                    format!("a whole number of at least {min}")
                } else {
                    format!("a whole number from {min} to {max}")
                };
                return Err(ConfigError::new(
                    key,
                    format!("{value} is out of range: write {range}"),
                ));
            }
        }
        Ok(())
    }

    fn check_zia(&self, secrets: &SecretSources) -> Result<(), ConfigError> {
        let zia = &self.zia;
        if let Some(base_url) = &zia.base_url {
            check_https_base("zia.base_url", base_url)?;
        }
        if let Some(token_url) = &zia.token_url {
            check_https("zia.token_url", token_url)?;
        }
        if let Some(api_key) = &zia.api_key {
            let length = api_key.expose().chars().count();
            if length != ZIA_API_KEY_LENGTH {
                return Err(ConfigError::new(
                    &secrets.key("zia", "api_key"),
                    format!("the API key is {length} characters long; ZIA's cloud service API key has {ZIA_API_KEY_LENGTH}: copy it from Administration > Cloud Service API Security"),
                ));
            }
        }
        if let Some(private_key) = &zia.private_key_file {
            if zia.client_secret.is_some() {
                let secret_key = secrets.key("zia", "client_secret");
                return Err(ConfigError::new(
                    "zia.private_key_file",
                    format!("and {secret_key} are both set: keep one of the two"),
                ));
            }
            check_pem(private_key, &["PRIVATE KEY"])
                .map_err(|p| ConfigError::new("zia.private_key_file", p))?;
        }
        if let Some(ca_file) = &zia.ca_file {
            check_ca_file(ca_file).map_err(|p| ConfigError::new("zia.ca_file", p))?;
        }
        Ok(())
    }
}

fn bytes(limit: Limit) -> Option<u64> {
    match limit {
        Limit::Auto => None,
        Limit::Bytes(bytes) => Some(bytes),
    }
}

/// Refuses a listener other hosts can reach unless `<section>.allow_remote` says so.
fn check_listen(
    section: &str,
    listen: Option<SocketAddr>,
    allow_remote: bool,
    why: &str,
) -> Result<(), ConfigError> {
    match listen {
        Some(addr) if !addr.ip().is_loopback() && !allow_remote => Err(ConfigError::new(
            &format!("{section}.listen"),
            format!(
                "\"{addr}\" is not a loopback address, and {why}; listen on 127.0.0.1 (or \"\" to disable), or set {section}.allow_remote = true if the network in front of it is trusted"
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks an `https://host` base URL: no path beyond a trailing `/`, no query or user.
/// Checks a base URL: `https://host` (and port), no path.
pub fn check_https_base(key: &str, text: &str) -> Result<(), ConfigError> {
    let url = check_https(key, text)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            key,
            format!(
                "has a path: write the scheme and host alone, e.g. https://{}",
                url.host_str().unwrap_or("host")
            ),
        ));
    }
    Ok(())
}

/// Checks an `https://` URL with a host and no user or password.
pub fn check_https(key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(text).map_err(|e| {
        ConfigError::new(
            key,
            format!("is not a URL ({e}): write it like https://host"),
        )
    })?;
    if url.scheme() != "https" {
        return Err(ConfigError::new(
            key,
            "is not https: the agent sends credentials only over HTTPS",
        ));
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(ConfigError::new(
            key,
            "has a user or password, or no host: write https:// and the host name alone",
        ));
    }
    Ok(url)
}

/// Checks an Entra tenant or client id (it goes into the token endpoint's URL and form):
/// letters, digits, `-`, `.` and `_`, as GUIDs and domain names are written.
pub fn check_entra_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if !id.is_empty() && id.chars().all(allowed) {
        return Ok(());
    }
    Err("is not an Entra id: write the GUID shown on the app registration's overview (letters, digits and -), or for the tenant a domain such as contoso.onmicrosoft.com".to_string())
}

/// Checks that `path` is a readable PEM file with a certificate and its private key, as
/// an Entra application's certificate credential needs.
pub fn check_certificate_file(path: &Path) -> Result<(), String> {
    check_pem(path, &["CERTIFICATE", "PRIVATE KEY"])
}

/// Checks that `path` is readable and holds a PEM block of each of `labels`
/// (`-----BEGIN <...label>-----`).
fn check_pem(path: &Path, labels: &[&str]) -> Result<(), String> {
    let pem = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; point it at a readable PEM file",
            path.display()
        )
    })?;
    for label in labels {
        let found = pem.lines().any(|line| {
            line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{label}-----"))
        });
        if !found {
            return Err(format!(
                "{} holds no {label} (-----BEGIN ...{label}-----): point it at a PEM file with {}",
                path.display(),
                labels.join(" and ")
            ));
        }
    }
    Ok(())
}

/// Checks that `path` is a readable PEM file with at least one certificate, each usable.
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    ca_certificates(path).map(|_| ())
}

/// The certificates of the PEM file of CA certificates at `path` (`mcas.ca_file`,
/// `zia.ca_file`): at least one, each well formed, else what to fix, naming the file. The
/// configuration's check and the HTTPS client read the file by this one rule.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; point it at a readable PEM file of CA certificates, or remove the key",
            path.display()
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} is not a PEM bundle ({e}): point it at a PEM file of CA certificates",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at a PEM file of CA certificates",
            path.display()
        ));
    }
    Ok(certs)
}
