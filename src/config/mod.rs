//! The settings: declared once ([`settings`]), read from the TOML file and
//! `NSS_AGENT__SECTION__KEY` environment overrides ([`load`]), checked so that an error
//! names the key at fault ([`check`]), and turned into the targets the clients use.

mod check;
mod daemon_view;
mod domain;
pub(crate) mod edit;
mod load;
pub(crate) mod proxy;
mod secret;
mod settings;
mod size;
mod syntax;
mod targets;
mod values;

use std::path::{Path, PathBuf};

pub use check::{
    ca_certificates, check_ca_file, check_certificate_file, check_entra_id, check_https,
    check_https_base, MCAS_SOURCES,
};
pub use daemon_view::{check_daemon_reads, DaemonView};
pub use domain::check_domain;
pub use proxy::{proxy_line, ProxyTarget};
pub use secret::{check_token_shape, Secret};
pub use settings::{
    BatchSettings, FeedSettings, McasSettings, MemorySettings, MetricsSettings, PathSettings,
    Settings, SpoolSettings, SyncSettings, UploadSettings, ZiaSettings,
};
pub use size::{format_duration, format_size, parse_duration, parse_size, ByteSize, Limit};
pub use targets::{
    EntraApp, EntraSecret, McasCredential, McasTarget, OneApiSecret, ZiaLogin, ZiaTarget,
};
pub use values::{McasAuth, ZiaAuth};

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

impl crate::exit::ExitStatus for ConfigError {
    fn exit_code(&self) -> u8 {
        crate::exit::CONFIG
    }
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
    /// `NSS_AGENT__SECTION__KEY` environment overrides, reads the secrets from their files
    /// (or `$CREDENTIALS_DIRECTORY`), and checks every value.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(service_credentials);
        Settings::load_with_credentials(path, credentials.as_deref())
    }

    /// [`Settings::load`] with secrets not set otherwise read from `credentials`.
    fn load_with_credentials(
        path: &Path,
        credentials: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = load::read(path)?;
        settings.check_paths()?;
        let secrets = load::read_secrets(&mut settings, credentials)?;
        // A token has no white space; a file may carry some around it.
        if let Some(token) = &settings.mcas.token {
            settings.mcas.token = Some(Secret::new(token.expose().trim()));
        }
        settings.check(&secrets)?;
        Ok(settings)
    }

    /// What the administrator should know but that does not stop the agent (a secret file
    /// other users can read), one sentence each, naming the key or file.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// The spool directory inside the state directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.paths.state_dir.join("spool")
    }
}

/// Where systemd keeps the running service's credentials (`LoadCredential=`), readable
/// by root only.
const SERVICE_CREDENTIALS: &str = "/run/credentials/nss-agent.service";

/// For a command that is not the service itself (`sudo nss troubleshoot mcas`): the
/// running service's credentials directory, when this user can read it, so that the
/// command uses the secrets the daemon was given.
fn service_credentials() -> Option<PathBuf> {
    let dir = Path::new(SERVICE_CREDENTIALS);
    std::fs::read_dir(dir).ok().map(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests;
