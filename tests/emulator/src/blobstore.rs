//! The emulator's own blob store behind the upload URLs: Azure Put Blob, Put Block and
//! Put Block List, or a plain S3 PUT, with the checks those services make.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::blocklist::{parse_block_list, BlockRef};
use crate::sas;
use crate::server::{
    full, param, parse_query, random_hex, read_body, Body, Issued, ReadError, Shared, CONTAINER,
};
use crate::Provider;

/// The `sv` of the own store's SAS URLs (a version Azure serves).
pub(crate) const OWN_SAS_VERSION: &str = "2020-10-02";

/// Azure's limits: 50,000 blocks in a committed list, block ids of at most 64 bytes.
const MAX_COMMITTED_BLOCKS: usize = 50_000;
const MAX_BLOCK_ID_BYTES: usize = 64;
/// A Put Block List body of 50,000 ids stays well under this.
const BLOCK_LIST_BODY_LIMIT: usize = 8 << 20;

/// What the store holds for one blob name.
#[derive(Debug, Default)]
pub(crate) struct BlobState {
    /// Blocks put since the last commit, by block id.
    pub uncommitted: HashMap<String, BlockFile>,
    /// The committed blob, if any.
    pub committed: Option<Committed>,
}

/// An uncommitted block on disk.
#[derive(Debug)]
pub(crate) struct BlockFile {
    path: PathBuf,
    len: u64,
}

/// A committed blob: if committed by Put Block List, its blocks (else none).
#[derive(Debug)]
pub(crate) struct Committed {
    pub blocks: Vec<CommittedBlock>,
}

/// A committed block: where its bytes sit in the blob file.
#[derive(Debug, Clone)]
pub(crate) struct CommittedBlock {
    id: String,
    offset: u64,
    len: u64,
}

impl BlobState {
    /// The length of the ids already used in this blob (they must all be equal).
    fn id_len(&self) -> Option<usize> {
        self.uncommitted.keys().next().map(String::len).or_else(|| {
            self.committed
                .as_ref()
                .and_then(|c| c.blocks.first())
                .map(|b| b.id.len())
        })
    }

    /// Forgets the uncommitted blocks and deletes their files.
    fn discard_uncommitted(&mut self) {
        for (_, block) in self.uncommitted.drain() {
            let _ = std::fs::remove_file(&block.path);
        }
    }
}

/// Where a committed blob's bytes come from.
enum Source {
    /// A whole uncommitted block file.
    File(PathBuf),
    /// A slice of the current blob file (a block committed before).
    Range(PathBuf, u64, u64),
}

/// An error answer in the service's format (Azure or S3 XML).
struct ErrorReply {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        status,
        code,
        message: message.into(),
    }
}

impl ErrorReply {
    fn into_response(self, provider: Provider) -> Response<Body> {
        let request_id = request_id();
        let xml = match provider {
            Provider::Azure => format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}\nRequestId:{request_id}\nTime:{}</Message></Error>",
                self.code,
                xml_escape(&self.message),
                sas::iso8601(SystemTime::now()),
            ),
            Provider::Aws => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
                self.code,
                xml_escape(&self.message),
            ),
        };
        let mut resp = Response::new(full(xml));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        if provider == Provider::Azure {
            h.insert("x-ms-error-code", HeaderValue::from_static(self.code));
            h.insert("x-ms-request-id", header_value(&request_id));
            h.insert("x-ms-version", HeaderValue::from_static(OWN_SAS_VERSION));
        }
        resp
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn request_id() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Handles one request to `/blob/<container>/<name>`. Returns the answer and the body
/// bytes received.
pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    delay: Option<Duration>,
) -> (Response<Body>, u64) {
    let provider = shared.provider;
    match handle_inner(shared, req, delay).await {
        Ok((resp, n)) => (resp, n),
        Err((reply, n)) => (reply.into_response(provider), n),
    }
}

type Outcome = Result<(Response<Body>, u64), (ErrorReply, u64)>;

async fn handle_inner(shared: &Shared, req: Request<Incoming>, delay: Option<Duration>) -> Outcome {
    let aws = shared.provider == Provider::Aws;
    let issued = authorize(shared, &req).map_err(|e| (e, 0))?;
    let params = parse_query(req.uri().query().unwrap_or(""));
    let method = req.method().clone();
    if aws {
        return match method {
            Method::PUT => put_whole(shared, &issued, req, delay, true).await,
            _ => Err((
                err(
                    StatusCode::FORBIDDEN,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                ),
                0,
            )),
        };
    }
    match method {
        Method::PUT => match param(&params, "comp") {
            None => put_whole(shared, &issued, req, delay, false).await,
            Some("block") => put_block(shared, &issued, &params, req, delay).await,
            Some("blocklist") => put_block_list(shared, &issued, req, delay).await,
            Some(other) => Err((
                err(
                    StatusCode::BAD_REQUEST,
                    "InvalidQueryParameterValue",
                    format!("Value for one of the query parameters specified in the request URI is invalid: the emulator does not support comp={other}."),
                ),
                0,
            )),
        },
        // The SAS grants create and write only (sp=cw).
        Method::GET | Method::HEAD | Method::DELETE => Err((
            err(
                StatusCode::FORBIDDEN,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            ),
            0,
        )),
        _ => Err((
            err(
                StatusCode::METHOD_NOT_ALLOWED,
                "UnsupportedHttpVerb",
                "The resource doesn't support specified Http Verb.",
            ),
            0,
        )),
    }
}

/// Checks the path, that no Authorization header rides along, and the SAS: every signed
/// parameter as issued, not expired.
fn authorize(shared: &Shared, req: &Request<Incoming>) -> Result<Issued, ErrorReply> {
    let aws = shared.provider == Provider::Aws;
    let rest = req.uri().path().strip_prefix("/blob/").unwrap_or("");
    let Some((container, encoded_name)) = rest.split_once('/') else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
        ));
    };
    if container != CONTAINER {
        return Err(if aws {
            err(
                StatusCode::NOT_FOUND,
                "NoSuchBucket",
                "The specified bucket does not exist",
            )
        } else {
            err(
                StatusCode::NOT_FOUND,
                "ContainerNotFound",
                "The specified container does not exist.",
            )
        });
    }
    let name = percent_encoding::percent_decode_str(encoded_name)
        .decode_utf8()
        .map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "InvalidUri",
                "The blob name is not valid UTF-8.",
            )
        })?
        .into_owned();
    // A pre-signed URL carries its own authorization; a client that adds its API token
    // would leak it to the storage service.
    if req.headers().contains_key(AUTHORIZATION) {
        return Err(if aws {
            err(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
            )
        } else {
            err(
                StatusCode::BAD_REQUEST,
                "InvalidAuthenticationInfo",
                "Authentication information is not given in the correct format: a request signed with a SAS must not carry an Authorization header.",
            )
        });
    }
    let denied = || {
        if aws {
            err(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        } else {
            err(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            )
        }
    };
    let Some(issued) = shared.state().issued.get(&name).cloned() else {
        return Err(denied());
    };
    let params = parse_query(req.uri().query().unwrap_or(""));
    if issued
        .params
        .iter()
        .any(|(k, v)| param(&params, k) != Some(v.as_str()))
    {
        return Err(denied());
    }
    if SystemTime::now() > issued.expiry {
        return Err(if aws {
            err(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired")
        } else {
            err(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Signed expiry time has passed: Signature not valid in the specified time frame.",
            )
        });
    }
    Ok(issued)
}

/// Azure and S3 take no chunked uploads: the length must be announced.
fn content_length(headers: &HeaderMap, aws: bool) -> Result<u64, ErrorReply> {
    match headers.get(CONTENT_LENGTH) {
        None => Err(if aws {
            err(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            )
        } else {
            err(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLengthHeader",
                "The Content-Length header must be specified.",
            )
        }),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The Content-Length header is not a number.",
                )
            }),
    }
}

/// Streams a request body into a new file at `path`; removes the file on failure.
async fn receive(mut body: Incoming, path: &Path) -> io::Result<u64> {
    let result = async {
        let mut file =
            tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(path).await?);
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                file.write_all(&data).await?;
            }
        }
        file.flush().await?;
        Ok(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

fn incomplete(e: io::Error) -> ErrorReply {
    err(
        StatusCode::BAD_REQUEST,
        "IncompleteBody",
        format!("The request body is incomplete: {e}"),
    )
}

fn internal(e: impl std::fmt::Display) -> ErrorReply {
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("The server encountered an internal error: {e}"),
    )
}

fn created(shared: &Shared, status: StatusCode) -> Response<Body> {
    let now = SystemTime::now();
    let mut resp = Response::new(full(""));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let etag = format!("\"0x8D{}\"", random_hex(7).to_uppercase());
    h.insert("etag", header_value(&etag));
    h.insert("last-modified", header_value(&sas::http_date(now)));
    if shared.provider == Provider::Azure {
        h.insert("x-ms-request-id", header_value(&request_id()));
        h.insert("x-ms-version", HeaderValue::from_static(OWN_SAS_VERSION));
        h.insert(
            "x-ms-request-server-encrypted",
            HeaderValue::from_static("true"),
        );
    } else {
        h.insert(
            "x-amz-request-id",
            header_value(&random_hex(8).to_uppercase()),
        );
    }
    resp
}

/// Azure Put Blob (`x-ms-blob-type: BlockBlob` required) or an S3 PUT: the body becomes
/// the committed blob, replacing any previous one and discarding uncommitted blocks.
async fn put_whole(
    shared: &Shared,
    issued: &Issued,
    req: Request<Incoming>,
    delay: Option<Duration>,
    aws: bool,
) -> Outcome {
    if !aws {
        match req.headers().get("x-ms-blob-type").map(|v| v.to_str().unwrap_or("")) {
            None => {
                return Err((
                    err(
                        StatusCode::BAD_REQUEST,
                        "MissingRequiredHeader",
                        "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.",
                    ),
                    0,
                ))
            }
            Some(t) if t.eq_ignore_ascii_case("BlockBlob") => {}
            Some(t) => {
                return Err((
                    err(
                        StatusCode::BAD_REQUEST,
                        "InvalidHeaderValue",
                        format!("The value for one of the HTTP headers is not in the correct format: x-ms-blob-type {t:?} (the emulator serves block blobs only)."),
                    ),
                    0,
                ))
            }
        }
    }
    content_length(req.headers(), aws).map_err(|e| (e, 0))?;
    let tmp = shared.dirs.tmp.join(format!("put-{}", shared.next_seq()));
    let n = receive(req.into_body(), &tmp)
        .await
        .map_err(|e| (incomplete(e), 0))?;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let dest = shared.dirs.blobs.join(&issued.file_name);
    // Rename and state change under the lock, so that concurrent writers of the same
    // blob leave file and state in agreement.
    {
        let mut st = shared.state();
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_file(&tmp);
            return Err((internal(e), n));
        }
        let blob = st.blobs.entry(issued.blob_name.clone()).or_default();
        blob.discard_uncommitted();
        blob.committed = Some(Committed { blocks: Vec::new() });
    }
    let status = if aws {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((created(shared, status), n))
}

/// Azure Put Block: `?comp=block&blockid=<base64>`.
async fn put_block(
    shared: &Shared,
    issued: &Issued,
    params: &[(String, String)],
    req: Request<Incoming>,
    delay: Option<Duration>,
) -> Outcome {
    let Some(id) = param(params, "blockid") else {
        return Err((
            err(
                StatusCode::BAD_REQUEST,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified: blockid.",
            ),
            0,
        ));
    };
    let id = id.to_string();
    match B64.decode(&id) {
        Ok(raw) if !raw.is_empty() && raw.len() <= MAX_BLOCK_ID_BYTES => {}
        _ => {
            return Err((
                err(
                    StatusCode::BAD_REQUEST,
                    "InvalidQueryParameterValue",
                    format!("Value for one of the query parameters specified in the request URI is invalid: blockid {id:?} is not base64 of at most 64 bytes (URL-encode it: + / = must be sent as %2B %2F %3D)."),
                ),
                0,
            ))
        }
    }
    let check_len = |shared: &Shared| -> Result<(), ErrorReply> {
        let st = shared.state();
        match st.blobs.get(&issued.blob_name).and_then(BlobState::id_len) {
            Some(len) if len != id.len() => Err(err(
                StatusCode::BAD_REQUEST,
                "InvalidBlobOrBlock",
                format!("The specified blob or block content is invalid: block ids of a blob must all have the same length ({len}), not {}.", id.len()),
            )),
            _ => Ok(()),
        }
    };
    check_len(shared).map_err(|e| (e, 0))?;
    content_length(req.headers(), false).map_err(|e| (e, 0))?;
    let dir = shared.dirs.blocks.join(&issued.file_name);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| (internal(e), 0))?;
    let path = dir.join(format!("{}.blk", shared.next_seq()));
    let n = receive(req.into_body(), &path)
        .await
        .map_err(|e| (incomplete(e), 0))?;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    // Checked again: a concurrent Put Block may have set the length meanwhile.
    if let Err(e) = check_len(shared) {
        let _ = std::fs::remove_file(&path);
        return Err((e, n));
    }
    {
        let mut st = shared.state();
        let blob = st.blobs.entry(issued.blob_name.clone()).or_default();
        if let Some(old) = blob.uncommitted.insert(id, BlockFile { path, len: n }) {
            let _ = std::fs::remove_file(old.path);
        }
    }
    Ok((created(shared, StatusCode::CREATED), n))
}

/// Azure Put Block List: `?comp=blocklist` with the XML list of ids; the blob becomes
/// those blocks in that order.
async fn put_block_list(
    shared: &Shared,
    issued: &Issued,
    req: Request<Incoming>,
    delay: Option<Duration>,
) -> Outcome {
    content_length(req.headers(), false).map_err(|e| (e, 0))?;
    let body = match read_body(req.into_body(), BLOCK_LIST_BODY_LIMIT).await {
        Ok(b) => b,
        Err(ReadError::TooLarge(n)) => {
            return Err((
                err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestBodyTooLarge",
                    "The request body is too large.",
                ),
                n,
            ))
        }
        Err(ReadError::Body(e)) => return Err((incomplete(io::Error::other(e)), 0)),
    };
    let n = body.len() as u64;
    let invalid_xml = |detail: String| {
        (
            err(
                StatusCode::BAD_REQUEST,
                "InvalidXmlDocument",
                format!("XML specified is not syntactically valid: {detail}"),
            ),
            n,
        )
    };
    let text = std::str::from_utf8(&body).map_err(|e| invalid_xml(e.to_string()))?;
    let list = parse_block_list(text).map_err(invalid_xml)?;
    let invalid_list = |detail: String| {
        (
            err(
                StatusCode::BAD_REQUEST,
                "InvalidBlockList",
                format!("The specified block list is invalid: {detail}"),
            ),
            n,
        )
    };
    if list.len() > MAX_COMMITTED_BLOCKS {
        return Err(invalid_list(format!(
            "{} blocks, at most {MAX_COMMITTED_BLOCKS}",
            list.len()
        )));
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let dest = shared.dirs.blobs.join(&issued.file_name);
    let (sources, lens) = {
        let st = shared.state();
        let empty = BlobState::default();
        let blob = st.blobs.get(&issued.blob_name).unwrap_or(&empty);
        let committed = |id: &str| {
            blob.committed
                .as_ref()
                .and_then(|c| c.blocks.iter().find(|b| b.id == id))
                .map(|b| (Source::Range(dest.clone(), b.offset, b.len), b.len))
        };
        let uncommitted = |id: &str| {
            blob.uncommitted
                .get(id)
                .map(|b| (Source::File(b.path.clone()), b.len))
        };
        let mut sources = Vec::with_capacity(list.len());
        let mut lens = Vec::with_capacity(list.len());
        for r in &list {
            let found = match r {
                BlockRef::Latest(id) => uncommitted(id).or_else(|| committed(id)),
                BlockRef::Uncommitted(id) => uncommitted(id),
                BlockRef::Committed(id) => committed(id),
            };
            let Some((src, len)) = found else {
                let which = match r {
                    BlockRef::Latest(_) => "Latest",
                    BlockRef::Uncommitted(_) => "Uncommitted",
                    BlockRef::Committed(_) => "Committed",
                };
                return Err(invalid_list(format!(
                    "no {which} block with id {:?}",
                    r.id()
                )));
            };
            sources.push(src);
            lens.push(len);
        }
        (sources, lens)
    };
    let tmp = shared
        .dirs
        .tmp
        .join(format!("commit-{}", shared.next_seq()));
    let tmp2 = tmp.clone();
    let total = tokio::task::spawn_blocking(move || concatenate(&sources, &tmp2))
        .await
        .map_err(|e| (internal(e), n))?
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            (internal(e), n)
        })?;
    {
        let mut st = shared.state();
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_file(&tmp);
            return Err((internal(e), n));
        }
        let blob = st.blobs.entry(issued.blob_name.clone()).or_default();
        let mut offset = 0;
        let blocks = list
            .iter()
            .zip(lens)
            .map(|(r, len)| {
                let b = CommittedBlock {
                    id: r.id().to_string(),
                    offset,
                    len,
                };
                offset += len;
                b
            })
            .collect();
        // Azure discards the blocks left out of the list.
        blob.discard_uncommitted();
        debug_assert_eq!(offset, total);
        blob.committed = Some(Committed { blocks });
    }
    Ok((created(shared, StatusCode::CREATED), n))
}

/// Writes the sources one after the other into `dest`.
fn concatenate(sources: &[Source], dest: &Path) -> io::Result<u64> {
    let mut out = std::fs::File::create(dest)?;
    let mut total = 0;
    for src in sources {
        total += match src {
            Source::File(path) => io::copy(&mut std::fs::File::open(path)?, &mut out)?,
            Source::Range(path, offset, len) => {
                let mut f = std::fs::File::open(path)?;
                f.seek(SeekFrom::Start(*offset))?;
                io::copy(&mut f.take(*len), &mut out)?
            }
        };
    }
    Ok(total)
}
