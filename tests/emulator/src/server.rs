//! The HTTPS server: accept loop, routing, faults and the MCAS API. The blob store lives
//! in `blobstore.rs`, done_upload in `done_upload.rs`, the data sources in `streams.rs`,
//! the Entra token endpoint in `entra.rs`, the control API in `control.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::azurite::AzuriteClient;
use crate::entra::Directory;
use crate::streams::Streams;
use crate::throttle::Throttle;
use crate::{
    blobstore, certs, control, entra, sas, Call, EmulatorConfig, Endpoint, Fault, Provider,
    RepeatedDone, Roles, Stats, Upload,
};

/// Response body type of every handler.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// An early answer (an error) of a check, boxed to keep `Result`s small.
pub(crate) type Reply = Box<Response<Body>>;

/// The container of the emulator's own blob store, the first path segment after `/blob/`.
pub(crate) const CONTAINER: &str = "mcas-discovery";

/// The API's request bodies are small JSON or form documents.
pub(crate) const API_BODY_LIMIT: usize = 1 << 20;

/// Paths of the MCAS API.
const UPLOAD_URL_PATH: &str = "/api/v1/discovery/upload_url/";
const DONE_UPLOAD_PATH: &str = "/api/v1/discovery/done_upload/";
const BLOCK_SCRIPT_PATH: &str = "/api/discovery_block_scripts/";
const STREAMS_PATH: &str = "/api/discovery/streams/";

/// State shared by the handle and all connections.
pub(crate) struct Shared {
    pub addr: SocketAddr,
    /// `ip:port` as it appears in URLs.
    pub host: String,
    pub cert_dir: PathBuf,
    pub token: String,
    pub provider: Provider,
    pub dirs: Dirs,
    pub sas_ttl: Duration,
    pub count_records: bool,
    pub azurite: Option<AzuriteClient>,
    state: Mutex<State>,
    /// Total records in finalized uploads, for `wait_for_records`.
    pub records_tx: watch::Sender<u64>,
    pub shutdown_tx: watch::Sender<bool>,
    /// For unique temporary file names.
    seq: AtomicU64,
}

/// Subdirectories of the store.
pub(crate) struct Dirs {
    /// Committed blobs, one file per upload URL.
    pub blobs: PathBuf,
    /// Uncommitted blocks, one directory per blob.
    pub blocks: PathBuf,
    /// Request bodies being received.
    pub tmp: PathBuf,
    /// Finalized uploads (hard links to the blob as it was at done_upload).
    pub uploads: PathBuf,
}

impl Dirs {
    fn create(store: &Path) -> Result<Dirs> {
        let dirs = Dirs {
            blobs: store.join("blobs"),
            blocks: store.join("blocks"),
            tmp: store.join("tmp"),
            uploads: store.join("uploads"),
        };
        for d in [&dirs.blobs, &dirs.blocks, &dirs.tmp, &dirs.uploads] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(dirs)
    }
}

/// Everything recorded or configurable at run time.
pub(crate) struct State {
    pub calls: Vec<Call>,
    pub uploads: Vec<Upload>,
    /// Uploads finalized as snapshot reports.
    pub snapshots: Vec<Upload>,
    pub faults: HashMap<Endpoint, VecDeque<Fault>>,
    /// Faults for every blob request whose blob name contains the text, until cleared.
    pub file_faults: Vec<(String, Fault)>,
    /// upload_url hands out `http://` URLs (a misbehaving service).
    pub insecure_urls: bool,
    /// upload_url hands out URLs naming this `host[:port]` instead of the blob store's:
    /// a blob host the client cannot reach.
    pub blob_host: Option<String>,
    pub banned: Vec<String>,
    pub throttle: Throttle,
    pub stats: Stats,
    /// Upload URLs handed out, by blob name.
    pub issued: HashMap<String, Issued>,
    /// The own store's blobs, by blob name.
    pub blobs: HashMap<String, blobstore::BlobState>,
    /// Blob names already finalized (or being finalized) by done_upload.
    pub finalized: HashSet<String>,
    /// What a repeated done_upload does.
    pub repeated_done: RepeatedDone,
    /// The tenant's data sources.
    pub streams: Streams,
    /// The log format names upload_url's `source` may be.
    pub log_formats: Vec<String>,
    /// Permissions of the legacy API token.
    pub token_roles: Roles,
    /// The Entra directory: applications and the access tokens issued.
    pub entra: Directory,
}

/// An upload URL handed out by upload_url.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// Name of the blob (decoded last path segment of the URL).
    pub blob_name: String,
    /// Name of its file in the store (the blob name made safe for a file system).
    pub file_name: String,
    pub filename: String,
    pub source: String,
    pub url: String,
    /// The signed query parameters as issued; each must come back unchanged.
    pub params: Vec<(String, String)>,
    /// Name of the signature parameter among `params`.
    pub sig_param: &'static str,
    pub expiry: SystemTime,
}

impl Issued {
    pub(crate) fn sig(&self) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == self.sig_param)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// A handler's error that closes the connection without an answer (the Drop fault).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// Loads the certificates, binds, connects to Azurite if asked, and spawns the server.
pub(crate) async fn start(cfg: EmulatorConfig) -> Result<Arc<Shared>> {
    if cfg.azurite.is_some() && cfg.provider == Provider::Aws {
        bail!("Azurite emulates Azure: it cannot serve provider aws");
    }
    let dirs = Dirs::create(&cfg.store_dir)?;
    let entra = Directory::new(cfg.entra)?;
    let cert_dir = cfg.cert_dir.clone();
    tokio::task::spawn_blocking(move || certs::ensure_certs(&cert_dir)).await??;
    let tls = certs::server_config(&cfg.cert_dir)?;
    let listener = TcpListener::bind(cfg.bind)
        .await
        .with_context(|| format!("binding {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    // URLs must name an address a client can reach: never 0.0.0.0.
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let host = SocketAddr::new(ip, addr.port()).to_string();
    let azurite = match cfg.azurite {
        Some(target) => {
            let ca_path = cfg.cert_dir.join(certs::CA_FILE);
            let ca = std::fs::read(&ca_path)
                .with_context(|| format!("reading {}", ca_path.display()))?;
            Some(AzuriteClient::connect(target, &ca).await?)
        }
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        addr,
        host,
        cert_dir: cfg.cert_dir,
        token: cfg.token,
        provider: cfg.provider,
        dirs,
        sas_ttl: cfg.sas_ttl,
        count_records: cfg.count_records,
        azurite,
        state: Mutex::new(State {
            calls: Vec::new(),
            uploads: Vec::new(),
            snapshots: Vec::new(),
            faults: HashMap::new(),
            file_faults: Vec::new(),
            insecure_urls: false,
            blob_host: None,
            banned: cfg.banned,
            throttle: Throttle::new(cfg.throttle_per_minute),
            stats: Stats::default(),
            issued: HashMap::new(),
            blobs: HashMap::new(),
            finalized: HashSet::new(),
            repeated_done: cfg.repeated_done,
            streams: Streams::new(cfg.data_sources),
            log_formats: cfg.log_formats,
            token_roles: cfg.token_roles,
            entra,
        }),
        records_tx: watch::channel(0).0,
        shutdown_tx,
        seq: AtomicU64::new(0),
    });
    let served = shared.clone();
    tokio::spawn(crate::tls_server::accept_loop(
        listener,
        TlsAcceptor::from(tls),
        shutdown_rx,
        "MCAS",
        move |req| serve(served.clone(), req),
    ));
    Ok(shared)
}

/// Which endpoint a path addresses.
fn route(path: &str, own_blobs: bool) -> Option<Endpoint> {
    match path {
        UPLOAD_URL_PATH => Some(Endpoint::UploadUrl),
        DONE_UPLOAD_PATH => Some(Endpoint::DoneUpload),
        BLOCK_SCRIPT_PATH => Some(Endpoint::BlockScript),
        STREAMS_PATH => Some(Endpoint::Streams),
        p if entra::token_path_tenant(p).is_some() => Some(Endpoint::Token),
        p if own_blobs && p.starts_with("/blob/") => Some(Endpoint::Blob),
        _ => None,
    }
}

async fn serve(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Ok(control::control(&shared, req).await);
    }
    let endpoint = route(path, shared.azurite.is_none());
    let idx = shared.begin_call(endpoint, &req);
    let fault = endpoint
        .and_then(|e| shared.take_fault(e))
        .or_else(|| shared.file_fault(endpoint, req.uri().path()));
    let delay = match fault {
        Some(Fault::Drop) => {
            shared.end_call(idx, 0, 0);
            return Err(Dropped);
        }
        Some(Fault::Status {
            code,
            retry_after,
            body,
        }) => {
            let resp = fault_response(code, retry_after.as_deref(), body);
            shared.end_call(idx, resp.status().as_u16(), 0);
            return Ok(resp);
        }
        Some(Fault::Delay(d)) => Some(d),
        None => None,
    };
    // A task of its own, so that a request completes (and takes effect) even when the
    // client goes away and hyper drops this future.
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let shared = task_shared;
        let (resp, body_len) = match endpoint {
            None => (
                json_response(StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
                0,
            ),
            Some(Endpoint::Blob) => blobstore::handle(&shared, req, delay).await,
            Some(Endpoint::Token) => entra::handle(&shared, req, delay).await,
            Some(e) => api(&shared, e, req, delay).await,
        };
        shared.end_call(idx, resp.status().as_u16(), body_len);
        resp
    });
    match task.await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            warn!("request handler failed: {e}");
            shared.end_call(idx, 500, 0);
            Ok(text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
            ))
        }
    }
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent enough data for a test tool.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn push_fault(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        let mut st = self.state();
        let queue = st.faults.entry(endpoint).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// The standing fault of a blob request for a blob whose name it covers: a file the
    /// storage always fails (upload_url carries only a name, and never fails for a file).
    fn file_fault(&self, endpoint: Option<Endpoint>, path: &str) -> Option<Fault> {
        if endpoint != Some(Endpoint::Blob) {
            return None;
        }
        let filename = path;
        self.state()
            .file_faults
            .iter()
            .find(|(text, _)| filename.contains(text.as_str()))
            .map(|(_, fault)| fault.clone())
    }

    fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        self.state().faults.get_mut(&endpoint)?.pop_front()
    }

    fn begin_call(&self, endpoint: Option<Endpoint>, req: &Request<Incoming>) -> usize {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let call = Call {
            endpoint,
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            headers,
            body_len: 0,
            status: 0,
            at: SystemTime::now(),
        };
        let mut st = self.state();
        if endpoint.is_some_and(Endpoint::is_api) {
            st.stats.api_calls += 1;
        }
        st.calls.push(call);
        st.calls.len() - 1
    }

    fn end_call(&self, idx: usize, status: u16, body_len: u64) {
        if let Some(call) = self.state().calls.get_mut(idx) {
            call.status = status;
            call.body_len = body_len;
        }
    }

    /// Takes a slot of the throttle, or answers the 429.
    fn admit(&self) -> Result<(), Reply> {
        let mut st = self.state();
        match st.throttle.admit(Instant::now()) {
            Ok(()) => Ok(()),
            Err(secs) => {
                st.stats.throttled += 1;
                let mut resp = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"detail": format!("Request was throttled. Expected available in {secs} seconds.")}),
                );
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
                Err(Box::new(resp))
            }
        }
    }
}

/// An MCAS API call: read the (small) body, apply a delay fault, authenticate, throttle,
/// then the endpoint's own checks.
async fn api(
    shared: &Shared,
    endpoint: Endpoint,
    req: Request<Incoming>,
    delay: Option<Duration>,
) -> (Response<Body>, u64) {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, API_BODY_LIMIT).await {
        Ok(b) => b,
        Err(ReadError::TooLarge(n)) => {
            return (
                json_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large."),
                n,
            )
        }
        Err(ReadError::Body(e)) => {
            return (
                json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Error reading the request body: {e}"),
                ),
                0,
            )
        }
    };
    let body_len = body.len() as u64;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    // MCAS (a Django REST framework service) authenticates, then checks permissions,
    // then throttles, and only then looks at the method.
    if let Err(resp) = shared.authorize(&parts.headers, endpoint) {
        return (*resp, body_len);
    }
    if let Err(resp) = shared.admit() {
        return (*resp, body_len);
    }
    let query = parts.uri.query().unwrap_or("");
    let resp = match endpoint {
        Endpoint::UploadUrl if parts.method == Method::GET => shared.upload_url(query),
        Endpoint::DoneUpload if parts.method == Method::POST => {
            shared.done_upload(&parts.headers, &body).await
        }
        Endpoint::BlockScript if parts.method == Method::GET => shared.block_script(query),
        Endpoint::Streams if parts.method == Method::GET => shared.streams(),
        Endpoint::UploadUrl | Endpoint::BlockScript | Endpoint::Streams => {
            method_not_allowed(&parts.method, "GET")
        }
        Endpoint::DoneUpload => method_not_allowed(&parts.method, "POST"),
        Endpoint::Blob | Endpoint::Token => unreachable!("not MCAS API calls"),
    };
    (resp, body_len)
}

impl Shared {
    /// `GET upload_url/?filename=..&source=..`: hands out a signed blob URL.
    fn upload_url(&self, query: &str) -> Response<Body> {
        let params = parse_query(query);
        let filename = param(&params, "filename").unwrap_or("");
        let source = param(&params, "source").unwrap_or("");
        if filename.is_empty() || source.is_empty() {
            return json_error(
                StatusCode::BAD_REQUEST,
                "The filename and source query parameters are required.",
            );
        }
        let uid = random_hex(8);
        let blob_name = format!("{uid}-{filename}");
        let file_name = format!("{uid}-{}", safe_file_name(filename));
        let now = SystemTime::now();
        let expiry = now + self.sas_ttl;
        let (url, sig_param) = match &self.azurite {
            Some(az) => (az.blob_url(&blob_name, expiry), "sig"),
            None => self.own_blob_url(&blob_name, now, expiry),
        };
        let params = url::Url::parse(&url)
            .map(|u| {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let issued = Issued {
            blob_name: blob_name.clone(),
            file_name,
            filename: filename.to_string(),
            source: source.to_string(),
            url: url.clone(),
            params,
            sig_param,
            expiry,
        };
        let (insecure, blob_host) = {
            let mut st = self.state();
            st.issued.insert(blob_name, issued);
            (st.insecure_urls, st.blob_host.clone())
        };
        let url = match blob_host {
            Some(host) => with_host(&url, &host),
            None => url,
        };
        let url = if insecure {
            url.replacen("https://", "http://", 1)
        } else {
            url
        };
        let provider = if self.azurite.is_some() {
            Provider::Azure
        } else {
            self.provider
        };
        json_response(
            StatusCode::OK,
            json!({"url": url, "provider": provider.as_str()}),
        )
    }

    /// A URL of the own blob store, shaped like the cloud's pre-signed URLs.
    fn own_blob_url(
        &self,
        blob_name: &str,
        now: SystemTime,
        expiry: SystemTime,
    ) -> (String, &'static str) {
        let mut url = url::Url::parse(&format!("https://{}/", self.host)).expect("valid host");
        url.path_segments_mut()
            .expect("https URLs have a path")
            .clear()
            .push("blob")
            .push(CONTAINER)
            .push(blob_name);
        let sig_param = match self.provider {
            Provider::Azure => {
                url.query_pairs_mut()
                    .append_pair("sv", blobstore::OWN_SAS_VERSION)
                    .append_pair("se", &sas::iso8601(expiry))
                    .append_pair("sr", "b")
                    .append_pair("sp", "cw")
                    .append_pair("sig", &random_b64(32));
                "sig"
            }
            Provider::Aws => {
                let date = sas::amz_date(now);
                url.query_pairs_mut()
                    .append_pair("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
                    .append_pair(
                        "X-Amz-Credential",
                        &format!(
                            "AKIAMCASEMULATOR0000/{}/us-east-1/s3/aws4_request",
                            &date[..8]
                        ),
                    )
                    .append_pair("X-Amz-Date", &date)
                    .append_pair(
                        "X-Amz-Expires",
                        &expiry
                            .duration_since(now)
                            .unwrap_or_default()
                            .as_secs()
                            .to_string(),
                    )
                    .append_pair("X-Amz-SignedHeaders", "host")
                    .append_pair("X-Amz-Signature", &random_hex(32));
                "X-Amz-Signature"
            }
        };
        (url.to_string(), sig_param)
    }

    /// `GET discovery_block_scripts/?format=120&type=banned|allowed`: one line per
    /// domain, sent chunked like MCAS does.
    fn block_script(&self, query: &str) -> Response<Body> {
        let params = parse_query(query);
        match param(&params, "format") {
            Some("120") => {}
            Some(f) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unsupported format {f:?}: the Zscaler format is 120."),
                )
            }
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "The format query parameter is required.",
                )
            }
        }
        let lines = match param(&params, "type") {
            Some("banned") => self.state().banned.clone(),
            Some("allowed") => Vec::new(),
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "The type query parameter must be banned or allowed.",
                )
            }
        };
        // Lines gathered into frames of about 16 KiB, as a server's writes would be: one
        // frame a line trips HTTP/2 clients' flood protection on long lists.
        let mut chunks = vec![String::new()];
        for line in lines {
            if chunks.last().unwrap().len() >= 16 << 10 {
                chunks.push(String::new());
            }
            let chunk = chunks.last_mut().unwrap();
            chunk.push_str(&line);
            chunk.push('\n');
        }
        let frames = chunks
            .into_iter()
            .filter(|chunk| !chunk.is_empty())
            .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))));
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Query parameters, decoded.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of parameter `name`.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A file name made of `[A-Za-z0-9._-]` only (others become `_`), never `.` or `..`.
fn safe_file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    safe.trim_start_matches('.').to_string()
}

pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

fn random_b64(bytes: usize) -> String {
    use base64::Engine as _;
    let raw: Vec<u8> = (0..bytes).map(|_| fastrand::u8(..)).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Over the limit; carries the bytes read so far.
    TooLarge(u64),
    /// The connection failed mid-body.
    Body(hyper::Error),
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ReadError::TooLarge((out.len() + data.len()) as u64));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

pub(crate) fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn json_error(status: StatusCode, detail: &str) -> Response<Body> {
    json_response(status, json!({ "detail": detail }))
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Response<Body> {
    let mut resp = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method \"{method}\" not allowed."),
    );
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    resp
}

/// The answer of a `Fault::Status`.
fn fault_response(code: u16, retry_after: Option<&str>, body: String) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let is_json = body.trim_start().starts_with('{') || body.trim_start().starts_with('[');
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if is_json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        }),
    );
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// `url` with its authority replaced by `host` (`name[:port]`).
fn with_host(url: &str, host: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let path_at = rest.find('/').unwrap_or(rest.len());
            format!("{scheme}://{host}{}", &rest[path_at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        assert_eq!(safe_file_name("nss 2024:01/x.gz"), "nss_2024_01_x.gz");
        assert_eq!(safe_file_name("../.."), "_..");
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("/api/v1/discovery/upload_url/", true),
            Some(Endpoint::UploadUrl)
        );
        assert_eq!(route("/api/v1/discovery/upload_url", true), None);
        assert_eq!(route("/blob/c/x", true), Some(Endpoint::Blob));
        assert_eq!(route("/blob/c/x", false), None);
        assert_eq!(
            route("/api/discovery/streams/", true),
            Some(Endpoint::Streams)
        );
        assert_eq!(
            route("/contoso.onmicrosoft.com/oauth2/v2.0/token", true),
            Some(Endpoint::Token)
        );
    }
}
