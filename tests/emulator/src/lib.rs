//! An HTTPS emulator of Microsoft Defender for Cloud Apps (MCAS): the Cloud Discovery
//! upload API (`upload_url`, `done_upload`), the block-script endpoint, the data sources
//! list, the Azure (or AWS) blob store the upload URL points at, and the Entra ID token
//! endpoint for application credentials. Azure's blob step can also be sent to
//! Azurite, Microsoft's own storage emulator.
//!
//! It validates what the real services validate (auth header, parameters, SAS, block
//! ids, block lists, an upload URL it issued and whose blob is committed) so that tests
//! catch client bugs, and it can inject faults (statuses, dropped connections, delays)
//! and MCAS's throttle (30 calls a minute).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mcas_emulator::{Emulator, EmulatorConfig};
//! let dir = std::env::temp_dir().join("emu");
//! let emu = Emulator::start(EmulatorConfig::new("t0ken", &dir.join("store"), &dir.join("certs"))).await?;
//! println!("mcas.domain = {}, mcas.ca_file = {}", emu.domain(), emu.ca_pem_path().display());
//! emu.wait_for_records(100, std::time::Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

mod auth;
mod azurite;
mod blobstore;
mod blocklist;
mod certs;
pub mod connect_proxy;
mod control;
mod done_upload;
pub mod entra;
pub mod log_lines;
mod records;
mod sas;
mod server;
pub mod streams;
mod throttle;
mod tls_server;
pub mod zia;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use blocklist::block_list_xml;
pub use certs::{client_trusting, ensure_certs, CA_FILE, CERT_FILE, KEY_FILE};
pub use done_upload::RepeatedDone;
pub use entra::{EntraApp, EntraConfig, Roles};
pub use records::gzip_lines;
pub use streams::{DataSource, Stream};

/// Which cloud the upload URL points at (the `provider` of the upload_url answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Azure Blob Storage: Put Blob, or Put Block + Put Block List.
    #[default]
    Azure,
    /// Amazon S3: one plain PUT to a pre-signed URL.
    Aws,
}

impl Provider {
    /// `"azure"` or `"aws"`, as MCAS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Azure => "azure",
            Provider::Aws => "aws",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "azure" => Ok(Provider::Azure),
            "aws" => Ok(Provider::Aws),
            _ => Err(format!("unknown provider {s:?} (azure or aws)")),
        }
    }
}

/// Where the blob step goes when Azurite stands in for Azure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzuriteTarget {
    /// Blob service endpoint with the account in the path (path-style), e.g.
    /// `https://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    /// Storage account name.
    pub account: String,
    /// Base64 account key.
    pub key: String,
    /// Container the upload blobs go to (created at start if missing).
    pub container: String,
}

impl AzuriteTarget {
    /// Azurite's well-known development account.
    pub const DEV_ACCOUNT: &'static str = "devstoreaccount1";
    /// The key of Azurite's well-known development account (public, documented by
    /// Microsoft; it only opens local emulators).
    pub const DEV_KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// The development account at `endpoint`, container `container`.
    pub fn dev(endpoint: &str, container: &str) -> AzuriteTarget {
        AzuriteTarget {
            endpoint: endpoint.to_string(),
            account: Self::DEV_ACCOUNT.to_string(),
            key: Self::DEV_KEY.to_string(),
            container: container.to_string(),
        }
    }
}

/// How to run an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free one. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The accepted API token (`Authorization: Token <token>`; `Bearer <token>` too).
    pub token: String,
    /// The legacy token's permissions. Default both.
    pub token_roles: Roles,
    /// The Entra directory: tenant, applications, token lifetime. Tokens it issues are
    /// accepted as `Authorization: Bearer <token>` until they expire.
    pub entra: EntraConfig,
    /// The tenant's data sources. Default one, `NSS` (log type 170).
    pub data_sources: Vec<DataSource>,
    /// The log format names the tenant takes as upload_url's `source`. Default all of
    /// [`streams::LOG_TYPES`]; a narrower list plays a tenant that does not know a name.
    pub log_formats: Vec<String>,
    /// What a done_upload for an upload URL already ingested does. Default
    /// [`RepeatedDone::Ok`].
    pub repeated_done: RepeatedDone,
    /// Cloud of the upload URLs. Default Azure.
    pub provider: Provider,
    /// Where blobs, blocks and finalized uploads are written.
    pub store_dir: PathBuf,
    /// Holds `ca.pem`, `server.pem`, `server.key`: loaded if all present, else generated.
    pub cert_dir: PathBuf,
    /// MCAS's throttle: at most this many API calls (upload_url, done_upload, block
    /// scripts) in any 60 s, 429 with `Retry-After` beyond. Default none.
    pub throttle_per_minute: Option<u32>,
    /// Send the blob step to Azurite instead of the emulator's own blob store.
    pub azurite: Option<AzuriteTarget>,
    /// Lines of the block-script answer (`type=banned`), e.g. `.reddit.com`.
    pub banned: Vec<String>,
    /// How long an upload URL's signature stays valid. Default one hour.
    pub sas_ttl: Duration,
    /// Decompress each finalized upload to count its records (default). Benchmarks turn
    /// it off so that the emulator does not compete for the CPU they measure: uploads then
    /// show 0 records, and [`Upload::records_decompressed`] counts them afterwards.
    pub count_records: bool,
}

impl EmulatorConfig {
    /// A configuration accepting `token`, storing under `store_dir`, with certificates in
    /// `cert_dir`, and defaults for the rest.
    pub fn new(token: &str, store_dir: &Path, cert_dir: &Path) -> EmulatorConfig {
        EmulatorConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: token.to_string(),
            token_roles: Roles::ALL,
            entra: EntraConfig::default(),
            data_sources: vec![DataSource::nss()],
            log_formats: streams::LOG_TYPES
                .iter()
                .map(|(name, _)| name.to_string())
                .collect(),
            repeated_done: RepeatedDone::Ok,
            provider: Provider::Azure,
            store_dir: store_dir.to_path_buf(),
            cert_dir: cert_dir.to_path_buf(),
            throttle_per_minute: None,
            azurite: None,
            banned: Vec::new(),
            sas_ttl: Duration::from_secs(3600),
            count_records: true,
        }
    }
}

/// The emulated endpoints, for faults and for telling calls apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /api/v1/discovery/upload_url/`
    UploadUrl,
    /// Any request to the emulator's own blob store (`/blob/...`).
    Blob,
    /// `POST /api/v1/discovery/done_upload/`
    DoneUpload,
    /// `GET /api/discovery_block_scripts/`
    BlockScript,
    /// `GET /api/discovery/streams/` (the data sources)
    Streams,
    /// `POST /{tenant}/oauth2/v2.0/token` (Entra ID, not an MCAS API call)
    Token,
}

impl Endpoint {
    /// The name used by the control API: `upload_url`, `blob`, `done_upload`,
    /// `block_script`, `streams`, `token`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::UploadUrl => "upload_url",
            Endpoint::Blob => "blob",
            Endpoint::DoneUpload => "done_upload",
            Endpoint::BlockScript => "block_script",
            Endpoint::Streams => "streams",
            Endpoint::Token => "token",
        }
    }

    /// Parses a control-API name (`block_scripts` is accepted too).
    pub fn from_name(name: &str) -> Option<Endpoint> {
        match name {
            "upload_url" => Some(Endpoint::UploadUrl),
            "blob" => Some(Endpoint::Blob),
            "done_upload" => Some(Endpoint::DoneUpload),
            "block_script" | "block_scripts" => Some(Endpoint::BlockScript),
            "streams" => Some(Endpoint::Streams),
            "token" => Some(Endpoint::Token),
            _ => None,
        }
    }

    /// Whether calls to it are MCAS API calls (authenticated, throttled).
    pub fn is_api(self) -> bool {
        !matches!(self, Endpoint::Blob | Endpoint::Token)
    }
}

/// Something to do to a request instead of (or before) answering it normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (with `Retry-After` if given, and this body) without
    /// processing the request.
    Status {
        /// HTTP status code.
        code: u16,
        /// Value of a `Retry-After` header.
        retry_after: Option<String>,
        /// Response body (sent as JSON if it looks like JSON, else as text).
        body: String,
    },
    /// Close the connection without an answer, once the request head is read.
    Drop,
    /// Receive the whole request, wait this long, then process and answer it normally. The
    /// request takes effect even if the client gave up meanwhile.
    Delay(Duration),
}

impl Fault {
    /// Answer `code` with an empty body and no `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
            body: String::new(),
        }
    }
}

/// One request the emulator received (control API requests excepted).
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// Which endpoint it addressed; `None` for unknown paths (answered 404).
    pub endpoint: Option<Endpoint>,
    /// HTTP method.
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub path: String,
    /// Query string as sent (without `?`), empty if none.
    pub query: String,
    /// Request headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body read.
    pub body_len: u64,
    /// Status answered; 0 for a dropped connection, or while still being processed.
    pub status: u16,
    /// When the request head arrived.
    pub at: SystemTime,
}

impl Call {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An upload that done_upload accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    /// `filename` given to upload_url.
    pub filename: String,
    /// `source` (log format) given to upload_url.
    pub source: String,
    /// `inputStreamName` given to done_upload (the data source).
    pub data_source: String,
    /// The upload URL issued by upload_url and finalized.
    pub upload_url: String,
    /// Whether done_upload carried `uploadAsSnapshot` (whatever its value): a one-off
    /// snapshot report, not data of the data source.
    pub as_snapshot: bool,
    /// The blob's bytes as finalized, on disk.
    pub path: PathBuf,
    /// Size of the blob.
    pub bytes: u64,
    /// Non-empty lines after decompression, whatever MCAS made of them.
    pub records: u64,
    /// Lines the parser `source` names could not read: MCAS's governance log reports the
    /// file with "The log format doesn't match" (the API took it all the same).
    pub unparsed: u64,
    /// Lines read whose event (the time of their syslog-style prefix) is older than 90
    /// days at done_upload: MCAS ignores them.
    pub ignored_old: u64,
    /// Committed blocks; 0 when the blob was written whole (Put Blob, or S3 PUT).
    pub block_count: u32,
    /// Why decompression stopped early (corrupt or truncated gzip), if it did.
    pub decode_error: Option<String>,
}

impl Upload {
    /// The blob's bytes.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    /// What MCAS made of its lines.
    pub fn line_counts(&self) -> log_lines::LineCounts {
        log_lines::LineCounts {
            lines: self.records,
            unparsed: self.unparsed,
            ignored_old: self.ignored_old,
        }
    }

    /// The governance log's word on the file: "The log format doesn't match" when a line
    /// could not be read, else "Completed".
    pub fn governance_status(&self) -> &'static str {
        if self.unparsed > 0 {
            "The log format doesn't match"
        } else {
            "Completed"
        }
    }

    /// The records: gunzipped (several gzip members are fine; plain text is read as is),
    /// split on `\n`, empty lines skipped.
    pub fn records_decompressed(&self) -> std::io::Result<Vec<Vec<u8>>> {
        records::read_records(&self.path)
    }
}

/// Counters of the control API's `/_emulator/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Finalized uploads.
    pub uploads: u64,
    /// Records in finalized uploads (lines, whatever MCAS made of them).
    pub records: u64,
    /// Lines of finalized uploads their parser could not read ([`Upload::unparsed`]).
    pub unparsed_lines: u64,
    /// Events of finalized uploads older than 90 days, ignored ([`Upload::ignored_old`]).
    pub ignored_old_events: u64,
    /// Bytes of finalized uploads.
    pub bytes: u64,
    /// API calls received (upload_url, done_upload, block scripts, streams), whatever
    /// the answer.
    pub api_calls: u64,
    /// API calls answered 429 by the throttle.
    pub throttled: u64,
    /// done_upload calls for an upload URL already finalized (answered as
    /// [`RepeatedDone`] says).
    pub repeated_done: u64,
    /// Uploads finalized with `uploadAsSnapshot`: snapshot reports, whose records are in
    /// none of the counts above.
    pub snapshot_reports: u64,
}

/// A running emulator. Cheap to clone: clones share the same server and state.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<server::Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Loads or generates the certificates, binds, (with Azurite) creates the container,
    /// and starts serving in the background of the current tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> anyhow::Result<Emulator> {
        let inner = server::start(cfg).await?;
        Ok(Emulator { inner })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `127.0.0.1:PORT`: the MCAS domain a client configures (HTTPS implied).
    pub fn domain(&self) -> String {
        self.inner.host.clone()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.inner.host)
    }

    /// The CA certificate clients must trust: `cert_dir/ca.pem`.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.inner.cert_dir.join(CA_FILE)
    }

    /// Queues `fault` for the next `times` requests to `endpoint` (after those already
    /// queued).
    pub fn push_fault(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.inner.push_fault(endpoint, fault, times);
    }

    /// Answers every blob request for a blob whose name (the upload_url `filename`)
    /// contains `text` with `fault` (when no queued fault is due), until
    /// [`Emulator::clear_faults`]: one file the storage always fails.
    pub fn fail_file(&self, text: &str, fault: Fault) {
        self.inner
            .state()
            .file_faults
            .push((text.to_string(), fault));
    }

    /// Drops the faults still queued, and those of [`Emulator::fail_file`].
    pub fn clear_faults(&self) {
        let mut state = self.inner.state();
        state.faults.clear();
        state.file_faults.clear();
    }

    /// Every request received, in order of arrival (control API requests excepted).
    pub fn calls(&self) -> Vec<Call> {
        self.inner.state().calls.clone()
    }

    /// The calls to `endpoint`.
    pub fn calls_to(&self, endpoint: Endpoint) -> Vec<Call> {
        self.inner
            .state()
            .calls
            .iter()
            .filter(|c| c.endpoint == Some(endpoint))
            .cloned()
            .collect()
    }

    /// Finalized uploads, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.state().uploads.clone()
    }

    /// What MCAS made of the lines uploaded into the data source `data_source` (snapshot
    /// reports left out): lines, unparsed, ignored as older than 90 days. With
    /// [`EmulatorConfig::count_records`] off, nothing is read: all zero.
    pub fn line_counts(&self, data_source: &str) -> log_lines::LineCounts {
        let mut counts = log_lines::LineCounts::default();
        for upload in self.inner.state().uploads.iter() {
            if upload.data_source == data_source {
                counts.merge(&upload.line_counts());
            }
        }
        counts
    }

    /// Uploads finalized with `uploadAsSnapshot`: snapshot reports, not in
    /// [`Emulator::uploads`].
    pub fn snapshots(&self) -> Vec<Upload> {
        self.inner.state().snapshots.clone()
    }

    /// done_upload calls that repeated an already finalized upload URL.
    pub fn repeated_done(&self) -> u64 {
        self.inner.state().stats.repeated_done
    }

    /// The counters of `/_emulator/stats`.
    pub fn stats(&self) -> Stats {
        self.inner.state().stats
    }

    /// Replaces the lines of the block-script answer.
    pub fn set_banned(&self, lines: Vec<String>) {
        self.inner.state().banned = lines;
    }

    /// Makes upload_url hand out `http://` URLs (`true`), as a misbehaving service would,
    /// or `https://` ones again.
    pub fn set_insecure_urls(&self, insecure: bool) {
        self.inner.state().insecure_urls = insecure;
    }

    /// Makes upload_url hand out URLs naming `host` (`name[:port]`) instead of the blob
    /// store's (`Some`), as a tenant whose blob host the firewall blocks looks to the
    /// appliance, or the real one again (`None`).
    pub fn set_blob_host(&self, host: Option<&str>) {
        self.inner.state().blob_host = host.map(str::to_string);
    }

    /// Changes the throttle (`None`: unlimited). Calls already made stay in the window.
    pub fn set_throttle(&self, per_minute: Option<u32>) {
        self.inner.state().throttle.set_limit(per_minute);
    }

    /// Waits until finalized uploads hold at least `n` records.
    pub async fn wait_for_records(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.inner.records_tx.subscribe();
        let reached = async { rx.wait_for(|&have| have >= n).await.map(|_| ()) };
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the emulator is gone"),
            Err(_) => {
                let have = *rx.borrow();
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {n} records: {have} in {} uploads",
                    self.inner.state().uploads.len()
                )
            }
        }
    }

    /// Stops accepting and closes open connections. Recorded state stays readable.
    pub fn shutdown(&self) {
        self.inner.shutdown_tx.send_replace(true);
    }
}
