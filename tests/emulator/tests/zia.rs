//! The ZIA emulator over HTTPS: it enforces what ZIA documents, no more forgiving.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcas_emulator::zia::{
    obfuscate_api_key, ZiaCategory, ZiaConfig, ZiaEmulator, DEFAULT_API_KEY, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_USERNAME,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Zia {
    zia: ZiaEmulator,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(edit: impl FnOnce(&mut ZiaConfig)) -> Zia {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ZiaConfig::new(&dir.path().join("certs"));
    edit(&mut cfg);
    let zia = ZiaEmulator::start(cfg).await.unwrap();
    let ca = std::fs::read(zia.ca_pem_path()).unwrap();
    let http = mcas_emulator::client_trusting(&ca)
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Zia {
        zia,
        http,
        _dir: dir,
    }
}

async fn body_json(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Zia {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.zia.base_url())
    }

    /// Logs in with `api_key` as sent (already obfuscated); answers status, body, cookie.
    async fn login_raw(
        &self,
        api_key: &str,
        timestamp: u64,
        password: &str,
    ) -> (u16, Value, Option<String>) {
        let body = json!({"apiKey": api_key, "username": DEFAULT_USERNAME,
                          "password": password, "timestamp": timestamp.to_string()});
        let resp = self
            .http
            .post(self.url("/api/v1/authenticatedSession"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        let status = resp.status().as_u16();
        (status, body_json(resp).await, cookie)
    }

    async fn login(&self) -> String {
        let ts = now_ms();
        let key = obfuscate_api_key(DEFAULT_API_KEY, ts).unwrap();
        let (status, _, cookie) = self.login_raw(&key, ts, DEFAULT_PASSWORD).await;
        assert_eq!(status, 200);
        cookie.unwrap()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("cookie", cookie);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, body_json(resp).await)
    }

    /// `POST /status/activate` with `{}`: status, `x-zscaler-mode`, body.
    async fn activate_with_json(&self, cookie: &str) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .post(self.url("/api/v1/status/activate"))
            .header("cookie", cookie)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let mode = resp
            .headers()
            .get("x-zscaler-mode")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), mode, body_json(resp).await)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .http
            .post(self.zia.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, body_json(resp).await)
    }
}

#[tokio::test]
async fn api_key_login_checks_the_obfuscation_the_password_and_the_clock() {
    let zia = start(|_| {}).await;
    let ts = now_ms();
    let good = obfuscate_api_key(DEFAULT_API_KEY, ts).unwrap();
    let (status, body, _) = zia.login_raw(DEFAULT_API_KEY, ts, DEFAULT_PASSWORD).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_USERNAME_OR_PASSWORD"))
    );
    let (status, _, _) = zia.login_raw(&good, ts, "wrong").await;
    assert_eq!(status, 400);
    let old = ts - 3 * 3600 * 1000;
    let (status, _, _) = zia
        .login_raw(
            &obfuscate_api_key(DEFAULT_API_KEY, old).unwrap(),
            old,
            DEFAULT_PASSWORD,
        )
        .await;
    assert_eq!(status, 400, "a timestamp 3 h off is refused");
    let (status, _, cookie) = zia.login_raw(&good, ts, DEFAULT_PASSWORD).await;
    assert_eq!(status, 200);
    assert!(cookie.unwrap().starts_with("JSESSIONID="));
    let (status, body) = zia
        .send(
            reqwest::Method::GET,
            "/api/v1/status",
            "JSESSIONID=forged",
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("SESSION_NOT_VALID"))
    );
}

#[tokio::test]
async fn changes_stay_pending_until_activation_and_logout_activates_them() {
    let zia = start(|_| {}).await;
    let cookie = zia.login().await;
    let create = json!({"configuredName": "Mine", "superCategory": "USER_DEFINED",
        "customCategory": true, "type": "URL_CATEGORY", "urls": ["a.example.com"]});
    let (status, created) = zia
        .send(
            reqwest::Method::POST,
            "/api/v1/urlCategories",
            &cookie,
            Some(create),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert!(zia.zia.activated_category("Mine").is_none());
    assert!(zia.zia.pending());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, status) = zia
        .send(reqwest::Method::GET, "/api/v1/status", &cookie, None)
        .await;
    assert_eq!(status["status"], "PENDING");
    let (status, _) = zia
        .send(
            reqwest::Method::DELETE,
            "/api/v1/authenticatedSession",
            &cookie,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        zia.zia.activated_category("Mine").unwrap().urls,
        ["a.example.com"]
    );
    assert_eq!(zia.zia.stats().implicit_activations, 1);
}

#[tokio::test]
async fn an_idle_session_ends_and_its_changes_are_activated() {
    let zia = start(|cfg| cfg.session_idle = Duration::from_millis(300)).await;
    let id = zia.zia.seed(ZiaCategory::new("Mine", &["a.example.com"]));
    let cookie = zia.login().await;
    let add = json!({"configuredName": "Mine", "superCategory": "USER_DEFINED", "urls": ["b.example.com"]});
    let path = format!("/api/v1/urlCategories/{id}?action=ADD_TO_LIST");
    let (status, _) = zia
        .send(reqwest::Method::PUT, &path, &cookie, Some(add))
        .await;
    assert_eq!(status, 200);
    assert_eq!(zia.zia.activated_category("Mine").unwrap().urls.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(zia.zia.activated_category("Mine").unwrap().urls.len(), 2);
    let (status, _) = zia
        .send(reqwest::Method::GET, "/api/v1/status", &cookie, None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn writes_are_limited_to_one_a_second_with_zia_s_429() {
    let zia = start(|_| {}).await;
    let id = zia.zia.seed(ZiaCategory::new("Mine", &[]));
    let cookie = zia.login().await;
    let path = format!("/api/v1/urlCategories/{id}?action=ADD_TO_LIST");
    let add =
        |u: &str| json!({"configuredName": "Mine", "superCategory": "USER_DEFINED", "urls": [u]});
    let (first, _) = zia
        .send(
            reqwest::Method::PUT,
            &path,
            &cookie,
            Some(add("a.example.com")),
        )
        .await;
    let (second, body) = zia
        .send(
            reqwest::Method::PUT,
            &path,
            &cookie,
            Some(add("b.example.com")),
        )
        .await;
    assert_eq!((first, second), (200, 429));
    assert_eq!(
        body,
        json!({"message": "Rate Limit (1/SECOND) exceeded", "Retry-After": "0 seconds"})
    );
}

#[tokio::test]
async fn incremental_writes_need_the_names_and_a_full_put_clears_what_it_omits() {
    let zia = start(|cfg| cfg.rate_limits = false).await;
    let mut seeded = ZiaCategory::new("Mine", &["a.example.com"]);
    seeded.description = "by another admin".to_string();
    let id = zia.zia.seed(seeded);
    let cookie = zia.login().await;
    let path = format!("/api/v1/urlCategories/{id}");
    let (status, body) = zia
        .send(
            reqwest::Method::PUT,
            &format!("{path}?action=ADD_TO_LIST"),
            &cookie,
            Some(json!({"urls": ["b.example.com"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = zia
        .send(
            reqwest::Method::PUT,
            &format!("{path}?action=ADD_TO_LIST"),
            &cookie,
            Some(
                json!({"configuredName": "Mine", "superCategory": "USER_DEFINED",
                          "urls": ["b.example.com", "https://c.example.com"]}),
            ),
        )
        .await;
    assert_eq!(status, 400, "one bad URL refuses the request: {body}");
    assert_eq!(
        zia.zia.saved_category("Mine").unwrap().urls,
        ["a.example.com"]
    );
    let (status, _) = zia
        .send(reqwest::Method::PUT, &path, &cookie,
              Some(json!({"configuredName": "Mine", "superCategory": "USER_DEFINED", "urls": ["b.example.com"]})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(zia.zia.saved_category("Mine").unwrap().description, "");
}

#[tokio::test]
async fn the_token_endpoint_wants_the_audience_and_the_client_s_proof() {
    let zia = start(|cfg| cfg.token_lifetime = Duration::from_secs(1)).await;
    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    let (status, body) = zia.token(&base).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let mut with_audience = base.to_vec();
    with_audience.push(("audience", "https://api.zscaler.com"));
    let (status, body) = zia.token(&with_audience).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap().to_string();
    let status = |t: String| {
        let http = zia.http.clone();
        let url = zia.url("/zia/api/v1/status");
        async move { http.get(url).bearer_auth(t).send().await.unwrap().status() }
    };
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(token).await, StatusCode::UNAUTHORIZED);
    with_audience[2] = ("client_secret", "wrong");
    assert_eq!(zia.token(&with_audience).await.0, 401);
}

#[tokio::test]
async fn writes_need_a_json_media_type_and_incremental_ones_no_super_category() {
    let zia = start(|cfg| cfg.rate_limits = false).await;
    let id = zia.zia.seed(ZiaCategory::new("Mine", &["a.example.com"]));
    let cookie = zia.login().await;
    // Activation without a body, as a client that sends nothing would.
    let resp = zia
        .http
        .post(zia.url("/api/v1/status/activate"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        body_json(resp).await,
        json!({"message": "Unsupported Media Type"})
    );
    let (status, body) = zia
        .send(
            reqwest::Method::POST,
            "/api/v1/status/activate",
            &cookie,
            Some(json!({})),
        )
        .await;
    assert_eq!((status, body), (200, json!({"status": "ACTIVE"})));
    // As recorded against a real tenant: only the name and the URLs.
    let path = format!("/api/v1/urlCategories/{id}?action=ADD_TO_LIST");
    let (status, body) = zia
        .send(
            reqwest::Method::PUT,
            &path,
            &cookie,
            Some(json!({"configuredName": "Mine", "urls": ["b.example.com"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["superCategory"], "USER_DEFINED");
    let (status, body) = zia
        .send(reqwest::Method::PUT, &path, &cookie, Some(json!([1, 2])))
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"message": "Request body is invalid."}))
    );
}

#[tokio::test]
async fn load_shedding_and_a_403_without_the_maintenance_header() {
    use mcas_emulator::zia::{FaultScope, ZiaFault};
    let zia = start(|cfg| cfg.rate_limits = false).await;
    let cookie = zia.login().await;
    for (fault, status, message) in [
        (
            ZiaFault::OrgBarrier(409),
            409,
            "Failed during enter Org barrier",
        ),
        (
            ZiaFault::OrgBarrier(412),
            412,
            "Failed during enter Org barrier",
        ),
        (ZiaFault::AccessBlocked, 401, "Resource Access Blocked"),
    ] {
        zia.zia.push_fault(FaultScope::Writes, fault, 1);
        let (got, _, body) = zia.activate_with_json(&cookie).await;
        assert_eq!((got, body), (status, json!({ "message": message })));
    }
    assert_eq!(zia.zia.stats().load_shed, 3);
    zia.zia
        .push_fault(FaultScope::Writes, ZiaFault::Forbidden, 1);
    let (got, mode, body) = zia.activate_with_json(&cookie).await;
    assert_eq!((got, mode.as_deref()), (403, Some("read-write")));
    assert_eq!(body["code"], "STATE_READONLY");
    zia.zia.set_read_only(true);
    let (got, mode, body) = zia.activate_with_json(&cookie).await;
    assert_eq!((got, mode.as_deref()), (403, Some("read-only")));
    assert!(body.get("code").is_none(), "{body}");
}

#[tokio::test]
async fn deletes_are_heavy_one_a_minute() {
    let zia = start(|_| {}).await;
    let first = zia.zia.seed(ZiaCategory::new("One", &[]));
    let second = zia.zia.seed(ZiaCategory::new("Two", &[]));
    let cookie = zia.login().await;
    let (status, _) = zia
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/urlCategories/{first}"),
            &cookie,
            None,
        )
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = zia
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/urlCategories/{second}"),
            &cookie,
            None,
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["message"], "Rate Limit (1/MINUTE) exceeded");
}
