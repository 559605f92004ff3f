//! `POST /api/v1/discovery/done_upload/`: the last step of an upload. It checks the
//! upload URL was issued here and its blob committed, that the data source exists and the
//! log format is one MCAS knows, then ingests the blob (counts its records). A repeated
//! done_upload for the same URL is answered as [`RepeatedDone`] says.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::{Context, Result};
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::warn;

use crate::log_lines::{LineCounts, Parser};
use crate::server::{json_error, json_response, param, Body, Issued, Reply, Shared};
use crate::{records, streams, Upload};

/// What a done_upload for an upload URL already ingested does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepeatedDone {
    /// 200 again, nothing ingested a second time (default).
    #[default]
    Ok,
    /// 400 "already processed", echoing the request's fields (`inputStreamName` too).
    Refuse,
    /// 200, and the records are counted a second time, as a careless service would.
    IngestTwice,
}

impl std::str::FromStr for RepeatedDone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(RepeatedDone::Ok),
            "refuse" => Ok(RepeatedDone::Refuse),
            "ingest-twice" => Ok(RepeatedDone::IngestTwice),
            _ => Err(format!("unknown mode {s:?} (ok, refuse, ingest-twice)")),
        }
    }
}

/// The fields of a done_upload request.
struct DoneForm {
    upload_url: String,
    stream: String,
    snapshot: bool,
}

impl Shared {
    /// `POST done_upload/`: checks the request, then ingests the upload (once per URL,
    /// unless told to ingest repeats again).
    pub(crate) async fn done_upload(&self, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
        let form = match parse_done_form(headers, body) {
            Ok(f) => f,
            Err(resp) => return *resp,
        };
        let not_issued = || {
            json_error(
                StatusCode::BAD_REQUEST,
                "uploadUrl is not an upload URL issued by this service.",
            )
        };
        let Some((blob_name, params)) = parse_upload_url(&form.upload_url) else {
            return not_issued();
        };
        let (issued, block_count) = {
            let mut st = self.state();
            let Some(issued) = st.issued.get(&blob_name).cloned() else {
                return not_issued();
            };
            if param(&params, issued.sig_param) != Some(issued.sig()) {
                return not_issued();
            }
            // Refused before anything is consumed: the same URL succeeds once the data
            // source exists.
            if !st.streams.contains(&form.stream) {
                return unknown_data_source(&form.stream);
            }
            if streams::log_type_number(&issued.source).is_none()
                || !st.log_formats.contains(&issued.source)
            {
                return unknown_log_format(&issued.source, &st.log_formats);
            }
            if st.finalized.contains(&blob_name) {
                st.stats.repeated_done += 1;
                return match st.repeated_done {
                    RepeatedDone::Ok => done_ok(),
                    RepeatedDone::Refuse => json_response(
                        StatusCode::BAD_REQUEST,
                        // The request echoed back, as validation errors of web APIs often
                        // are: its field names say nothing of why it was refused.
                        json!({"detail": "This upload was already processed: uploadUrl is no longer valid.", "uploadUrl": form.upload_url, "inputStreamName": form.stream}),
                    ),
                    RepeatedDone::IngestTwice => {
                        let again = st
                            .uploads
                            .iter()
                            .rev()
                            .find(|u| u.upload_url == issued.url)
                            .cloned();
                        // Still being ingested by the first call: nothing to count twice yet.
                        if let Some(upload) = again {
                            drop(st);
                            self.ingested(upload);
                        }
                        done_ok()
                    }
                };
            }
            let mut block_count = 0;
            if self.azurite.is_none() {
                match st.blobs.get(&blob_name).and_then(|b| b.committed.as_ref()) {
                    Some(c) => block_count = c.blocks.len() as u32,
                    None => return no_blob(),
                }
            }
            // Claimed now, so that a concurrent repeat counts as a repeat.
            st.finalized.insert(blob_name.clone());
            (issued, block_count)
        };
        match self.finalize(&issued, &form, block_count).await {
            Ok(Some(upload)) => {
                self.ingested(upload);
                done_ok()
            }
            Ok(None) => {
                self.state().finalized.remove(&blob_name);
                no_blob()
            }
            Err(e) => {
                warn!("finalizing {blob_name}: {e:#}");
                self.state().finalized.remove(&blob_name);
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Internal error: {e:#}"),
                )
            }
        }
    }

    /// Records an ingested upload: counters, its data source's last data, waiters. An
    /// upload finalized with `uploadAsSnapshot` makes a one-off snapshot report instead:
    /// nothing of it reaches the data source.
    fn ingested(&self, upload: Upload) {
        let mut st = self.state();
        if upload.as_snapshot {
            st.stats.snapshot_reports += 1;
            st.snapshots.push(upload);
            return;
        }
        st.stats.uploads += 1;
        st.stats.records += upload.records;
        st.stats.unparsed_lines += upload.unparsed;
        st.stats.ignored_old_events += upload.ignored_old;
        st.stats.bytes += upload.bytes;
        st.streams.received(&upload.data_source, SystemTime::now());
        let total = st.stats.records;
        st.uploads.push(upload);
        drop(st);
        self.records_tx.send_replace(total);
    }

    /// Puts the committed blob under `uploads/` and counts its records. `Ok(None)` when
    /// there is no committed blob (Azurite).
    async fn finalize(
        &self,
        issued: &Issued,
        form: &DoneForm,
        block_count: u32,
    ) -> Result<Option<Upload>> {
        let dest = self.dirs.uploads.join(&issued.file_name);
        let _ = tokio::fs::remove_file(&dest).await;
        let block_count = match &self.azurite {
            Some(az) => {
                if az.fetch(&issued.url, &dest).await?.is_none() {
                    return Ok(None);
                }
                az.committed_block_count(&issued.url).await?
            }
            None => {
                // A hard link keeps the bytes as finalized even if the client PUTs to the
                // same URL again.
                let src = self.dirs.blobs.join(&issued.file_name);
                if tokio::fs::hard_link(&src, &dest).await.is_err() {
                    tokio::fs::copy(&src, &dest)
                        .await
                        .with_context(|| format!("copying {}", src.display()))?;
                }
                block_count
            }
        };
        let bytes = tokio::fs::metadata(&dest).await?.len();
        let path = dest.clone();
        let parser = Parser::of(&issued.source);
        let (lines, decode_error) = if self.count_records {
            let now = SystemTime::now();
            tokio::task::spawn_blocking(move || records::count_records(&path, parser, now))
                .await??
        } else {
            (LineCounts::default(), None)
        };
        Ok(Some(Upload {
            filename: issued.filename.clone(),
            source: issued.source.clone(),
            data_source: form.stream.clone(),
            upload_url: issued.url.clone(),
            as_snapshot: form.snapshot,
            path: dest,
            bytes,
            records: lines.lines,
            unparsed: lines.unparsed,
            ignored_old: lines.ignored_old,
            block_count,
            decode_error,
        }))
    }
}

fn done_ok() -> Response<Body> {
    json_response(StatusCode::OK, json!({"success": true}))
}

fn unknown_data_source(name: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"detail": format!("Data source \"{name}\" does not exist: create it under Settings > Cloud Discovery > Automatic log upload > Data sources, or name an existing one in inputStreamName."), "inputStreamName": name}),
    )
}

fn unknown_log_format(source: &str, known: &[String]) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"detail": format!("Unknown log format \"{source}\": the source given to upload_url must be one of {}.", known.join(", ")), "source": source}),
    )
}

fn no_blob() -> Response<Body> {
    json_error(
        StatusCode::BAD_REQUEST,
        "No blob was committed at uploadUrl: upload the file (and commit its block list) before done_upload.",
    )
}

/// Parses the done_upload body: JSON, or form-encoded as some clients send it.
fn parse_done_form(headers: &HeaderMap, body: &[u8]) -> Result<DoneForm, Reply> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bad = |msg: &str| Box::new(json_error(StatusCode::BAD_REQUEST, msg));
    let fields: HashMap<String, Value> = match content_type.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            Ok(_) => return Err(bad("JSON parse error - expected an object.")),
            Err(e) => return Err(bad(&format!("JSON parse error - {e}"))),
        },
        "application/x-www-form-urlencoded" => url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
        // Without a content type the framework sees no data at all.
        "" if body.is_empty() => HashMap::new(),
        other => {
            return Err(Box::new(json_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"detail": format!("Unsupported media type \"{other}\" in request.")}),
            )))
        }
    };
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(bad(&format!("{name} is required (a non-empty string)."))),
    };
    let upload_url = text("uploadUrl")?;
    let stream = text("inputStreamName")?;
    // "If this parameter is set, the report will be created with the name specified in
    // inputStreamName": the key itself makes a snapshot report, whatever its value.
    let snapshot = fields.contains_key("uploadAsSnapshot");
    Ok(DoneForm {
        upload_url,
        stream,
        snapshot,
    })
}

/// The blob name (decoded last path segment) and query of an upload URL.
fn parse_upload_url(url: &str) -> Option<(String, Vec<(String, String)>)> {
    let url = url::Url::parse(url).ok()?;
    let last = url.path_segments()?.next_back()?;
    let name = percent_encoding::percent_decode_str(last)
        .decode_utf8()
        .ok()?
        .into_owned();
    let params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some((name, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }
    #[test]
    fn done_form_json_and_form() {
        let f = parse_done_form(
            &headers(&[("content-type", "application/json; charset=utf-8")]),
            br#"{"uploadUrl": "https://x/y", "inputStreamName": "NSS", "uploadAsSnapshot": false}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(
            (f.upload_url.as_str(), f.stream.as_str(), f.snapshot),
            ("https://x/y", "NSS", true)
        );
        let f = parse_done_form(
            &headers(&[("content-type", "application/json")]),
            br#"{"uploadUrl": "https://x/y", "inputStreamName": "NSS"}"#,
        )
        .ok()
        .unwrap();
        assert!(!f.snapshot);
        let f = parse_done_form(
            &headers(&[("content-type", "application/x-www-form-urlencoded")]),
            b"uploadUrl=https%3A%2F%2Fx%2Fy%3Fa%3D1%26b%3D2&inputStreamName=NSS&uploadAsSnapshot=True",
        )
        .ok()
        .unwrap();
        assert_eq!(
            (f.upload_url.as_str(), f.snapshot),
            ("https://x/y?a=1&b=2", true)
        );
        let e = parse_done_form(&headers(&[("content-type", "text/plain")]), b"x")
            .err()
            .unwrap();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = parse_done_form(
            &headers(&[("content-type", "application/json")]),
            br#"{"uploadUrl": "u"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
