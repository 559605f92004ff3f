//! Which ZIA answers may be tried again, and after what wait: [`classify`] sorts an answer
//! into a [`Retry`] (429 throttled, the edit lock busy, load shedding and 5xx transient,
//! the rest final); the client's loop decides how often and how long from that.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::login;
use crate::retry::Retry;

/// The longest wait a 429 may impose, so that a wrong value cannot stall the sync.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// What an answer allows: [`Retry::Throttled`] for 429 (with the wait it asks for),
/// [`Retry::Busy`] for 409 `EDIT_LOCK_NOT_AVAILABLE`, [`Retry::Transient`] for load
/// shedding (see [`is_load_shedding`]) and 5xx, [`Retry::Never`] for the rest, success
/// included: the caller reads those as answers.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Retry::Throttled {
            asked: rate_limit_wait(headers, body),
        };
    }
    if status == StatusCode::CONFLICT && error_code(body) == Some("EDIT_LOCK_NOT_AVAILABLE") {
        return Retry::Busy;
    }
    if is_load_shedding(status, body) || status.is_server_error() {
        return Retry::Transient { asked: None };
    }
    Retry::Never
}

/// The reason shown for a transient answer, with ZIA's own message.
pub fn transient_reason(status: StatusCode, body: &[u8]) -> String {
    let what = if is_load_shedding(status, body) {
        "ZIA is shedding load: HTTP"
    } else {
        "ZIA answered HTTP"
    };
    format!(
        "{what} {}: {}",
        status.as_u16(),
        login::refusal_message(body)
    )
}

/// ZIA's `code` of an error answer.
fn error_code(body: &[u8]) -> Option<&str> {
    // A borrowed parse: the code is a plain string.
    #[derive(serde::Deserialize)]
    struct Code<'a> {
        code: Option<&'a str>,
    }
    serde_json::from_slice::<Code>(body).ok()?.code
}

/// ZIA's `message` of an error answer.
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message {
        message: Option<String>,
    }
    serde_json::from_slice::<Message>(body).ok()?.message
}

/// ZIA shedding load, not refusing: 409 or 412 "Failed during enter Org barrier", 401
/// "Resource Access Blocked". The official Go SDK retries them with backoff.
fn is_load_shedding(status: StatusCode, body: &[u8]) -> bool {
    let says = |text: &str| error_message(body).is_some_and(|m| m.contains(text));
    match status {
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => {
            says("Failed during enter Org barrier")
        }
        StatusCode::UNAUTHORIZED => says("Resource Access Blocked"),
        _ => false,
    }
}

/// The wait a 429 answer asks for: the body's `Retry-After` field (`"0 seconds"`), else
/// the `Retry-After` header, else `x-ratelimit-reset` (seconds), whichever is present
/// first. `None` when none is readable.
pub fn rate_limit_wait(headers: &HeaderMap, body: &[u8]) -> Option<Duration> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("Retry-After").cloned())
        .and_then(|v| match v {
            serde_json::Value::String(s) => parse_wait(&s),
            serde_json::Value::Number(n) => n.as_u64().map(Duration::from_secs),
            _ => None,
        });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_wait)
    };
    from_body
        .or_else(|| header("retry-after"))
        .or_else(|| header("x-ratelimit-reset"))
        .map(|wait| wait.min(MAX_WAIT))
}

/// Reads a wait: `"0 seconds"`, `"1 second"`, `"12"`, `"12s"`.
pub fn parse_wait(value: &str) -> Option<Duration> {
    let value = value.trim();
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits_end);
    let seconds: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => Some(Duration::from_secs(seconds)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn classify_table() {
        let none = HeaderMap::new();
        let shed = br#"{"message":"Failed during enter Org barrier"}"#;
        let locked = br#"{"code":"EDIT_LOCK_NOT_AVAILABLE","message":"locked"}"#;
        let blocked = br#"{"message":"Resource Access Blocked"}"#;
        let cases: &[(u16, &[u8], Retry)] = &[
            (200, b"[]", Retry::Never),
            (204, b"", Retry::Never),
            (400, br#"{"code":"INVALID_INPUT_ARGUMENT"}"#, Retry::Never),
            (401, br#"{"message":"bad session"}"#, Retry::Never),
            (401, blocked, Retry::Transient { asked: None }),
            (403, b"{}", Retry::Never),
            (409, locked, Retry::Busy),
            (409, shed, Retry::Transient { asked: None }),
            (409, br#"{"code":"DUPLICATE_ITEM"}"#, Retry::Never),
            (412, shed, Retry::Transient { asked: None }),
            (
                429,
                br#"{"Retry-After":"3 seconds"}"#,
                Retry::Throttled {
                    asked: Some(Duration::from_secs(3)),
                },
            ),
            (429, b"", Retry::Throttled { asked: None }),
            (500, b"", Retry::Transient { asked: None }),
            (503, b"<html>", Retry::Transient { asked: None }),
        ];
        for (code, body, expected) in cases {
            let status = StatusCode::from_u16(*code).unwrap();
            assert_eq!(&classify(status, &none, body), expected, "HTTP {code}");
        }
    }

    #[test]
    fn transient_reasons_name_the_kind() {
        let shed = br#"{"message":"Failed during enter Org barrier"}"#;
        assert!(transient_reason(StatusCode::CONFLICT, shed)
            .starts_with("ZIA is shedding load: HTTP 409"));
        assert!(transient_reason(StatusCode::BAD_GATEWAY, b"").starts_with("ZIA answered HTTP 502"));
    }

    #[test]
    fn body_field_first() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let body = br#"{"message": "Rate Limit (1/SECOND) exceeded", "Retry-After": "0 seconds"}"#;
        assert_eq!(rate_limit_wait(&headers, body), Some(Duration::ZERO));
        let body =
            br#"{"message": "Rate Limit (400/HOUR) exceeded", "Retry-After": "1790 seconds"}"#;
        assert_eq!(
            rate_limit_wait(&HeaderMap::new(), body),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn then_the_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(
            rate_limit_wait(&headers, b"not json"),
            Some(Duration::from_secs(3))
        );
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(
            rate_limit_wait(&headers, b"{}"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(rate_limit_wait(&HeaderMap::new(), b"{}"), None);
    }

    #[test]
    fn wait_spellings() {
        assert_eq!(parse_wait("0 seconds"), Some(Duration::ZERO));
        assert_eq!(parse_wait("1 second"), Some(Duration::from_secs(1)));
        assert_eq!(parse_wait(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_wait("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("3 minutes"), None);
    }
}
