//! Who calls the MCAS API and what they may do: the legacy API token (`Token <t>` or
//! `Bearer <t>`) or an access token issued by the Entra token endpoint (`Bearer <t>`),
//! each with its permissions (`Discovery.manage`, `Discovery.read`).

use std::time::Instant;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::StatusCode;
use serde_json::json;

use crate::server::{json_response, Reply, Shared};
use crate::{Emulator, Endpoint, Roles};

/// A credential as sent in the `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Credential<'a> {
    bearer: bool,
    value: &'a str,
}

impl Shared {
    /// Authenticates the caller (401 as Django REST framework's token authentication
    /// answers it), then checks it holds the permission `endpoint` needs (403).
    pub(crate) fn authorize(&self, headers: &HeaderMap, endpoint: Endpoint) -> Result<(), Reply> {
        let credential = parse_header(headers)?;
        let roles = {
            let mut st = self.state();
            if credential.value == self.token {
                Some(st.token_roles)
            } else if credential.bearer {
                st.entra.token_roles(credential.value, Instant::now())
            } else {
                None
            }
        };
        let Some(roles) = roles else {
            return Err(unauthorized("Invalid token."));
        };
        let allowed = match endpoint {
            Endpoint::Streams => roles.discovery_read,
            _ => roles.discovery_manage,
        };
        if !allowed {
            return Err(Box::new(json_response(
                StatusCode::FORBIDDEN,
                json!({"detail": "You do not have permission to perform this action."}),
            )));
        }
        Ok(())
    }
}

fn unauthorized(detail: &str) -> Reply {
    let mut resp = json_response(StatusCode::UNAUTHORIZED, json!({ "detail": detail }));
    resp.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Token"));
    Box::new(resp)
}

/// Reads `Token <t>` or `Bearer <t>` (scheme case-insensitive).
fn parse_header(headers: &HeaderMap) -> Result<Credential<'_>, Reply> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    let Ok(value) = value.to_str() else {
        return Err(unauthorized(
            "Invalid token header. Token string should not contain invalid characters.",
        ));
    };
    let mut words = value.split_whitespace();
    let scheme = words.next().unwrap_or("");
    let bearer = scheme.eq_ignore_ascii_case("bearer");
    if !bearer && !scheme.eq_ignore_ascii_case("token") {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    }
    match (words.next(), words.next()) {
        (None, _) => Err(unauthorized(
            "Invalid token header. No credentials provided.",
        )),
        (Some(_), Some(_)) => Err(unauthorized(
            "Invalid token header. Token string should not contain spaces.",
        )),
        (Some(value), None) => Ok(Credential { bearer, value }),
    }
}

impl Emulator {
    /// Changes the permissions of the legacy API token (default both), e.g. to make the
    /// data sources list answer 403.
    pub fn set_token_roles(&self, roles: Roles) {
        self.inner.state().token_roles = roles;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn header_schemes() {
        let cred = |v: &str| {
            parse_header(&headers(v))
                .ok()
                .map(|c| (c.bearer, c.value.to_string()))
        };
        assert_eq!(cred("Token abc"), Some((false, "abc".into())));
        assert_eq!(cred("token abc"), Some((false, "abc".into())));
        assert_eq!(cred("Bearer abc"), Some((true, "abc".into())));
        for bad in ["Token", "Token abc abc", "Basic abc", "abc"] {
            let r = parse_header(&headers(bad)).unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        }
        assert!(parse_header(&HeaderMap::new()).is_err());
    }
}
