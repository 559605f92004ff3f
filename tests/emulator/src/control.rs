//! The control API under `/_emulator/` (no auth), for the binary's users (scripts, the
//! demo): counters, recorded uploads and calls, faults, and run-time settings.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::{json_error, json_response, read_body, Body, Shared, API_BODY_LIMIT};
use crate::{entra, streams, Endpoint, Fault, RepeatedDone, Roles};

/// A fault as posted to `/_emulator/faults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: String,
    #[serde(default = "one")]
    times: u32,
    status: Option<u16>,
    retry_after: Option<Value>,
    body: Option<String>,
    #[serde(default)]
    drop: bool,
    delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

impl FaultRequest {
    fn into_fault(self) -> Result<(Endpoint, Fault, u32), String> {
        let endpoint = Endpoint::from_name(&self.endpoint).ok_or_else(|| {
            format!(
                "unknown endpoint {:?} (upload_url, blob, done_upload, block_script, streams, token)",
                self.endpoint
            )
        })?;
        let fault = match (self.status, self.drop, self.delay_ms) {
            (Some(code), false, None) => {
                if !(100..=999).contains(&code) {
                    return Err(format!("bad status {code}"));
                }
                Fault::Status {
                    code,
                    retry_after: match self.retry_after {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s),
                        Some(v) => Some(v.to_string()),
                    },
                    body: self.body.unwrap_or_default(),
                }
            }
            (None, true, None) => Fault::Drop,
            (None, false, Some(ms)) => Fault::Delay(Duration::from_millis(ms)),
            _ => return Err("give exactly one of status, drop, delay_ms".to_string()),
        };
        Ok((endpoint, fault, self.times))
    }
}

/// The control API under `/_emulator/`, for the binary's users (scripts, demo).
pub(crate) async fn control(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match read_body(req.into_body(), API_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "unreadable or too large body"),
    };
    let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, json!({ "error": msg }));
    match (method, path.as_str()) {
        (Method::GET, "/_emulator/stats") => {
            json_response(StatusCode::OK, json!(shared.state().stats))
        }
        (Method::GET, "/_emulator/uploads") => {
            json_response(StatusCode::OK, json!(shared.state().uploads))
        }
        (Method::GET, "/_emulator/governance") => {
            // One entry per file, as the portal's governance log lists uploads.
            let entries: Vec<Value> = shared
                .state()
                .uploads
                .iter()
                .map(|u| {
                    json!({"data_source": u.data_source, "filename": u.filename,
                           "source": u.source, "status": u.governance_status(),
                           "lines": u.records, "unparsed": u.unparsed,
                           "ignored_old": u.ignored_old})
                })
                .collect();
            json_response(StatusCode::OK, json!({ "uploads": entries }))
        }
        (Method::POST, "/_emulator/blob_host") => {
            #[derive(Deserialize)]
            struct HostRequest {
                host: Option<String>,
            }
            match serde_json::from_slice::<HostRequest>(&body) {
                Ok(h) => {
                    shared.state().blob_host = h.host.clone();
                    json_response(StatusCode::OK, json!({ "host": h.host }))
                }
                Err(e) => bad(e.to_string()),
            }
        }
        (Method::GET, "/_emulator/calls") => {
            json_response(StatusCode::OK, json!(shared.state().calls))
        }
        (Method::POST, "/_emulator/faults") => {
            let parsed = serde_json::from_slice::<FaultRequest>(&body)
                .map_err(|e| e.to_string())
                .and_then(FaultRequest::into_fault);
            match parsed {
                Ok((endpoint, fault, times)) => {
                    shared.push_fault(endpoint, fault, times);
                    json_response(
                        StatusCode::OK,
                        json!({"endpoint": endpoint.name(), "queued": times}),
                    )
                }
                Err(e) => bad(e),
            }
        }
        (Method::DELETE, "/_emulator/faults") => {
            let mut state = shared.state();
            state.faults.clear();
            state.file_faults.clear();
            json_response(StatusCode::OK, json!({"cleared": true}))
        }
        (Method::POST, "/_emulator/banned") => {
            let lines: Vec<String> = String::from_utf8_lossy(&body)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            let n = lines.len();
            shared.state().banned = lines;
            json_response(StatusCode::OK, json!({ "banned": n }))
        }
        (Method::POST, "/_emulator/throttle") => {
            #[derive(Deserialize)]
            struct ThrottleRequest {
                per_minute: Option<u32>,
            }
            match serde_json::from_slice::<ThrottleRequest>(&body) {
                Ok(t) => {
                    shared.state().throttle.set_limit(t.per_minute);
                    json_response(StatusCode::OK, json!({ "per_minute": t.per_minute }))
                }
                Err(e) => bad(e.to_string()),
            }
        }
        (Method::POST, "/_emulator/token_roles") => match serde_json::from_slice::<Roles>(&body) {
            Ok(roles) => {
                shared.state().token_roles = roles;
                json_response(StatusCode::OK, json!({ "token_roles": roles }))
            }
            Err(e) => bad(e.to_string()),
        },
        (Method::POST, "/_emulator/repeated_done") => {
            #[derive(Deserialize)]
            struct ModeRequest {
                mode: RepeatedDone,
            }
            match serde_json::from_slice::<ModeRequest>(&body) {
                Ok(m) => {
                    shared.state().repeated_done = m.mode;
                    json_response(StatusCode::OK, json!({ "mode": m.mode }))
                }
                Err(e) => bad(e.to_string()),
            }
        }
        (method, p) if p == "/_emulator/entra" || p.starts_with("/_emulator/entra/") => {
            entra::control(shared, &method, p, &body)
        }
        (method, p) if p == "/_emulator/streams" || p.starts_with("/_emulator/streams/") => {
            streams::control(shared, &method, p, &body)
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown control endpoint", "endpoints": [
                "GET /_emulator/stats", "GET /_emulator/uploads", "GET /_emulator/calls",
                "GET /_emulator/governance", "POST /_emulator/blob_host",
                "POST /_emulator/faults", "DELETE /_emulator/faults",
                "POST /_emulator/banned", "POST /_emulator/throttle",
                "POST /_emulator/token_roles", "POST /_emulator/repeated_done",
                "/_emulator/entra/...", "/_emulator/streams/..."]}),
        ),
    }
}
