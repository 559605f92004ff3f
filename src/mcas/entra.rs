//! Microsoft Entra application tokens for the MCAS API: the client credentials grant at
//! `{authority}/{tenant}/oauth2/v2.0/token`, proved by a client secret or by a client
//! assertion signed with the certificate's private key. One token is kept and shared by
//! every caller until shortly before it expires; the token endpoint's refusals become an
//! [`EntraError`] carrying the AADSTS code and what to do about it.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, EntraApp, EntraSecret, Secret};
use crate::jwt::{sign_rs256, RsaSigningKey};

/// The scope of the MCAS API ("Microsoft Cloud App Security") for client credentials.
pub const MCAS_SCOPE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default";

/// `client_assertion_type` of a certificate credential.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// A token is renewed this long before it expires (Entra's last about an hour)...
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// ...or, for short lifetimes, after this share of it (in fifths): 4/5 = 80 %.
const RENEW_FIFTHS: u32 = 4;

/// Token answers and error documents are small; anything longer is not Entra's.
const BODY_LIMIT: usize = 64 << 10;

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EntraError {
    /// Entra refused the request: the AADSTS code says why, `fix` what to do.
    #[error(
        "Microsoft Entra ID refused the application's token request (AADSTS{code}: {what}): {fix}"
    )]
    Refused {
        /// The AADSTS number, e.g. 7000215.
        code: u32,
        /// HTTP status of the answer.
        status: u16,
        /// What went wrong, in a few words.
        what: String,
        /// What to do about it.
        fix: String,
    },
    /// The endpoint answered something else than a token or an Entra error.
    #[error("the Entra token endpoint {url} answered HTTP {status}: {detail}")]
    Failed {
        url: String,
        status: u16,
        detail: String,
        /// 408, 429 or 5xx: worth trying again later.
        transient: bool,
    },
    /// No answer: connection, TLS or timeout.
    #[error("cannot reach the Entra token endpoint {url}: {cause}")]
    Unreachable { url: String, cause: String },
}

impl EntraError {
    /// The AADSTS code of a refusal.
    pub fn aadsts(&self) -> Option<u32> {
        match self {
            EntraError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later may help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            EntraError::Refused { .. } => false,
            EntraError::Failed { transient, .. } => *transient,
            EntraError::Unreachable { .. } => true,
        }
    }

    /// An Entra error document's code, described with its fix.
    fn refused(status: u16, code: u32, description: &str) -> EntraError {
        let (what, fix) = match code {
            7000215 => ("the client secret is wrong", "generate a new client secret for the application (Entra admin center > App registrations > Certificates & secrets), then run `sudo nss configure-mcas` and `sudo nss restart`".to_string()),
            7000222 => ("the client secret has expired", "generate a new client secret for the application (Entra admin center > App registrations > Certificates & secrets), then run `sudo nss configure-mcas` and `sudo nss restart`".to_string()),
            700016 => ("no application with this client id in the tenant", "check mcas.client_id (the Application (client) ID of the app registration) and that mcas.tenant_id is the tenant it is registered in".to_string()),
            90002 => ("the tenant was not found", "check mcas.tenant_id (the Directory (tenant) ID, or a verified domain such as contoso.onmicrosoft.com) and mcas.authority (https://login.microsoftonline.us for GCC High and DoD)".to_string()),
            65001 => ("no administrator has consented to the application's permissions", "a global administrator must grant admin consent for the application's API permissions (App registrations > API permissions > Grant admin consent; Microsoft Cloud App Security: Discovery.manage and Discovery.read)".to_string()),
            700027 => ("the client assertion's signature was refused: the certificate in mcas.certificate_file is not registered for the application", "upload the certificate (its public part) to the app registration (Certificates & secrets > Certificates), or point mcas.certificate_file at the registered certificate and its private key".to_string()),
            700024 => ("the client assertion is outside its validity period", "check the appliance's clock (NTP): it must be within a few minutes of the real time".to_string()),
            500011 | 1002012 | 70011 => ("the MCAS API is not available for this application", "check that Microsoft Defender for Cloud Apps is licensed in the tenant and that the application has the API permissions of Microsoft Cloud App Security".to_string()),
            _ => ("see Entra's description", format!("{} (https://login.microsoftonline.com/error?code={code})", first_sentence(description))),
        };
        EntraError::Refused {
            code,
            status,
            what: what.to_string(),
            fix,
        }
    }
}

/// Entra's description without the trace and correlation ids that follow the message.
fn first_sentence(description: &str) -> String {
    let text = description
        .split(" Trace ID:")
        .next()
        .unwrap_or(description);
    let text = text.split_once(": ").map_or(text, |(_, rest)| rest);
    text.chars()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string()
}

/// What proves the application's identity at the token endpoint.
enum Proof {
    Secret(Secret),
    Certificate {
        // Boxed: an RSA key pair is large beside a secret.
        key: Box<RsaSigningKey>,
        /// base64url SHA-256 of the certificate's DER (`x5t#S256`).
        thumbprint: String,
    },
}

impl fmt::Debug for Proof {
    // Neither the secret nor the key, ever.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proof::Secret(_) => f.write_str("Proof::Secret"),
            Proof::Certificate { thumbprint, .. } => write!(f, "Proof::Certificate({thumbprint})"),
        }
    }
}

/// A token and when to renew it.
struct Cached {
    authorization: HeaderValue,
    renew_at: Instant,
    expires_at: Instant,
}

/// The access tokens of one Entra application for the MCAS API.
pub struct EntraTokens {
    http: Client,
    token_url: String,
    client_id: String,
    proof: Proof,
    timeout: Duration,
    /// The token in use; holding the lock while renewing makes every caller share one
    /// renewal.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraTokens")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl EntraTokens {
    /// The token source of `app`; reads and checks the certificate file if it has one.
    /// Token requests go through `http` and take at most `timeout`.
    pub fn new(
        app: &EntraApp,
        http: Client,
        timeout: Duration,
    ) -> Result<EntraTokens, ConfigError> {
        let proof = match &app.secret {
            EntraSecret::ClientSecret(secret) => Proof::Secret(secret.clone()),
            EntraSecret::Certificate(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::new(
                        "mcas.certificate_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                certificate_proof(&pem).map_err(|problem| {
                    ConfigError::new(
                        "mcas.certificate_file",
                        format!("{}: {problem}", path.display()),
                    )
                })?
            }
        };
        Ok(EntraTokens {
            http,
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                app.authority.trim_end_matches('/'),
                app.tenant_id
            ),
            client_id: app.client_id.clone(),
            proof,
            timeout,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// `Bearer <access token>`, marked sensitive: the token kept, or a new one when it is
    /// due for renewal. While a renewal fails for a passing reason, a token that has not
    /// expired yet still serves.
    pub async fn authorization(&self) -> Result<HeaderValue, EntraError> {
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.as_ref().filter(|c| now < c.renew_at) {
            return Ok(c.authorization.clone());
        }
        match self.request_token().await {
            Ok(fresh) => {
                let authorization = fresh.authorization.clone();
                *cached = Some(fresh);
                Ok(authorization)
            }
            Err(e) => match cached.as_ref() {
                Some(c) if e.is_transient() && Instant::now() < c.expires_at => {
                    tracing::warn!(error = %e, "renewing the Entra access token failed; the current one is still valid");
                    Ok(c.authorization.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Drops the token `authorization` after MCAS refused it, so that the next call asks
    /// for a new one.
    pub async fn forget(&self, authorization: &HeaderValue) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.authorization == authorization)
        {
            *cached = None;
        }
    }

    async fn request_token(&self) -> Result<Cached, EntraError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", MCAS_SCOPE.to_string()),
        ];
        match &self.proof {
            Proof::Secret(secret) => form.push(("client_secret", secret.expose().to_string())),
            Proof::Certificate { key, thumbprint } => {
                form.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
                form.push(("client_assertion", self.assertion(key, thumbprint)?));
            }
        }
        let unreachable = |e: reqwest::Error| EntraError::Unreachable {
            url: self.token_url.clone(),
            cause: crate::error_text::one_line(&e.without_url()),
        };
        let started = Instant::now();
        let mut answer = self
            .http
            .post(&self.token_url)
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = answer.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > BODY_LIMIT {
                return Err(EntraError::Failed {
                    url: self.token_url.clone(),
                    status,
                    detail: format!("an answer over {} KiB, not Entra's", BODY_LIMIT >> 10),
                    transient: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let document: Option<Value> = serde_json::from_slice(&body).ok();
        if (200..300).contains(&status) {
            let Some((token, lifetime)) = document.as_ref().and_then(token_of) else {
                return Err(EntraError::Failed {
                    url: self.token_url.clone(),
                    status,
                    detail: "the answer is not a Bearer token with expires_in".to_string(),
                    transient: false,
                });
            };
            let mut authorization =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    EntraError::Failed {
                        url: self.token_url.clone(),
                        status,
                        detail: "the access token has characters a header cannot carry".to_string(),
                        transient: false,
                    }
                })?;
            authorization.set_sensitive(true);
            let early = RENEW_MARGIN.min(lifetime * (5 - RENEW_FIFTHS) / 5);
            return Ok(Cached {
                authorization,
                renew_at: started + lifetime - early,
                expires_at: started + lifetime,
            });
        }
        let code = document.as_ref().and_then(aadsts_code);
        match (code, status) {
            (Some(code), 400..=499) => Err(EntraError::refused(
                status,
                code,
                document
                    .as_ref()
                    .and_then(|d| d["error_description"].as_str())
                    .unwrap_or(""),
            )),
            _ => Err(EntraError::Failed {
                url: self.token_url.clone(),
                status,
                detail: shown(&body),
                transient: matches!(status, 408 | 429 | 500..=599),
            }),
        }
    }

    /// A client assertion: RS256, `x5t#S256` = the certificate's thumbprint, for this
    /// client at this token URL, valid for a few minutes.
    fn assertion(&self, key: &RsaSigningKey, thumbprint: &str) -> Result<String, EntraError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let jti: String = (0..16)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        let claims = serde_json::json!({
            "aud": self.token_url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        sign_rs256(&[("x5t#S256", thumbprint)], &claims, key).map_err(|e| EntraError::Failed {
            url: self.token_url.clone(),
            status: 0,
            detail: format!("signing the client assertion failed: {e}"),
            transient: false,
        })
    }
}

/// The signing key and thumbprint of a PEM file holding a certificate and its RSA key.
fn certificate_proof(pem_text: &[u8]) -> Result<Proof, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    let certificate = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or("no CERTIFICATE in the file: it must hold the certificate and its private key")?;
    if !blocks
        .iter()
        .any(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
    {
        return Err("no PRIVATE KEY in the file: it must hold the certificate and its (unencrypted) RSA private key".into());
    }
    let key = RsaSigningKey::from_pem(pem_text)
        .map_err(|e| format!("the private key is not an RSA key: {e}"))?;
    Ok(Proof::Certificate {
        key: Box::new(key),
        thumbprint: B64URL.encode(Sha256::digest(certificate.contents())),
    })
}

/// The access token and lifetime of a token answer.
fn token_of(document: &Value) -> Option<(String, Duration)> {
    if !document["token_type"]
        .as_str()?
        .eq_ignore_ascii_case("bearer")
    {
        return None;
    }
    let token = document["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())?;
    // Entra sends a number; older endpoints sent the number as a string.
    let secs = match &document["expires_in"] {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((token.to_string(), Duration::from_secs(secs.max(1))))
}

/// The AADSTS code of an Entra error document: `error_codes[0]`, or the number after
/// `AADSTS` in the description.
fn aadsts_code(document: &Value) -> Option<u32> {
    if let Some(code) = document["error_codes"][0].as_u64() {
        return u32::try_from(code).ok();
    }
    let description = document["error_description"].as_str()?;
    let digits: String = description
        .strip_prefix("AADSTS")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A server's answer as one printable line, cut short.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_answers() {
        let (token, lifetime) = token_of(
            &json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ.a.b"}),
        )
        .unwrap();
        assert_eq!(
            (token.as_str(), lifetime),
            ("eyJ.a.b", Duration::from_secs(3599))
        );
        let (_, lifetime) =
            token_of(&json!({"token_type": "bearer", "expires_in": "3", "access_token": "t"}))
                .unwrap();
        assert_eq!(lifetime, Duration::from_secs(3));
        assert!(
            token_of(&json!({"token_type": "mac", "expires_in": 3, "access_token": "t"})).is_none()
        );
        assert!(token_of(&json!({"token_type": "Bearer", "access_token": "t"})).is_none());
    }

    #[test]
    fn aadsts_codes_and_fixes() {
        let doc = json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: x", "error_codes": [7000215]});
        assert_eq!(aadsts_code(&doc), Some(7000215));
        assert_eq!(
            aadsts_code(&json!({"error_description": "AADSTS90002: Tenant 'x' not found."})),
            Some(90002)
        );
        assert_eq!(aadsts_code(&json!({"error": "x"})), None);
        let e = EntraError::refused(401, 7000215, "");
        assert_eq!(e.aadsts(), Some(7000215));
        assert!(!e.is_transient());
        assert!(
            e.to_string().contains("generate a new client secret"),
            "{e}"
        );
        let e = EntraError::refused(
            400,
            123,
            "AADSTS123: Something odd. Trace ID: abc Correlation ID: d",
        );
        assert!(
            e.to_string().contains("Something odd.") && !e.to_string().contains("Trace ID"),
            "{e}"
        );
    }

    #[test]
    fn renewal_comes_early() {
        for (lifetime, renew) in [(3599, 3299), (3, 2), (10, 8)] {
            let lifetime = Duration::from_secs(lifetime);
            let early = RENEW_MARGIN.min(lifetime * (5 - RENEW_FIFTHS) / 5);
            assert_eq!((lifetime - early).as_secs(), renew);
        }
    }

    #[test]
    fn certificate_files() {
        let pem = mcas_pem();
        let Proof::Certificate { thumbprint, .. } = certificate_proof(pem.as_bytes()).unwrap()
        else {
            panic!("a certificate proof");
        };
        assert_eq!(thumbprint.len(), 43);
        let cert_only: String = pem
            .split("-----BEGIN PRIVATE KEY-----")
            .next()
            .unwrap()
            .to_string();
        assert!(certificate_proof(cert_only.as_bytes())
            .unwrap_err()
            .contains("no PRIVATE KEY"));
        assert!(certificate_proof(b"junk").is_err());
    }

    fn mcas_pem() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/emulator/testdata/entra-app.pem"
        ))
        .unwrap()
    }
}
