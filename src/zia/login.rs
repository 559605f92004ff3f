//! The two ways into ZIA: an API admin's session (API key login, JSESSIONID cookie) and a
//! OneAPI bearer token (OAuth2 client credentials, by secret or RS256 client assertion).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde::{Deserialize, Serialize};

use super::error::{LoginKind, ZiaError};
use super::obfuscate::obfuscate_api_key;
use crate::config::Secret;

/// The audience of every OneAPI token and client assertion.
pub const ONEAPI_AUDIENCE: &str = "https://api.zscaler.com";
/// How long a client assertion is valid.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
/// A token is renewed this long before it ends (or after four fifths of a shorter life).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// What authorises the API calls of one login.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The `JSESSIONID` cookie of an API key login.
    Session(Secret),
    /// A OneAPI access token, to be renewed at `renew_at`.
    Bearer { token: Secret, renew_at: Instant },
}

impl Credential {
    /// Whether it may still be used without renewing it first.
    pub fn is_fresh(&self) -> bool {
        match self {
            // The server tells when a session ended (401).
            Credential::Session(_) => true,
            Credential::Bearer { renew_at, .. } => Instant::now() < *renew_at,
        }
    }

    /// Adds the cookie or the Authorization header to a request.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credential::Session(cookie) => request.header(
                reqwest::header::COOKIE,
                format!("JSESSIONID={}", cookie.expose()),
            ),
            Credential::Bearer { token, .. } => request.bearer_auth(token.expose()),
        }
    }
}

/// The body of `POST /authenticatedSession`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest<'a> {
    api_key: String,
    username: &'a str,
    password: &'a str,
    timestamp: String,
}

impl<'a> SessionRequest<'a> {
    /// The login body for now: the key obfuscated with the current time in milliseconds.
    pub fn new(
        username: &'a str,
        password: &'a Secret,
        api_key: &Secret,
    ) -> Result<SessionRequest<'a>, ZiaError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let obfuscated =
            obfuscate_api_key(api_key.expose(), now_ms).ok_or(ZiaError::LoginRefused {
                login: LoginKind::ApiKey,
                status: 0,
                message: "zia.api_key is not a 12-character cloud service API key".to_string(),
            })?;
        Ok(SessionRequest {
            api_key: obfuscated,
            username,
            password: password.expose(),
            timestamp: now_ms.to_string(),
        })
    }
}

/// The session cookie of a successful API key login.
pub fn session_cookie(headers: &HeaderMap) -> Option<Credential> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.trim().strip_prefix("JSESSIONID="))
        .find(|value| !value.is_empty())
        .map(|value| Credential::Session(Secret::new(value)))
}

/// The answer of the OneAPI token endpoint.
#[derive(Deserialize)]
pub struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: u64,
}

impl TokenAnswer {
    /// The bearer credential, renewed a little before it ends.
    pub fn into_credential(self) -> Result<Credential, String> {
        if let Some(kind) = &self.token_type {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(format!("token_type {kind:?}, not Bearer"));
            }
        }
        if self.access_token.is_empty() {
            return Err("an empty access_token".to_string());
        }
        let lifetime = Duration::from_secs(self.expires_in);
        let margin = RENEW_MARGIN.min(lifetime / 5);
        Ok(Credential::Bearer {
            token: Secret::new(self.access_token),
            renew_at: Instant::now() + lifetime - margin,
        })
    }
}

/// The form fields of a token request (`client_secret` or a client assertion).
pub fn token_form(client_id: &str, proof: TokenProof) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", client_id.to_string()),
        ("audience", ONEAPI_AUDIENCE.to_string()),
    ];
    match proof {
        TokenProof::Secret(secret) => form.push(("client_secret", secret.expose().to_string())),
        TokenProof::Assertion(jwt) => {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ));
            form.push(("client_assertion", jwt));
        }
    }
    form
}

/// What proves the client's identity at the token endpoint.
pub enum TokenProof {
    Secret(Secret),
    /// A signed client assertion (a JWT; short-lived, but never logged either).
    Assertion(String),
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// An RS256 client assertion for `client_id`, signed with the PEM RSA key `pem`.
pub fn client_assertion(client_id: &str, pem: &[u8]) -> Result<String, ZiaError> {
    let key = crate::jwt::RsaSigningKey::from_pem(pem)
        .map_err(|e| ZiaError::PrivateKey(format!("not a PEM RSA private key ({e})")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: ONEAPI_AUDIENCE,
        iat: now,
        exp: now + ASSERTION_LIFETIME.as_secs(),
        jti: format!("{:032x}", fastrand::u128(..)),
    };
    crate::jwt::sign_rs256(&[], &claims, &key)
        .map_err(|e| ZiaError::PrivateKey(format!("cannot sign the client assertion ({e})")))
}

/// The message of a refused login: ZIA's `message` or OAuth's `error_description`.
pub fn refusal_message(body: &[u8]) -> String {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return String::from_utf8_lossy(body).chars().take(200).collect(),
    };
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => return format!("{code}: {message}"),
        (Some(code), None) => return code,
        (None, Some(message)) => return message,
        (None, None) => {}
    }
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error,
        _ => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn finds_the_session_cookie() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("other=1; Path=/"));
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=ABC123; Path=/; Secure; HttpOnly"),
        );
        match session_cookie(&headers) {
            Some(Credential::Session(cookie)) => assert_eq!(cookie.expose(), "ABC123"),
            other => panic!("{other:?}"),
        }
        assert!(session_cookie(&HeaderMap::new()).is_none());
    }

    #[test]
    fn short_tokens_are_renewed_before_they_end() {
        let answer = TokenAnswer {
            access_token: "tok".to_string(),
            token_type: Some("Bearer".to_string()),
            expires_in: 10,
        };
        match answer.into_credential().unwrap() {
            Credential::Bearer { renew_at, .. } => {
                let left = renew_at - Instant::now();
                assert!(left <= Duration::from_secs(8) && left > Duration::from_secs(7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusal_messages() {
        assert_eq!(
            refusal_message(br#"{"code":"INVALID_USERNAME_OR_PASSWORD","message":"Invalid"}"#),
            "INVALID_USERNAME_OR_PASSWORD: Invalid"
        );
        assert_eq!(
            refusal_message(br#"{"error":"invalid_client","error_description":"bad"}"#),
            "invalid_client: bad"
        );
    }
}
