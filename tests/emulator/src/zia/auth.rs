//! The two logins ZIA takes: the API key login (obfuscated key, admin and password, a
//! JSESSIONID session that ends after idle minutes) and OneAPI client credentials (a
//! client secret or an RS256 client assertion, for a bearer token of limited life).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Deserialize;

/// The audience OneAPI requires, of the token request and of client assertions.
pub const ONEAPI_AUDIENCE: &str = "https://api.zscaler.com";
/// How far the login timestamp may be from the emulator's clock.
const TIMESTAMP_SKEW: Duration = Duration::from_secs(2 * 3600);

/// The key obfuscated with the timestamp, as ZIA documents it.
pub fn obfuscate(key: &str, timestamp_ms: u64) -> Option<String> {
    let key = key.as_bytes();
    if key.len() < 12 || !key.is_ascii() {
        return None;
    }
    let n = timestamp_ms % 1_000_000;
    let digits = format!("{n:06}{:06}", n >> 1);
    let out = digits
        .bytes()
        .enumerate()
        .map(|(i, d)| {
            let d = usize::from(d - b'0');
            key[if i < 6 { d } else { d + 2 }] as char
        })
        .collect();
    Some(out)
}

/// The body of `POST /api/v1/authenticatedSession`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionLogin {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    timestamp: String,
}

/// The accepted credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub api_key: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_public_key_pem: Option<String>,
}

/// Live sessions and tokens.
#[derive(Debug, Default)]
pub struct Logins {
    /// JSESSIONID -> last use.
    sessions: HashMap<String, Instant>,
    /// Access token -> end of life.
    tokens: HashMap<String, Instant>,
    /// Client assertion ids already used.
    used_jti: HashSet<String>,
}

/// Why a token request is refused: OAuth's `error` and `error_description`.
pub type OAuthRefusal = (u16, &'static str, String);

impl Logins {
    /// Checks an API key login; answers the new session id.
    pub fn log_in(&mut self, creds: &Credentials, login: &SessionLogin) -> Option<String> {
        let timestamp: u64 = login.timestamp.parse().ok()?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        if now_ms.abs_diff(timestamp) > TIMESTAMP_SKEW.as_millis() as u64 {
            return None;
        }
        let expected = obfuscate(&creds.api_key, timestamp)?;
        if login.api_key != expected
            || login.username != creds.username
            || login.password != creds.password
        {
            return None;
        }
        let id = format!("{:032X}", fastrand::u128(..));
        self.sessions.insert(id.clone(), Instant::now());
        Some(id)
    }

    /// Ends the sessions idle longer than `idle`; answers how many ended.
    pub fn expire_idle(&mut self, idle: Duration) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, last| last.elapsed() < idle);
        before - self.sessions.len()
    }

    /// Ends every session now (as a timeout would); answers how many ended.
    pub fn end_all_sessions(&mut self) -> usize {
        let ended = self.sessions.len();
        self.sessions.clear();
        ended
    }

    /// Whether `id` is a live session; marks it used.
    pub fn touch_session(&mut self, id: &str) -> bool {
        match self.sessions.get_mut(id) {
            Some(last) => {
                *last = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Ends session `id`; whether it was live.
    pub fn log_out(&mut self, id: &str) -> bool {
        self.sessions.remove(id).is_some()
    }

    /// Whether `token` is a live access token.
    pub fn token_valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|end| Instant::now() < *end)
    }

    /// Ends every token now.
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Checks a token request (form fields); answers a new token valid for `lifetime`.
    pub fn issue_token(
        &mut self,
        creds: &Credentials,
        form: &HashMap<String, String>,
        lifetime: Duration,
    ) -> Result<String, OAuthRefusal> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        if field("grant_type") != "client_credentials" {
            return Err((
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials".into(),
            ));
        }
        if field("audience") != ONEAPI_AUDIENCE {
            return Err((
                400,
                "invalid_request",
                format!("audience must be {ONEAPI_AUDIENCE}"),
            ));
        }
        let invalid_client = |why: &str| (401, "invalid_client", why.to_string());
        if field("client_id") != creds.client_id {
            return Err(invalid_client("unknown client"));
        }
        if let Some(secret) = form.get("client_secret") {
            if creds.client_secret.as_deref() != Some(secret.as_str()) {
                return Err(invalid_client("client authentication failed"));
            }
        } else if form.contains_key("client_assertion") {
            if field("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            {
                return Err((
                    400,
                    "invalid_request",
                    "unsupported client_assertion_type".into(),
                ));
            }
            let jti = verify_assertion(creds, field("client_assertion"))
                .map_err(|why| invalid_client(&why))?;
            if !self.used_jti.insert(jti) {
                return Err(invalid_client("client assertion replayed (jti)"));
            }
        } else {
            return Err(invalid_client("no client authentication"));
        }
        let token = format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..));
        self.tokens.insert(token.clone(), Instant::now() + lifetime);
        Ok(token)
    }
}

#[derive(Deserialize)]
struct AssertionHeader {
    alg: String,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    jti: Option<String>,
}

/// How far past `exp` an assertion is still taken (clock skew).
const ASSERTION_LEEWAY_SECS: u64 = 5;

/// Checks an RS256 client assertion against the configured public key: signature,
/// `exp`, `aud`, `iss` = `sub` = client id, a `jti`. Answers the `jti`.
fn verify_assertion(creds: &Credentials, jwt: &str) -> Result<String, String> {
    let pem = creds
        .client_public_key_pem
        .as_deref()
        .ok_or("no public key registered for the client")?;
    let public_key =
        rsa_public_key(pem).map_err(|e| format!("the registered public key is unusable: {e}"))?;
    let refused = |why: &str| format!("client assertion refused: {why}");
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(refused("not three dot-separated parts"));
    };
    let decode = |part: &str| B64URL.decode(part).map_err(|_| refused("not base64url"));
    let header: AssertionHeader = serde_json::from_slice(&decode(header_b64)?)
        .map_err(|e| refused(&format!("header: {e}")))?;
    if header.alg != "RS256" {
        return Err(refused(&format!("alg {:?} is not RS256", header.alg)));
    }
    let signed = &jwt[..header_b64.len() + 1 + claims_b64.len()];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &public_key,
    )
    .verify(signed.as_bytes(), &decode(signature_b64)?)
    .map_err(|_| refused("InvalidSignature"))?;
    let claims: AssertionClaims = serde_json::from_slice(&decode(claims_b64)?)
        .map_err(|e| refused(&format!("claims (exp, aud, iss, sub are required): {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if claims.exp + ASSERTION_LEEWAY_SECS < now {
        return Err(refused("ExpiredSignature"));
    }
    if claims.aud != ONEAPI_AUDIENCE {
        return Err(refused("InvalidAudience"));
    }
    if claims.iss != creds.client_id || claims.sub != creds.client_id {
        return Err("client assertion iss and sub must be the client id".to_string());
    }
    claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or_else(|| "client assertion without jti".to_string())
}

/// The PKCS#1 RSAPublicKey inside a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM, as `ring`
/// takes it.
fn rsa_public_key(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "PUBLIC KEY" {
        return Err(format!("a {} block, not a PUBLIC KEY", block.label));
    }
    let (_, spki) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
        x509_parser::error::X509Error,
    >>::from_der(&block.contents)
    .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err("not an RSA key".to_string());
    }
    Ok(spki.subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zia::{TEST_CLIENT_KEY_PEM, TEST_CLIENT_PUBLIC_KEY_PEM};

    fn credentials() -> Credentials {
        Credentials {
            username: String::new(),
            password: String::new(),
            api_key: String::new(),
            client_id: "client".to_string(),
            client_secret: None,
            client_public_key_pem: Some(TEST_CLIENT_PUBLIC_KEY_PEM.to_string()),
        }
    }

    /// An RS256 assertion over `claims`, signed with the well-known test key.
    fn signed(claims: &serde_json::Value) -> String {
        let (_, block) = x509_parser::pem::parse_x509_pem(TEST_CLIENT_KEY_PEM.as_bytes()).unwrap();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&block.contents).unwrap();
        let text = format!(
            "{}.{}",
            B64URL.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            B64URL.encode(claims.to_string())
        );
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            text.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{text}.{}", B64URL.encode(signature))
    }

    #[test]
    fn assertions_are_checked_for_signature_audience_expiry_and_client() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = |aud: &str, exp: u64, iss: &str| serde_json::json!({"iss": iss, "sub": iss, "aud": aud, "exp": exp, "jti": "j1"});
        let good = signed(&claims(ONEAPI_AUDIENCE, now + 60, "client"));
        assert_eq!(verify_assertion(&credentials(), &good).unwrap(), "j1");

        let (head, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", B64URL.encode([0u8; 256]));
        let err = verify_assertion(&credentials(), &forged).unwrap_err();
        assert!(err.contains("InvalidSignature"), "{err}");

        let cases = [
            (
                claims("https://elsewhere", now + 60, "client"),
                "InvalidAudience",
            ),
            (
                claims(ONEAPI_AUDIENCE, now - 60, "client"),
                "ExpiredSignature",
            ),
            (claims(ONEAPI_AUDIENCE, now + 60, "other"), "client id"),
        ];
        for (claims, expected) in cases {
            let err = verify_assertion(&credentials(), &signed(&claims)).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn documented_obfuscation_vector() {
        assert_eq!(
            obfuscate("abcdefghijkl", 1389681124480).as_deref(),
            Some("bceeiacieegc")
        );
    }
}
