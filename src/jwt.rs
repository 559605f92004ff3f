//! RS256 JSON Web Tokens (RFC 7515, RFC 7518 section 3.3), signed with `ring`, the crypto
//! the TLS stack already links: the client assertions of an Entra certificate credential
//! and of the ZIA OneAPI private-key login. Only signing: the agent never verifies a JWT.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Serialize;

/// Why a key could not be read or a token not signed. The text never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The PEM text holds no usable RSA private key.
    #[error("{0}")]
    Key(String),
    /// Signing failed (the key pair was rejected by the signer).
    #[error("signing failed")]
    Sign,
}

/// An RSA private key for RS256. Its `Debug` shows only the modulus size.
pub struct RsaSigningKey(RsaKeyPair);

impl RsaSigningKey {
    /// The first RSA private key of a PEM text: `PRIVATE KEY` (PKCS#8) or
    /// `RSA PRIVATE KEY` (PKCS#1), unencrypted. Other blocks (a certificate) are skipped.
    pub fn from_pem(pem_text: &[u8]) -> Result<RsaSigningKey, JwtError> {
        let blocks =
            pem::parse_many(pem_text).map_err(|e| JwtError::Key(format!("not PEM ({e})")))?;
        let block = blocks
            .iter()
            .find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
            .ok_or_else(|| {
                JwtError::Key("no PRIVATE KEY block (an unencrypted RSA private key)".to_string())
            })?;
        let pair = match block.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
            _ => RsaKeyPair::from_der(block.contents()),
        }
        .map_err(|e| JwtError::Key(format!("not an RSA private key of 2048 to 8192 bits ({e})")))?;
        Ok(RsaSigningKey(pair))
    }
}

impl fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RsaSigningKey({} bits)",
            self.0.public().modulus_len() * 8
        )
    }
}

/// `header.claims.signature` in base64url: the header `{"alg":"RS256","typ":"JWT"}` with
/// `extra_header` fields added (such as `x5t#S256`), the claims as JSON, signed with `key`.
pub fn sign_rs256(
    extra_header: &[(&str, &str)],
    claims: &impl Serialize,
    key: &RsaSigningKey,
) -> Result<String, JwtError> {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), "RS256".into());
    header.insert("typ".into(), "JWT".into());
    for (name, value) in extra_header {
        header.insert((*name).into(), (*value).into());
    }
    // Serialising a map of strings and a `Serialize` struct of plain fields cannot fail
    // but for a claims type with a map of non-string keys: answered as a signing failure.
    let header = serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?;
    let claims = serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?;
    let signed = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
    let mut signature = vec![0; key.0.public().modulus_len()];
    key.0
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| JwtError::Sign)?;
    Ok(format!("{signed}.{}", B64URL.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    const KEY: &str = include_str!("../tests/emulator/testdata/entra-app.pem");

    #[test]
    fn signs_a_token_its_public_key_verifies() {
        let key = RsaSigningKey::from_pem(KEY.as_bytes()).unwrap();
        let jwt = sign_rs256(
            &[("x5t#S256", "thumb")],
            &serde_json::json!({"iss": "me"}),
            &key,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t#S256"], "thumb");
        let signature = B64URL.decode(parts[2]).unwrap();
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.0.public().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).unwrap();
        assert!(public.verify(b"other.text", &signature).is_err());
    }

    #[test]
    fn refuses_what_is_not_an_rsa_private_key() {
        let cert_only: String = KEY
            .split_inclusive('\n')
            .take_while(|line| !line.contains("PRIVATE KEY"))
            .collect();
        let err = RsaSigningKey::from_pem(cert_only.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");
        assert!(RsaSigningKey::from_pem(b"junk").is_err());
    }
}
