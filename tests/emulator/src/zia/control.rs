//! The ZIA emulator's control API (no auth), for scripts driving the `zia-emulator`
//! binary: `GET /_zia/activated`, `/_zia/saved`, `/_zia/calls`, `/_zia/stats`;
//! `POST /_zia/faults` (`{"scope": "writes", "fault": "rate_limit", "times": 2}`, fault one
//! of `rate_limit`, `edit_lock`, `read_only`, `forbidden`, `org_barrier`,
//! `org_barrier_412`, `access_blocked` or an HTTP status), `/_zia/read_only`
//! (`{"on": true}`), `/_zia/seed` (a category), `/_zia/expire_sessions`.

use hyper::{Method, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::server::{error, response, Body, Shared};
use super::tenant::ZiaCategory;
use super::{FaultScope, ZiaFault};

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(default)]
    scope: Option<String>,
    fault: Value,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let json_body = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let mut st = shared.swept();
    match (method.clone(), path) {
        (Method::GET, "/activated") => {
            response(200, json!(st.tenant.activated.values().collect::<Vec<_>>()))
        }
        (Method::GET, "/saved") => {
            response(200, json!(st.tenant.saved.values().collect::<Vec<_>>()))
        }
        (Method::GET, "/calls") => response(200, json!(st.calls)),
        (Method::GET, "/stats") => response(200, json!(st.stats)),
        (Method::POST, "/faults") => {
            let Ok(req) = serde_json::from_value::<FaultRequest>(json_body()) else {
                return error(
                    400,
                    "INVALID_INPUT_ARGUMENT",
                    "expected {scope, fault, times}",
                );
            };
            let scope = match req.scope.as_deref().unwrap_or("any") {
                "any" => FaultScope::Any,
                "reads" => FaultScope::Reads,
                "writes" => FaultScope::Writes,
                _ => return error(400, "INVALID_INPUT_ARGUMENT", "scope: any, reads or writes"),
            };
            let fault = match &req.fault {
                Value::String(s) if s == "rate_limit" => ZiaFault::RateLimit,
                Value::String(s) if s == "edit_lock" => ZiaFault::EditLock,
                Value::String(s) if s == "read_only" => ZiaFault::ReadOnly,
                Value::String(s) if s == "forbidden" => ZiaFault::Forbidden,
                Value::String(s) if s == "org_barrier" => ZiaFault::OrgBarrier(409),
                Value::String(s) if s == "org_barrier_412" => ZiaFault::OrgBarrier(412),
                Value::String(s) if s == "access_blocked" => ZiaFault::AccessBlocked,
                Value::Number(n) if n.as_u64().is_some_and(|c| (100..600).contains(&c)) => {
                    ZiaFault::Status(n.as_u64().unwrap_or(500) as u16)
                }
                _ => return error(400, "INVALID_INPUT_ARGUMENT", "unknown fault"),
            };
            for _ in 0..req.times {
                st.faults.push_back((scope, fault));
            }
            response(204, Value::Null)
        }
        (Method::POST, "/read_only") => {
            st.read_only = json_body()
                .get("on")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            response(204, Value::Null)
        }
        (Method::POST, "/seed") => match serde_json::from_value::<ZiaCategory>(json_body()) {
            Ok(category) => response(200, json!({"id": st.tenant.seed(category)})),
            Err(e) => error(400, "INVALID_INPUT_ARGUMENT", &e.to_string()),
        },
        (Method::POST, "/expire_sessions") => {
            let ended = st.logins.end_all_sessions();
            if ended > 0 {
                st.stats.session_timeouts += ended as u64;
                st.end_sessions_activation();
            }
            response(204, Value::Null)
        }
        _ => error(404, "RESOURCE_NOT_FOUND", "unknown control endpoint"),
    }
}
