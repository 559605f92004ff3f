//! The ZIA emulator's HTTPS server: accept loop, routing, authentication, faults, rate
//! limits, the URL category API and the control API (`/_zia/...`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::auth::{Credentials, Logins, SessionLogin};
use super::limits::{Class, RateLimits};
use super::tenant::{Refusal, Tenant, ZiaCategory};
use super::{FaultScope, ZiaCall, ZiaConfig, ZiaFault, ZiaStats};
use crate::certs;

/// The header by which ZIA tells whether the tenant takes writes.
const ZSCALER_MODE: &str = "x-zscaler-mode";

/// Request bodies: a category write with 25,000 URLs is a few MiB.
const BODY_LIMIT: usize = 32 << 20;

pub(crate) type Body = Full<Bytes>;

/// State shared by the handle and the connections.
pub(crate) struct Shared {
    pub addr: SocketAddr,
    pub host: String,
    pub cert_dir: std::path::PathBuf,
    pub creds: Credentials,
    pub token_lifetime: Duration,
    pub session_idle: Duration,
    state: Mutex<State>,
    pub shutdown_tx: watch::Sender<bool>,
}

/// Everything that changes at run time.
pub(crate) struct State {
    pub tenant: Tenant,
    pub logins: Logins,
    pub limits: RateLimits,
    pub rate_limits_on: bool,
    pub read_only: bool,
    pub edit_lock_probability: f64,
    pub faults: VecDeque<(FaultScope, ZiaFault)>,
    pub calls: Vec<ZiaCall>,
    pub stats: ZiaStats,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state after ending idle sessions, which activates what they left pending.
    pub(crate) fn swept(&self) -> MutexGuard<'_, State> {
        let mut st = self.state();
        let ended = st.logins.expire_idle(self.session_idle);
        if ended > 0 {
            st.stats.session_timeouts += ended as u64;
            st.end_sessions_activation();
        }
        st
    }
}

impl State {
    /// A session ended (logout or timeout): what is pending is activated.
    pub(crate) fn end_sessions_activation(&mut self) {
        if self.tenant.pending() {
            self.tenant.activate();
            self.stats.implicit_activations += 1;
        }
    }
}

pub(crate) async fn start(cfg: ZiaConfig) -> Result<Arc<Shared>> {
    let cert_dir = cfg.cert_dir.clone();
    tokio::task::spawn_blocking(move || certs::ensure_certs(&cert_dir)).await??;
    let tls = certs::server_config(&cfg.cert_dir)?;
    let listener = TcpListener::bind(cfg.bind)
        .await
        .with_context(|| format!("binding {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        addr,
        host: SocketAddr::new(ip, addr.port()).to_string(),
        cert_dir: cfg.cert_dir,
        creds: Credentials {
            username: cfg.username,
            password: cfg.password,
            api_key: cfg.api_key,
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            client_public_key_pem: cfg.client_public_key_pem,
        },
        token_lifetime: cfg.token_lifetime,
        session_idle: cfg.session_idle,
        state: Mutex::new(State {
            tenant: Tenant::new(cfg.quota, cfg.max_custom_categories),
            logins: Logins::default(),
            limits: RateLimits::default(),
            rate_limits_on: cfg.rate_limits,
            read_only: false,
            edit_lock_probability: cfg.edit_lock_probability,
            faults: VecDeque::new(),
            calls: Vec::new(),
            stats: ZiaStats::default(),
        }),
        shutdown_tx,
    });
    let served = shared.clone();
    tokio::spawn(crate::tls_server::accept_loop(
        listener,
        TlsAcceptor::from(tls),
        shutdown_rx,
        "ZIA",
        move |req| {
            let shared = served.clone();
            async move { Ok::<_, Infallible>(serve(&shared, req).await) }
        },
    ));
    Ok(shared)
}

/// Which login a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ApiKey,
    OneApi,
}

async fn serve(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(400, "INVALID_INPUT_ARGUMENT", "Request body too large"),
    };
    if let Some(rest) = path.strip_prefix("/_zia") {
        return super::control::handle(shared, &method, rest, &body);
    }
    let at = SystemTime::now();
    let secret_bearing = path == "/oauth2/v1/token" || path == "/api/v1/authenticatedSession";
    let recorded_body = if secret_bearing {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let resp = route(shared, &method, &path, &query, &headers, &body);
    let mut st = shared.state();
    st.stats.api_calls += 1;
    st.calls.push(ZiaCall {
        method: method.to_string(),
        path,
        query,
        body: recorded_body,
        status: resp.status().as_u16(),
        at,
    });
    resp
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Response<Body> {
    if path == "/oauth2/v1/token" && method == Method::POST {
        return token(shared, body);
    }
    if path == "/api/v1/authenticatedSession" {
        return session(shared, method, headers, body);
    }
    let (mode, rest) = if let Some(rest) = path.strip_prefix("/api/v1") {
        (Mode::ApiKey, rest)
    } else if let Some(rest) = path.strip_prefix("/zia/api/v1") {
        (Mode::OneApi, rest)
    } else {
        return error(404, "RESOURCE_NOT_FOUND", "Not found");
    };
    let mut st = shared.swept();
    if let Some(refusal) = authenticate(&mut st, mode, headers) {
        return refusal;
    }
    let class = match (method.clone(), rest) {
        (Method::GET, _) => Class::Read,
        (Method::POST, "/status/activate") => Class::Activate,
        (Method::DELETE, _) => Class::Delete,
        _ => Class::Write,
    };
    // ZIA documents 415 for a write without a media type; both SDKs send JSON, even
    // `{}` to activate.
    if (method == Method::POST || method == Method::PUT) && !is_json(headers) {
        return error(415, "", "Unsupported Media Type");
    }
    let scope_matches = |scope: FaultScope| match scope {
        FaultScope::Any => true,
        FaultScope::Reads => class == Class::Read,
        FaultScope::Writes => class != Class::Read,
    };
    if let Some(pos) = st
        .faults
        .iter()
        .position(|(scope, _)| scope_matches(*scope))
    {
        let (_, fault) = st
            .faults
            .remove(pos)
            .unwrap_or((FaultScope::Any, ZiaFault::Status(500)));
        return fault_response(&mut st, mode, fault);
    }
    if st.read_only && class != Class::Read {
        return fault_response(&mut st, mode, ZiaFault::ReadOnly);
    }
    if st.rate_limits_on {
        if let Err(exceeded) = st.limits.admit(class, Instant::now()) {
            st.stats.throttled += 1;
            return rate_limited(mode, exceeded.limit, exceeded.wait);
        }
    }
    if class != Class::Read && fastrand::f64() < st.edit_lock_probability {
        return fault_response(&mut st, mode, ZiaFault::EditLock);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return error(400, "INVALID_INPUT_ARGUMENT", "Request body is not JSON"),
        }
    };
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    api(&mut st, method, rest, &params, &body)
}

/// The URL category and activation endpoints.
fn api(
    st: &mut State,
    method: &Method,
    rest: &str,
    params: &HashMap<String, String>,
    body: &Value,
) -> Response<Body> {
    let result: Result<Value, Refusal> = match (method.clone(), rest) {
        (Method::GET, "/urlCategories") => {
            let mut all: Vec<Value> = st
                .tenant
                .saved
                .values()
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .collect();
            if params.get("customOnly").map(String::as_str) != Some("true") {
                all.insert(0, predefined());
            }
            Ok(Value::Array(all))
        }
        (Method::GET, "/urlCategories/urlQuota") => Ok(st.tenant.quota_answer()),
        (Method::GET, "/status") => {
            let status = if st.tenant.pending() {
                "PENDING"
            } else {
                "ACTIVE"
            };
            Ok(json!({"status": status}))
        }
        (Method::POST, "/status/activate") => {
            st.tenant.activate();
            st.stats.activations += 1;
            Ok(json!({"status": "ACTIVE"}))
        }
        (Method::POST, "/urlCategories") => st.tenant.create(body).map(|c| {
            st.stats.writes += 1;
            to_json(&c)
        }),
        (method, path) => match path.strip_prefix("/urlCategories/") {
            Some(id) if method == Method::GET => {
                st.tenant.saved.get(id).map(to_json).ok_or_else(|| Refusal {
                    status: 404,
                    code: "RESOURCE_NOT_FOUND",
                    message: format!("URL category {id} not found"),
                })
            }
            Some(id) if method == Method::PUT => {
                let action = params.get("action").map(String::as_str);
                st.tenant.update(id, action, body).map(|c| {
                    st.stats.writes += 1;
                    to_json(&c)
                })
            }
            Some(id) if method == Method::DELETE => st.tenant.delete(id).map(|()| {
                st.stats.writes += 1;
                Value::Null
            }),
            _ => Err(Refusal {
                status: 404,
                code: "RESOURCE_NOT_FOUND",
                message: format!("No such endpoint: {method} {path}"),
            }),
        },
    };
    match result {
        Ok(Value::Null) => response(204, Value::Null),
        Ok(value) => response(200, value),
        Err(refusal) => error(refusal.status, refusal.code, &refusal.message),
    }
}

fn to_json(category: &ZiaCategory) -> Value {
    serde_json::to_value(category).unwrap_or_default()
}

/// A predefined category, listed when `customOnly` is not asked for.
fn predefined() -> Value {
    json!({"id": "OTHER_MISCELLANEOUS", "superCategory": "MISCELLANEOUS",
           "customCategory": false, "type": "URL_CATEGORY", "urls": [], "keywords": []})
}

/// Whether the request says its body is JSON.
fn is_json(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks the JSESSIONID cookie (API key paths) or the bearer token (OneAPI paths);
/// answers the 401 when it fails.
fn authenticate(st: &mut State, mode: Mode, headers: &hyper::HeaderMap) -> Option<Response<Body>> {
    let ok = match mode {
        Mode::ApiKey => session_id(headers).is_some_and(|id| st.logins.touch_session(&id)),
        Mode::OneApi => headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| st.logins.token_valid(token)),
    };
    if ok {
        return None;
    }
    Some(match mode {
        Mode::ApiKey => error(
            401,
            "SESSION_NOT_VALID",
            "Session is not valid. Please log in again",
        ),
        Mode::OneApi => error(
            401,
            "UNAUTHORIZED",
            "The access token is invalid or expired",
        ),
    })
}

fn session_id(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("JSESSIONID="))
        .map(str::to_string)
        .next()
}

/// `POST` (login) and `DELETE` (logout) of `/api/v1/authenticatedSession`.
fn session(
    shared: &Shared,
    method: &Method,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let mut st = shared.swept();
    if method == Method::POST {
        let login: Option<SessionLogin> = serde_json::from_slice(body).ok();
        match login.and_then(|l| st.logins.log_in(&shared.creds, &l)) {
            Some(id) => {
                st.stats.logins += 1;
                let mut resp = response(
                    200,
                    json!({"authType": "ADMIN_LOGIN", "obfuscateApiKey": false,
                           "passwordExpiryTime": 0, "passwordExpiryDays": 0}),
                );
                if let Ok(cookie) =
                    HeaderValue::from_str(&format!("JSESSIONID={id}; Path=/; Secure; HttpOnly"))
                {
                    resp.headers_mut().insert(hyper::header::SET_COOKIE, cookie);
                }
                resp
            }
            None => {
                st.stats.failed_logins += 1;
                error(
                    400,
                    "INVALID_USERNAME_OR_PASSWORD",
                    "Invalid username or password",
                )
            }
        }
    } else if method == Method::DELETE {
        match session_id(headers) {
            Some(id) if st.logins.log_out(&id) => {
                st.stats.logouts += 1;
                st.end_sessions_activation();
                response(200, json!({}))
            }
            _ => error(401, "SESSION_NOT_VALID", "Session is not valid"),
        }
    } else {
        error(405, "METHOD_NOT_ALLOWED", "Method not allowed")
    }
}

/// The OneAPI token endpoint.
fn token(shared: &Shared, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut st = shared.state();
    match st
        .logins
        .issue_token(&shared.creds, &form, shared.token_lifetime)
    {
        Ok(token) => {
            st.stats.tokens += 1;
            let expires_in = shared.token_lifetime.as_secs_f64().ceil() as u64;
            response(
                200,
                json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
            )
        }
        Err((status, err, description)) => {
            st.stats.failed_logins += 1;
            response(
                status,
                json!({"error": err, "error_description": description}),
            )
        }
    }
}

fn fault_response(st: &mut State, mode: Mode, fault: ZiaFault) -> Response<Body> {
    match fault {
        ZiaFault::RateLimit => {
            st.stats.throttled += 1;
            rate_limited(mode, "1/SECOND", Duration::ZERO)
        }
        ZiaFault::EditLock => {
            st.stats.edit_locks += 1;
            error(
                409,
                "EDIT_LOCK_NOT_AVAILABLE",
                "Another admin session holds the edit lock",
            )
        }
        ZiaFault::ReadOnly => {
            let mut resp = error(403, "", "The service is in read-only mode for maintenance");
            resp.headers_mut()
                .insert(ZSCALER_MODE, HeaderValue::from_static("read-only"));
            resp
        }
        ZiaFault::Forbidden => error(
            403,
            "STATE_READONLY",
            "The admin role has read-only access to URL categories",
        ),
        ZiaFault::OrgBarrier(status) => {
            st.stats.load_shed += 1;
            error(status, "", "Failed during enter Org barrier")
        }
        ZiaFault::AccessBlocked => {
            st.stats.load_shed += 1;
            error(401, "", "Resource Access Blocked")
        }
        ZiaFault::Status(code) => error(code, "INTERNAL_ERROR", "Injected failure"),
    }
}

/// ZIA's 429: the wait in the body; on OneAPI also `Retry-After` and `x-ratelimit-reset`.
fn rate_limited(mode: Mode, limit: &str, wait: Duration) -> Response<Body> {
    let mut resp = response(
        429,
        json!({"message": format!("Rate Limit ({limit}) exceeded"),
               "Retry-After": format!("{} seconds", wait.as_secs())}),
    );
    if mode == Mode::OneApi {
        let secs = HeaderValue::from(wait.as_secs_f64().ceil() as u64);
        resp.headers_mut().insert("retry-after", secs.clone());
        resp.headers_mut().insert("x-ratelimit-reset", secs);
    }
    resp
}

/// An error answer: `{"code": ..., "message": ...}`, or `{"message": ...}` alone when
/// `code` is empty, as ZIA sometimes answers.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    if code.is_empty() {
        return response(status, json!({"message": message}));
    }
    response(status, json!({"code": code, "message": message}))
}

pub(crate) fn response(status: u16, body: Value) -> Response<Body> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Normal answers say the tenant takes writes; the read-only fault says otherwise.
    resp.headers_mut()
        .insert(ZSCALER_MODE, HeaderValue::from_static("read-write"));
    if !body.is_null() {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    resp
}
