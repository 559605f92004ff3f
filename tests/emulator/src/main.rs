//! `mcas-emulator`: runs the MCAS emulator as a process (for scripts, the demo and
//! benchmarks), or writes its certificates (`gen-certs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mcas_emulator::{AzuriteTarget, Emulator, EmulatorConfig, Provider, RepeatedDone};

/// An HTTPS emulator of the MCAS Cloud Discovery upload API and of the Azure/AWS blob
/// upload, with the Entra token endpoint (POST /{tenant}/oauth2/v2.0/token). Control API
/// (no auth) on the same port: GET /_emulator/stats, /_emulator/uploads, /_emulator/calls;
/// POST /_emulator/faults, /_emulator/banned, /_emulator/throttle,
/// /_emulator/token_roles, /_emulator/repeated_done; /_emulator/entra/...,
/// /_emulator/streams/... (see the README).
#[derive(Parser, Debug)]
#[command(
    name = "mcas-emulator",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write ca.pem, server.pem and server.key to a directory (kept if already there) and
    /// exit, e.g. so that Azurite can serve the same certificate.
    GenCerts {
        /// Directory to write to.
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The accepted API token.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the accepted API token (surrounding whitespace ignored).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Where uploaded blobs are kept.
    #[arg(long, default_value = "mcas-emulator/store")]
    store: PathBuf,
    /// Directory of ca.pem, server.pem, server.key (generated if missing).
    #[arg(long, default_value = "mcas-emulator/certs")]
    cert_dir: PathBuf,
    /// Cloud of the upload URLs: azure or aws.
    #[arg(long, default_value = "azure")]
    provider: Provider,
    /// API calls allowed per minute (MCAS allows 30); unlimited if absent.
    #[arg(long)]
    throttle: Option<u32>,
    /// Send the blob step to Azurite at this blob endpoint, e.g.
    /// https://127.0.0.1:10000/devstoreaccount1
    #[arg(long)]
    azurite: Option<String>,
    /// Azurite account name.
    #[arg(long, default_value = AzuriteTarget::DEV_ACCOUNT, requires = "azurite")]
    azurite_account: String,
    /// Azurite account key (base64); default: the well-known development key.
    #[arg(long, requires = "azurite")]
    azurite_key: Option<String>,
    /// Azurite container for the uploads (created if missing).
    #[arg(long, default_value = "mcas-uploads", requires = "azurite")]
    azurite_container: String,
    /// File with the block-script lines (one domain a line, e.g. .reddit.com).
    #[arg(long)]
    banned_file: Option<PathBuf>,
    /// How long upload URLs stay valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    sas_ttl_secs: u64,
    /// What a repeated done_upload does: ok (200, not ingested again), refuse (400),
    /// ingest-twice.
    #[arg(long, default_value = "ok")]
    repeated_done: RepeatedDone,
    /// Lifetime of the Entra access tokens, in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_secs: u64,
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
    match cli.command {
        Some(Command::GenCerts { dir, force }) => {
            if force {
                for f in [
                    mcas_emulator::CA_FILE,
                    mcas_emulator::CERT_FILE,
                    mcas_emulator::KEY_FILE,
                ] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
            mcas_emulator::ensure_certs(&dir)?;
            Ok(())
        }
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(cli.run)),
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let token = match (args.token, args.token_file) {
        (Some(t), None) => t,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        _ => bail!("give the accepted API token with --token or --token-file"),
    };
    if token.is_empty() {
        bail!("the API token is empty");
    }
    // Absolute, so that the printed CA path works from any directory.
    let store = std::path::absolute(&args.store)?;
    let cert_dir = std::path::absolute(&args.cert_dir)?;
    let mut cfg = EmulatorConfig::new(&token, &store, &cert_dir);
    cfg.bind = args.listen;
    cfg.provider = args.provider;
    cfg.throttle_per_minute = args.throttle;
    cfg.sas_ttl = Duration::from_secs(args.sas_ttl_secs);
    cfg.repeated_done = args.repeated_done;
    cfg.entra.token_lifetime = Duration::from_secs(args.token_lifetime_secs);
    if let Some(endpoint) = args.azurite {
        cfg.azurite = Some(AzuriteTarget {
            endpoint,
            account: args.azurite_account,
            key: args
                .azurite_key
                .unwrap_or_else(|| AzuriteTarget::DEV_KEY.to_string()),
            container: args.azurite_container,
        });
    }
    if let Some(f) = args.banned_file {
        cfg.banned = std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
    }
    let emulator = Emulator::start(cfg).await?;
    println!(
        "mcas-emulator listening on {} (ca: {})",
        emulator.base_url(),
        emulator.ca_pem_path().display()
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emulator.shutdown();
    let s = emulator.stats();
    eprintln!(
        "mcas-emulator: {} uploads, {} records, {} bytes, {} API calls ({} throttled, {} repeated done_upload)",
        s.uploads, s.records, s.bytes, s.api_calls, s.throttled, s.repeated_done
    );
    Ok(())
}
