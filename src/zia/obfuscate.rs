//! The obfuscation of the cloud service API key that `POST /authenticatedSession` expects,
//! as Zscaler documents it.

/// The API key obfuscated with `timestamp_ms` (epoch milliseconds, the same value sent as
/// `timestamp`): with `n` the last 6 digits of the timestamp and `r` = `n >> 1` written
/// as 6 digits, the result is `key[d]` for each digit `d` of `n`, then `key[d + 2]` for
/// each digit `d` of `r`.
///
/// `None` when the key is shorter than 12 characters or not ASCII: ZIA's keys are 12
/// alphanumeric characters, and indexing anything else would not be what ZIA computes.
pub fn obfuscate_api_key(key: &str, timestamp_ms: u64) -> Option<String> {
    let key = key.as_bytes();
    if key.len() < 12 || !key.is_ascii() {
        return None;
    }
    let n = timestamp_ms % 1_000_000;
    let high = format!("{n:06}");
    let low = format!("{:06}", n >> 1);
    let mut out = String::with_capacity(12);
    for d in high.bytes() {
        out.push(key[usize::from(d - b'0')] as char);
    }
    for d in low.bytes() {
        out.push(key[usize::from(d - b'0') + 2] as char);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_vector() {
        assert_eq!(
            obfuscate_api_key("abcdefghijkl", 1389681124480).as_deref(),
            Some("bceeiacieegc")
        );
    }

    #[test]
    fn small_timestamps_are_zero_padded() {
        // n = 000042, r = 000021.
        assert_eq!(
            obfuscate_api_key("abcdefghijkl", 42).as_deref(),
            Some("aaaaeccccced")
        );
    }

    #[test]
    fn refuses_short_or_non_ascii_keys() {
        assert_eq!(obfuscate_api_key("abc", 1389681124480), None);
        assert_eq!(obfuscate_api_key("abcdefghijké", 1389681124480), None);
    }
}
