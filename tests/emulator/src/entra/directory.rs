//! The emulated directory: registered applications, the checks of a token request
//! (tenant, grant, client, scope, credential, consent), and the access tokens issued.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};

use super::assertion::{unix_secs, verify_assertion};
use super::refusal::Refusal;
use super::{
    EntraApp, EntraConfig, Roles, TokenRequest, ASSERTION_TYPE, MCAS_RESOURCE, MCAS_SCOPE,
};
use crate::server::random_hex;

/// The directory's state: applications and the access tokens handed out.
pub(crate) struct Directory {
    pub(super) tenant_id: String,
    pub(super) tenant_domain: String,
    pub(super) lifetime: Duration,
    pub(super) apps: HashMap<String, Registered>,
    pub(super) tokens: HashMap<String, IssuedToken>,
}

pub(super) struct Registered {
    pub(super) app: EntraApp,
    pub(super) cert: Option<AppCertificate>,
}

/// What the assertion check needs of a certificate.
pub(super) struct AppCertificate {
    /// base64url SHA-1 of the DER (`x5t`).
    pub(super) sha1: String,
    /// base64url SHA-256 of the DER (`x5t#S256`).
    pub(super) sha256: String,
    /// The RSA public key, PKCS#1 DER.
    pub(super) public_key: Vec<u8>,
}

pub(super) struct IssuedToken {
    pub(super) client_id: String,
    pub(super) expires: Instant,
}

impl AppCertificate {
    pub(super) fn from_pem(pem: &str) -> Result<AppCertificate> {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| anyhow!("no CERTIFICATE in the PEM"))?
            .context("reading the certificate PEM")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow!("parsing the certificate: {e}"))?;
        let spki = &cert.tbs_certificate.subject_pki;
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            bail!("the certificate's key is not RSA");
        }
        Ok(AppCertificate {
            sha1: B64URL.encode(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                &der,
            )),
            sha256: B64URL.encode(ring::digest::digest(&ring::digest::SHA256, &der)),
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }
}

impl Directory {
    pub(crate) fn new(cfg: EntraConfig) -> Result<Directory> {
        let mut dir = Directory {
            tenant_id: cfg.tenant_id,
            tenant_domain: cfg.tenant_domain,
            lifetime: cfg.token_lifetime,
            apps: HashMap::new(),
            tokens: HashMap::new(),
        };
        for app in cfg.apps {
            dir.register(app)?;
        }
        Ok(dir)
    }

    /// Adds `app`, or replaces the one with its client id.
    pub(super) fn register(&mut self, app: EntraApp) -> Result<()> {
        let cert = match &app.certificate_pem {
            Some(pem) => Some(
                AppCertificate::from_pem(pem)
                    .with_context(|| format!("application {}", app.client_id))?,
            ),
            None => None,
        };
        self.apps
            .insert(app.client_id.clone(), Registered { app, cert });
        Ok(())
    }

    pub(super) fn app_mut(&mut self, client_id: &str) -> Result<&mut EntraApp> {
        self.apps
            .get_mut(client_id)
            .map(|r| &mut r.app)
            .ok_or_else(|| anyhow!("no application {client_id:?} is registered"))
    }

    /// The permissions behind an access token this directory issued, read from its
    /// application now; `None` when the token is unknown, expired, or its application gone.
    pub(crate) fn token_roles(&mut self, token: &str, now: Instant) -> Option<Roles> {
        let issued = self.tokens.get(token)?;
        if issued.expires <= now {
            self.tokens.remove(token);
            return None;
        }
        self.apps.get(&issued.client_id).map(|r| r.app.roles)
    }

    fn knows_tenant(&self, tenant: &str) -> bool {
        tenant == self.tenant_id || tenant.eq_ignore_ascii_case(&self.tenant_domain)
    }

    /// Checks a token request and, if it is granted, issues an access token.
    pub(super) fn grant(&mut self, req: &TokenRequest) -> Result<Value, Refusal> {
        if !self.knows_tenant(&req.tenant) {
            return Err(Refusal::tenant_not_found(&req.tenant));
        }
        let form = &req.form;
        match form.get("grant_type") {
            None => return Err(Refusal::missing("grant_type")),
            Some("client_credentials") => {}
            Some(other) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{other}'."),
                ))
            }
        }
        let Some(client_id) = form.get("client_id") else {
            return Err(Refusal::missing("client_id"));
        };
        let Some(registered) = self.apps.get(client_id) else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    req.tenant
                ),
            ));
        };
        check_scope(form.get("scope"))?;
        let app = &registered.app;
        match (form.get("client_secret"), form.get("client_assertion_type")) {
            (Some(_), Some(_)) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    7000216,
                    "Give either 'client_secret' or 'client_assertion', not both.".to_string(),
                ))
            }
            (Some(secret), None) => check_secret(app, secret)?,
            (None, Some(ASSERTION_TYPE)) => {
                let Some(assertion) = form.get("client_assertion") else {
                    return Err(Refusal::missing("client_assertion"));
                };
                verify_assertion(
                    assertion,
                    registered.cert.as_ref(),
                    client_id,
                    &req.token_url,
                    SystemTime::now(),
                )?
            }
            (None, Some(other)) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    7000216,
                    format!("The client_assertion_type '{other}' is not supported: use '{ASSERTION_TYPE}'."),
                ))
            }
            (None, None) => {
                return Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".to_string(),
                ))
            }
        }
        if !app.consented {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{client_id}' named '{}'. Send an interactive authorization request for this user and resource.",
                    app.name
                ),
            ));
        }
        let roles = app.roles;
        Ok(self.issue(client_id, roles))
    }

    /// A JWT-shaped access token, remembered until it expires.
    fn issue(&mut self, client_id: &str, roles: Roles) -> Value {
        let now = Instant::now();
        self.tokens.retain(|_, t| t.expires > now);
        let secs = self.lifetime.as_secs().max(1);
        let iat = unix_secs(SystemTime::now());
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": "mcas-emulator"});
        let claims = json!({
            "aud": "https://api.cloudappsecurity.com",
            "iss": format!("https://sts.windows.net/{}/", self.tenant_id),
            "iat": iat, "nbf": iat, "exp": iat + secs,
            "appid": client_id, "tid": self.tenant_id, "roles": roles.names(),
            "uti": random_hex(8),
        });
        let signature: Vec<u8> = (0..64).map(|_| fastrand::u8(..)).collect();
        let token = format!(
            "{}.{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string()),
            B64URL.encode(signature)
        );
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                client_id: client_id.to_string(),
                expires: now + Duration::from_secs(secs),
            },
        );
        json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
    }
}

fn check_scope(scope: Option<&str>) -> Result<(), Refusal> {
    let Some(scope) = scope else {
        return Err(Refusal::missing("scope"));
    };
    if scope == MCAS_SCOPE {
        return Ok(());
    }
    match scope.strip_suffix("/.default") {
        Some(resource) if resource != MCAS_RESOURCE => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            format!("The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
        )),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        )),
    }
}

fn check_secret(app: &EntraApp, given: &str) -> Result<(), Refusal> {
    if app.secret.as_deref() != Some(given) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id),
        ));
    }
    if app.secret_expired {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            format!("The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", app.client_id),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::{OTHER_TEST_CERTIFICATE_PEM, TEST_CERTIFICATE_PEM};

    #[test]
    fn test_certificates_parse() {
        let a = AppCertificate::from_pem(TEST_CERTIFICATE_PEM).unwrap();
        let b = AppCertificate::from_pem(OTHER_TEST_CERTIFICATE_PEM).unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a.sha1.len(), 27);
        assert_eq!(a.sha256.len(), 43);
        assert!(AppCertificate::from_pem("no pem").is_err());
    }

    #[test]
    fn scopes() {
        assert!(check_scope(Some(MCAS_SCOPE)).is_ok());
        assert_eq!(check_scope(None).unwrap_err().code, 900144);
        assert_eq!(
            check_scope(Some("https://graph.microsoft.com/.default"))
                .unwrap_err()
                .code,
            500011
        );
        assert_eq!(
            check_scope(Some(
                "05a65629-4c1b-48c1-a78b-804c4abdd4af/Discovery.manage"
            ))
            .unwrap_err()
            .code,
            1002012
        );
    }
}
