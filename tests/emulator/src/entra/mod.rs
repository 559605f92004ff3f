//! Microsoft Entra ID's token endpoint for the client credentials grant, as an MCAS
//! client uses it: `POST /{tenant}/oauth2/v2.0/token` with a client secret or with a
//! client assertion signed by the application's certificate. It answers an access token
//! that the MCAS API then accepts as `Authorization: Bearer` until it expires; refusals
//! are Entra's JSON with its `AADSTS` codes.

mod assertion;
mod control;
mod directory;
mod refusal;

use std::time::Duration;

use anyhow::{bail, Result};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::server::{self, json_response, Body, Shared};
use crate::Emulator;

pub(crate) use control::control;
pub(crate) use directory::Directory;
use refusal::Refusal;

/// The only scope the token endpoint grants: the MCAS API ("Microsoft Cloud App
/// Security") for the client credentials grant.
pub const MCAS_SCOPE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default";

/// The application id of the MCAS API, the resource part of [`MCAS_SCOPE`].
const MCAS_RESOURCE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af";

/// `client_assertion_type` of a certificate credential.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far in the future an assertion's `nbf` may be (clock skew Entra tolerates).
const NBF_SKEW: Duration = Duration::from_secs(300);

/// Token requests are small forms.
const FORM_LIMIT: usize = 64 << 10;

/// A self-signed certificate with its RSA private key (PEM, PKCS#8), for registering an
/// application with a certificate credential in tests.
pub const TEST_CERTIFICATE_PEM: &str = include_str!("../../testdata/entra-app.pem");

/// Another certificate and key, registered nowhere by default: an assertion signed with
/// it is refused (AADSTS700027).
pub const OTHER_TEST_CERTIFICATE_PEM: &str = include_str!("../../testdata/entra-other.pem");

/// The application permissions of the MCAS API that a credential holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Roles {
    /// `Discovery.manage`: upload_url, done_upload and the block script.
    pub discovery_manage: bool,
    /// `Discovery.read`: the data sources list.
    pub discovery_read: bool,
}

impl Roles {
    /// Both permissions.
    pub const ALL: Roles = Roles {
        discovery_manage: true,
        discovery_read: true,
    };
    /// Neither permission.
    pub const NONE: Roles = Roles {
        discovery_manage: false,
        discovery_read: false,
    };

    fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.discovery_manage {
            names.push("Discovery.manage");
        }
        if self.discovery_read {
            names.push("Discovery.read");
        }
        names
    }
}

impl Default for Roles {
    fn default() -> Roles {
        Roles::ALL
    }
}

/// An application registered in the emulated directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraApp {
    /// The application (client) id.
    pub client_id: String,
    /// Display name (in the AADSTS65001 message).
    #[serde(default = "default_app_name")]
    pub name: String,
    /// The client secret, if it has one.
    #[serde(default)]
    pub secret: Option<String>,
    /// The secret has expired (AADSTS7000222 when it is used).
    #[serde(default)]
    pub secret_expired: bool,
    /// The certificate credential (PEM; a private key beside it is ignored), if any.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// The MCAS API's application permissions it holds. Default both.
    #[serde(default)]
    pub roles: Roles,
    /// An administrator granted consent (else AADSTS65001). Default true.
    #[serde(default = "yes")]
    pub consented: bool,
}

fn default_app_name() -> String {
    "nss-agent".to_string()
}

fn yes() -> bool {
    true
}

impl EntraApp {
    /// An application with a client secret, both permissions, consented.
    pub fn with_secret(client_id: &str, secret: &str) -> EntraApp {
        EntraApp {
            client_id: client_id.to_string(),
            name: default_app_name(),
            secret: Some(secret.to_string()),
            secret_expired: false,
            certificate_pem: None,
            roles: Roles::ALL,
            consented: true,
        }
    }

    /// An application with a certificate credential, both permissions, consented.
    pub fn with_certificate(client_id: &str, certificate_pem: &str) -> EntraApp {
        EntraApp {
            secret: None,
            certificate_pem: Some(certificate_pem.to_string()),
            ..EntraApp::with_secret(client_id, "")
        }
    }
}

/// The emulated Entra directory (tenant).
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// The directory (tenant) id, accepted in the token URL.
    pub tenant_id: String,
    /// The tenant's domain, accepted in the token URL too.
    pub tenant_domain: String,
    /// Registered applications.
    pub apps: Vec<EntraApp>,
    /// Lifetime of the access tokens issued (`expires_in`). Default 3599 s.
    pub token_lifetime: Duration,
}

impl EntraConfig {
    /// The default tenant id.
    pub const TENANT_ID: &'static str = "8f1a3c52-6d4e-4b7a-9c0d-2e5f7a9b1c3d";
    /// The default tenant domain.
    pub const TENANT_DOMAIN: &'static str = "contoso.onmicrosoft.com";
}

impl Default for EntraConfig {
    fn default() -> EntraConfig {
        EntraConfig {
            tenant_id: Self::TENANT_ID.to_string(),
            tenant_domain: Self::TENANT_DOMAIN.to_string(),
            apps: Vec::new(),
            token_lifetime: Duration::from_secs(3599),
        }
    }
}

/// A token request as received.
struct TokenRequest {
    tenant: String,
    /// The URL the request addressed, what an assertion's `aud` must name.
    token_url: String,
    form: Form,
}

/// The form's fields (the first of each name).
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        server::param(&self.0, name).filter(|v| !v.is_empty())
    }
}

/// The tenant of a token endpoint path `/{tenant}/oauth2/v2.0/token`.
pub(crate) fn token_path_tenant(path: &str) -> Option<&str> {
    let tenant = path.strip_prefix('/')?.strip_suffix("/oauth2/v2.0/token")?;
    (!tenant.is_empty() && !tenant.contains('/')).then_some(tenant)
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    delay: Option<Duration>,
) -> (Response<Body>, u64) {
    let (parts, body) = req.into_parts();
    let body = match server::read_body(body, FORM_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let refusal = Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body could not be read or is too large.".to_string(),
            );
            return (refusal.response(), 0);
        }
    };
    let body_len = body.len() as u64;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if parts.method != Method::POST {
        let refusal = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST requests. Received a {} request.",
                parts.method
            ),
        );
        return (refusal.response(), body_len);
    }
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // Any other body is no form: as if no parameter were given.
    let fields = if is_form {
        server::parse_query(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let tenant = token_path_tenant(parts.uri.path()).unwrap_or("");
    let request = TokenRequest {
        tenant: tenant.to_string(),
        token_url: format!("https://{}{}", shared.host, parts.uri.path()),
        form: Form(fields),
    };
    let granted = shared.state().entra.grant(&request);
    match granted {
        Ok(answer) => (json_response(StatusCode::OK, answer), body_len),
        Err(refusal) => (refusal.response(), body_len),
    }
}

impl Emulator {
    /// The directory (tenant) id of the emulated Entra tenant.
    pub fn tenant_id(&self) -> String {
        self.inner.state().entra.tenant_id.clone()
    }

    /// `https://127.0.0.1:PORT`: what a client configures as the Entra authority.
    pub fn authority(&self) -> String {
        self.base_url()
    }

    /// The token endpoint of the emulated tenant (by its id).
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base_url(), self.tenant_id())
    }

    /// Registers `app`, replacing the one with the same client id. Fails on an
    /// unreadable certificate.
    pub fn register_app(&self, app: EntraApp) -> Result<()> {
        self.inner.state().entra.register(app)
    }

    /// Removes an application from the directory: its tokens stop working too.
    pub fn remove_app(&self, client_id: &str) -> Result<()> {
        match self.inner.state().entra.apps.remove(client_id) {
            Some(_) => Ok(()),
            None => bail!("no application {client_id:?} is registered"),
        }
    }

    /// Marks an application's client secret expired (AADSTS7000222 from now on).
    pub fn expire_secret(&self, client_id: &str) -> Result<()> {
        self.inner.state().entra.app_mut(client_id)?.secret_expired = true;
        Ok(())
    }

    /// Withdraws the administrator's consent (AADSTS65001 from now on).
    pub fn revoke_consent(&self, client_id: &str) -> Result<()> {
        self.inner.state().entra.app_mut(client_id)?.consented = false;
        Ok(())
    }

    /// Changes an application's permissions; API calls with its tokens see the change at
    /// once.
    pub fn set_app_roles(&self, client_id: &str, roles: Roles) -> Result<()> {
        self.inner.state().entra.app_mut(client_id)?.roles = roles;
        Ok(())
    }

    /// Changes the lifetime of the access tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner.state().entra.lifetime = lifetime;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths() {
        assert_eq!(
            token_path_tenant("/contoso.onmicrosoft.com/oauth2/v2.0/token"),
            Some("contoso.onmicrosoft.com")
        );
        assert_eq!(token_path_tenant("/oauth2/v2.0/token"), None);
        assert_eq!(token_path_tenant("/a/b/oauth2/v2.0/token"), None);
        assert_eq!(token_path_tenant("/a/oauth2/token"), None);
    }
}
