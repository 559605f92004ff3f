//! The command line: one binary, `nss`, with one file a command.

mod configure;
mod configure_zia;
mod dump_config;
mod prompt;
mod reload;
mod service;
mod status;
mod sync_now;
mod troubleshoot;
mod troubleshoot_blob;
mod troubleshoot_zia;
mod url_categories;

use std::error::Error;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{McasAuth, Settings, ZiaAuth};

/// The exit codes administrators' scripts rely on.
pub use crate::exit;

/// nss-agent: uploads the Zscaler NSS MCAS web-log feed to Microsoft Defender for Cloud Apps.
#[derive(Debug, Parser)]
#[command(name = "nss", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file [default: $NSS_AGENT_CONFIG, else /etc/nss-agent/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `nss` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enter the MCAS credentials (API token or Entra application) and domain (asks, or takes them from flags)
    ConfigureMcas(ConfigureMcasArgs),
    /// Forget the MCAS credentials and domain
    DisableMcas,
    /// Enter how the agent reaches the tenant's ZIA API, where the category is pushed (asks, or takes flags)
    ConfigureZia(ConfigureZiaArgs),
    /// Forget the ZIA API: the category stays on the appliance only
    DisableZia,
    /// Run the daemon in the foreground (what systemd starts)
    Run,
    /// Start the daemon
    Start,
    /// Stop the daemon
    Stop,
    /// Restart the daemon
    Restart,
    /// Reload the configuration file in the running daemon, and wait until it runs with it (or refused it)
    Reload,
    /// Show what the daemon is doing
    Status {
        /// One JSON object, for monitoring
        #[arg(long)]
        json: bool,
    },
    /// Check the MCAS token and the unsanctioned-apps list, explained
    Troubleshoot {
        #[command(subcommand)]
        what: TroubleshootTarget,
    },
    /// Run one unsanctioned-URL sync, print it, and exit (a running daemon does it)
    SyncNow {
        /// Apply an answer that empties the category or cuts it by more than 90%
        #[arg(long)]
        accept_empty: bool,
    },
    /// List the custom URL categories with their URL counts
    UrlCategories {
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration, token masked
    DumpConfig,
}

/// `nss troubleshoot` subjects.
#[derive(Debug, Subcommand)]
pub enum TroubleshootTarget {
    /// The token and unsanctioned-list check
    Mcas,
    /// The ZIA login, quota and category check
    Zia,
}

/// `nss configure-mcas` flags, for cloud-init and scripts.
#[derive(Debug, clap::Args)]
pub struct ConfigureMcasArgs {
    /// How the agent authenticates: a legacy API token, or an Entra application
    #[arg(long, value_name = "KIND")]
    pub auth: Option<McasAuth>,
    /// Read the token from this file
    #[arg(long, value_name = "F", conflicts_with = "token_stdin")]
    pub token_file: Option<PathBuf>,
    /// Read the token from standard input
    #[arg(long)]
    pub token_stdin: bool,
    /// Entra: the directory (tenant) id or domain, e.g. contoso.onmicrosoft.com
    #[arg(long, value_name = "T")]
    pub tenant_id: Option<String>,
    /// Entra: the application (client) id
    #[arg(long, value_name = "C")]
    pub client_id: Option<String>,
    /// Entra: read the client secret from this file
    #[arg(long, value_name = "F", conflicts_with_all = ["client_secret_stdin", "certificate_file"])]
    pub client_secret_file: Option<PathBuf>,
    /// Entra: read the client secret from standard input
    #[arg(long, conflicts_with_all = ["certificate_file", "token_stdin"])]
    pub client_secret_stdin: bool,
    /// Entra: a PEM file with the application's certificate and private key, used where it is
    #[arg(long, value_name = "F")]
    pub certificate_file: Option<PathBuf>,
    /// The MCAS domain, e.g. mycompany.us3.portal.cloudappsecurity.com
    #[arg(long, value_name = "D")]
    pub domain: Option<String>,
    /// The data source's name in the MCAS portal
    #[arg(long, value_name = "NAME")]
    pub data_source: Option<String>,
    /// Skip checking the token against MCAS
    #[arg(long)]
    pub no_verify: bool,
}

/// `nss configure-zia` flags, for cloud-init and scripts.
#[derive(Debug, Default, PartialEq, clap::Args)]
pub struct ConfigureZiaArgs {
    /// How the agent logs in: api_key (API admin and key) or oneapi (ZIdentity API client)
    #[arg(long, value_name = "KIND")]
    pub auth: Option<ZiaAuth>,
    /// The ZIA API: a cloud name (zscaler, zscalertwo, ...) or a URL like https://zsapi.zscalertwo.net
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// api_key: the API admin's login name
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// api_key: read the admin's password from this file
    #[arg(long, value_name = "F", conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// api_key: read the admin's password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// api_key: read the 12-character cloud service API key from this file
    #[arg(long, value_name = "F")]
    pub api_key_file: Option<PathBuf>,
    /// oneapi: the ZIdentity token endpoint, https://<vanity>.zslogin.net/oauth2/v1/token
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// oneapi: the API client's id
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// oneapi: read the client secret from this file
    #[arg(long, value_name = "F", conflicts_with_all = ["client_secret_stdin", "private_key_file"])]
    pub client_secret_file: Option<PathBuf>,
    /// oneapi: read the client secret from standard input
    #[arg(long, conflicts_with_all = ["private_key_file", "password_stdin"])]
    pub client_secret_stdin: bool,
    /// oneapi: a PEM RSA private key that signs the client assertion, used where it is
    #[arg(long, value_name = "F")]
    pub private_key_file: Option<PathBuf>,
    /// Skip the login and quota check
    #[arg(long)]
    pub no_verify: bool,
}

impl ConfigureZiaArgs {
    /// Whether the command line gives no value (at most `--no-verify`): configure-zia then
    /// asks for each. Any flag added to these arguments counts, without a list to keep.
    pub fn gives_no_value(&self) -> bool {
        *self
            == ConfigureZiaArgs {
                no_verify: self.no_verify,
                ..ConfigureZiaArgs::default()
            }
    }
}

/// A remote service (MCAS) refused or could not be reached: exit code 69.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

impl exit::ExitStatus for Unavailable {
    fn exit_code(&self) -> u8 {
        exit::UNAVAILABLE
    }
}

/// What `nss reload` needs to find the daemon. A new file that does not load is refused
/// here with its reason (exit 78): the daemon would refuse it the same way and run on.
fn reload_settings(path: &std::path::Path) -> anyhow::Result<Settings> {
    Settings::load(path).map_err(|error| {
        ConfigRefused(format!(
            "{} was not reloaded: configuration error: {error}; the daemon runs on with the previous configuration",
            path.display()
        ))
        .into()
    })
}

/// The daemon refused its configuration, as it or systemd reported it: exit code 78.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigRefused(pub String);

impl exit::ExitStatus for ConfigRefused {
    fn exit_code(&self) -> u8 {
        exit::CONFIG
    }
}

/// The exit code of a command that failed with `error`: the one the first cause of its
/// chain decides, else [`exit::FAILURE`].
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(exit_code_decided)
        .unwrap_or(exit::FAILURE)
}

/// The code `cause` decides, if it is of a kind that decides one.
fn exit_code_decided(cause: &(dyn Error + 'static)) -> Option<u8> {
    /// Every kind of error that decides an exit code.
    const KINDS: &[fn(&(dyn Error + 'static)) -> Option<u8>] = &[
        of::<crate::config::ConfigError>,
        of::<ConfigRefused>,
        of::<crate::zia::ZiaError>,
        of::<crate::mcas::ApiError>,
        of::<Unavailable>,
    ];
    KINDS.iter().find_map(|kind| kind(cause))
}

fn of<E: exit::ExitStatus>(cause: &(dyn Error + 'static)) -> Option<u8> {
    cause.downcast_ref::<E>().map(E::exit_code)
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let path = Settings::resolve_path(cli.config.as_deref());
    match cli.command {
        Command::Run => {
            let settings = Settings::load(&path)?;
            // `sudo nss run`: the daemon's files stay its user's.
            crate::privilege::act_as_state_owner(&settings.paths.state_dir)?;
            crate::logging::init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::daemon::run(settings))
        }
        Command::DumpConfig => dump_config::run(&Settings::load(&path)?),
        Command::ConfigureMcas(args) => configure::configure(&path, &args),
        Command::DisableMcas => configure::disable(&path),
        Command::ConfigureZia(args) => configure_zia::configure(&path, &args),
        Command::DisableZia => configure_zia::disable(&path),
        Command::Start => service::run(&Settings::load(&path)?, service::Action::Start),
        Command::Stop => service::run(&Settings::load(&path)?, service::Action::Stop),
        Command::Restart => service::run(&Settings::load(&path)?, service::Action::Restart),
        Command::Reload => reload::run(&reload_settings(&path)?),
        Command::Status { json } => status::run(&Settings::load(&path)?, json),
        Command::Troubleshoot {
            what: TroubleshootTarget::Mcas,
        } => troubleshoot::run(&Settings::load(&path)?),
        Command::Troubleshoot {
            what: TroubleshootTarget::Zia,
        } => troubleshoot_zia::run(&Settings::load(&path)?),
        Command::SyncNow { accept_empty } => sync_now::run(&Settings::load(&path)?, accept_empty),
        Command::UrlCategories { json } => url_categories::run(&Settings::load(&path)?, json),
    }
}

#[cfg(test)]
mod exit_code_tests {
    use super::*;
    use crate::exit::{CONFIG, FAILURE, UNAVAILABLE};
    use anyhow::Context;

    #[test]
    fn each_kind_decides_its_code_wherever_it_is_in_the_chain() {
        let config: anyhow::Result<()> =
            Err(crate::config::ConfigError::new("mcas.domain", "missing").into());
        assert_eq!(
            exit_code_for(&config.context("loading").unwrap_err()),
            CONFIG
        );
        let refused = anyhow::Error::new(ConfigRefused("refused".into()));
        assert_eq!(exit_code_for(&refused.context("nss reload")), CONFIG);
        let unavailable = anyhow::Error::new(Unavailable("MCAS refused".into()));
        assert_eq!(exit_code_for(&unavailable), UNAVAILABLE);
        let setup = anyhow::Error::new(crate::zia::ZiaError::Setup("no CA".into()));
        assert_eq!(exit_code_for(&setup), CONFIG);
        let read_only = crate::zia::ZiaError::ReadOnly {
            endpoint: "/urlCategories".into(),
        };
        assert_eq!(exit_code_for(&anyhow::Error::new(read_only)), UNAVAILABLE);
        assert_eq!(exit_code_for(&anyhow::anyhow!("anything else")), FAILURE);
    }
}
