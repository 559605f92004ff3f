//! When to try a ZIA request again: the wait a 429 asks for, and a bounded exponential
//! backoff for 5xx answers and connection errors.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// The longest wait a 429 may impose, so that a wrong value cannot stall the sync.
const MAX_WAIT: Duration = Duration::from_secs(300);

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
