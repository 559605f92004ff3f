//! The check of a client assertion: the JWT a certificate credential signs instead of
//! sending a secret.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::Value;

use super::directory::AppCertificate;
use super::refusal::Refusal;
use super::NBF_SKEW;

/// Checks a client assertion: signed (RS256 or PS256) by the key of the certificate its
/// header names, for this client and this token URL, and within its validity.
pub(super) fn verify_assertion(
    assertion: &str,
    cert: Option<&AppCertificate>,
    client_id: &str,
    token_url: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts[..] else {
        return Err(Refusal::invalid_jwt("not three dot-separated parts"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, Refusal> {
        let bytes = B64URL
            .decode(part)
            .map_err(|_| Refusal::invalid_jwt(&format!("the {what} is not base64url")))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(Refusal::invalid_jwt(&format!(
                "the {what} is not a JSON object"
            ))),
        }
    };
    let header = decode(header_b64, "header")?;
    let claims = decode(claims_b64, "payload")?;
    let signature = B64URL
        .decode(sig_b64)
        .map_err(|_| Refusal::invalid_jwt("the signature is not base64url"))?;

    let algorithm: &dyn ring::signature::VerificationAlgorithm =
        match header["alg"].as_str().unwrap_or("") {
            "RS256" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            "PS256" => &ring::signature::RSA_PSS_2048_8192_SHA256,
            other => {
                return Err(Refusal::invalid_jwt(&format!(
                    "unsupported alg '{other}' (RS256 or PS256)"
                )))
            }
        };
    let (thumbprint, matches) = match (header["x5t#S256"].as_str(), header["x5t"].as_str()) {
        (Some(t), _) => (t, cert.is_some_and(|c| c.sha256 == t)),
        (None, Some(t)) => (t, cert.is_some_and(|c| c.sha1 == t)),
        (None, None) => ("", false),
    };
    let Some(cert) = cert.filter(|_| matches) else {
        return Err(Refusal::bad_signature(
            "The key was not found.",
            thumbprint,
            client_id,
        ));
    };
    let signed = &assertion[..header_b64.len() + 1 + claims_b64.len()];
    ring::signature::UnparsedPublicKey::new(algorithm, &cert.public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            Refusal::bad_signature(
                "The provided signature value did not match the expected signature value.",
                thumbprint,
                client_id,
            )
        })?;

    let (iss, sub) = (claims["iss"].as_str(), claims["sub"].as_str());
    if iss != Some(client_id) || sub != Some(client_id) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700021,
            format!("Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://aka.ms/certCreds. (iss {iss:?}, sub {sub:?}, client_id '{client_id}')"),
        ));
    }
    if claims["aud"].as_str() != Some(token_url) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://aka.ms/certCreds. (aud {}, expected '{token_url}')",
                claims["aud"]
            ),
        ));
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(Refusal::invalid_jwt("the 'jti' claim is required"));
    }
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_u64(), claims["exp"].as_u64()) else {
        return Err(Refusal::invalid_jwt(
            "the 'nbf' and 'exp' claims are required (seconds since the epoch)",
        ));
    };
    let now_secs = unix_secs(now);
    if exp <= now_secs || nbf > now_secs + NBF_SKEW.as_secs() {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!("Client assertion is not within its valid time range. Current time: {now_secs}, assertion valid from {nbf}, expiry time of assertion {exp}. Review the documentation at https://aka.ms/certCreds."),
        ));
    }
    Ok(())
}

pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}
