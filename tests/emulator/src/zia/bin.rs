//! `zia-emulator`: runs the ZIA emulator as a process, for scripts and demos. The control
//! API (no auth) is on the same port under `/_zia/` (see the library's `zia` module).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use mcas_emulator::zia::{ZiaConfig, ZiaEmulator};

/// An HTTPS emulator of the ZIA Cloud Service API (URL categories, activation, both
/// logins). Credentials default to the library's DEFAULT_* test values.
#[derive(Parser, Debug)]
#[command(name = "zia-emulator", version)]
struct Cli {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// Directory of ca.pem, server.pem, server.key (generated if missing).
    #[arg(long, default_value = "zia-emulator/certs")]
    cert_dir: PathBuf,
    /// The API admin's login name.
    #[arg(long)]
    username: Option<String>,
    /// File holding the admin's password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// File holding the 12-character API key.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// The OneAPI client id.
    #[arg(long)]
    client_id: Option<String>,
    /// File holding the OneAPI client secret.
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// PEM public key that client assertions are checked with.
    #[arg(long)]
    client_public_key: Option<PathBuf>,
    /// Life of an access token, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
    /// Idle time after which a session ends, in seconds.
    #[arg(long, default_value_t = 300)]
    session_idle_secs: u64,
    /// Custom URLs the tenant may hold.
    #[arg(long, default_value_t = 25_000)]
    quota: u64,
    /// Custom categories the tenant may have.
    #[arg(long, default_value_t = 64)]
    max_categories: usize,
    /// Chance that a write is answered 409 EDIT_LOCK_NOT_AVAILABLE.
    #[arg(long, default_value_t = 0.0)]
    edit_lock_probability: f64,
    /// Do not enforce the rate limits.
    #[arg(long)]
    no_rate_limits: bool,
}

fn read(path: &PathBuf) -> Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut cfg = ZiaConfig::new(&std::path::absolute(&cli.cert_dir)?);
    cfg.bind = cli.listen;
    if let Some(username) = cli.username {
        cfg.username = username;
    }
    if let Some(f) = &cli.password_file {
        cfg.password = read(f)?;
    }
    if let Some(f) = &cli.api_key_file {
        cfg.api_key = read(f)?;
    }
    if let Some(id) = cli.client_id {
        cfg.client_id = id;
    }
    if let Some(f) = &cli.client_secret_file {
        cfg.client_secret = Some(read(f)?);
    }
    if let Some(f) = &cli.client_public_key {
        cfg.client_public_key_pem = Some(std::fs::read_to_string(f)?);
    }
    cfg.token_lifetime = Duration::from_secs(cli.token_lifetime_secs);
    cfg.session_idle = Duration::from_secs(cli.session_idle_secs);
    cfg.quota = cli.quota;
    cfg.max_custom_categories = cli.max_categories;
    cfg.edit_lock_probability = cli.edit_lock_probability;
    cfg.rate_limits = !cli.no_rate_limits;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let zia = ZiaEmulator::start(cfg).await?;
            println!(
                "zia-emulator listening on {} (token url {}, ca: {})",
                zia.base_url(),
                zia.token_url(),
                zia.ca_pem_path().display()
            );
            use std::io::Write as _;
            std::io::stdout().flush()?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            zia.shutdown();
            let s = zia.stats();
            eprintln!(
                "zia-emulator: {} API calls, {} writes, {} activations, {} throttled",
                s.api_calls, s.writes, s.activations, s.throttled
            );
            Ok(())
        })
}
