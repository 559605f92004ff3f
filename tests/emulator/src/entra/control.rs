//! The control API of the emulated directory, under `/_emulator/entra`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{EntraApp, Roles};
use crate::server::{json_response, Body, Shared};

/// The control API under `/_emulator/entra`: `GET` (tenant and applications), `POST
/// apps` (register), `DELETE apps/ID`, `POST apps/ID/expire_secret`, `POST
/// apps/ID/revoke_consent`, `POST apps/ID/roles`, `POST token_lifetime`.
pub(crate) fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let ok = |v: Value| json_response(StatusCode::OK, v);
    let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, json!({ "error": msg }));
    let sub = path
        .trim_start_matches("/_emulator/entra")
        .trim_matches('/');
    let segments: Vec<&str> = sub.split('/').filter(|s| !s.is_empty()).collect();
    let mut st = shared.state();
    let dir = &mut st.entra;
    let result: Result<Value> = match (method, segments.as_slice()) {
        (&Method::GET, []) => Ok(json!({
            "tenant_id": dir.tenant_id,
            "tenant_domain": dir.tenant_domain,
            "token_lifetime_secs": dir.lifetime.as_secs(),
            "apps": dir.apps.values().map(|r| {
                let a = &r.app;
                json!({"client_id": a.client_id, "name": a.name, "has_secret": a.secret.is_some(),
                       "secret_expired": a.secret_expired, "has_certificate": r.cert.is_some(),
                       "roles": a.roles, "consented": a.consented})
            }).collect::<Vec<_>>(),
        })),
        (&Method::POST, ["apps"]) => serde_json::from_slice::<EntraApp>(body)
            .map_err(anyhow::Error::from)
            .and_then(|app| {
                let id = app.client_id.clone();
                dir.register(app).map(|()| json!({ "registered": id }))
            }),
        (&Method::DELETE, ["apps", id]) => match dir.apps.remove(*id) {
            Some(_) => Ok(json!({ "removed": id })),
            None => Err(anyhow!("no application {id:?} is registered")),
        },
        (&Method::POST, ["apps", id, "expire_secret"]) => dir.app_mut(id).map(|a| {
            a.secret_expired = true;
            json!({ "secret_expired": id })
        }),
        (&Method::POST, ["apps", id, "revoke_consent"]) => dir.app_mut(id).map(|a| {
            a.consented = false;
            json!({ "consent_revoked": id })
        }),
        (&Method::POST, ["apps", id, "roles"]) => serde_json::from_slice::<Roles>(body)
            .map_err(anyhow::Error::from)
            .and_then(|roles| {
                dir.app_mut(id).map(|a| {
                    a.roles = roles;
                    json!({ "roles": roles })
                })
            }),
        (&Method::POST, ["token_lifetime"]) => {
            #[derive(Deserialize)]
            struct Lifetime {
                secs: u64,
            }
            serde_json::from_slice::<Lifetime>(body)
                .map_err(anyhow::Error::from)
                .map(|l| {
                    dir.lifetime = Duration::from_secs(l.secs);
                    json!({ "token_lifetime_secs": l.secs })
                })
        }
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown control endpoint", "endpoints": [
                    "GET /_emulator/entra", "POST /_emulator/entra/apps",
                    "DELETE /_emulator/entra/apps/ID", "POST /_emulator/entra/apps/ID/expire_secret",
                    "POST /_emulator/entra/apps/ID/revoke_consent", "POST /_emulator/entra/apps/ID/roles",
                    "POST /_emulator/entra/token_lifetime"]}),
            )
        }
    };
    match result {
        Ok(v) => ok(v),
        Err(e) => bad(format!("{e:#}")),
    }
}
