//! ZIA's rules for the URLs of a custom category. One URL it refuses fails the whole
//! request, so each is checked here first; those that fail are dropped and counted.

use std::collections::BTreeSet;

/// The longest URL ZIA takes.
const MAX_URL: usize = 1024;
/// The longest host ZIA takes.
const MAX_HOST: usize = 255;
/// The longest label of a host.
const MAX_LABEL: usize = 63;
/// How many dropped URLs are kept as examples.
const EXAMPLES: usize = 5;
/// How much of a dropped URL an example shows.
const EXAMPLE_CHARS: usize = 80;

/// Why ZIA would refuse a URL, `None` if it takes it: lower-case ASCII (IDN as
/// punycode), no scheme, no `*`, at most 1,024 characters, a host of at most 255 with
/// labels of at most 63, and not a bare top-level domain. A leading dot (the domain and
/// its subdomains) is allowed.
pub fn refusal(url: &str) -> Option<&'static str> {
    if url.is_empty() {
        return Some("empty");
    }
    if url.len() > MAX_URL {
        return Some("longer than 1024 characters");
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("not printable ASCII (an IDN must be punycode)");
    }
    if url.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("upper-case letters");
    }
    if url.contains("://") {
        return Some("a scheme");
    }
    if url.contains('*') {
        return Some("a wildcard '*'");
    }
    let rest = url.strip_prefix('.').unwrap_or(url);
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return Some("a malformed port"),
        None => host_port,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Some("no host");
    }
    if host.len() > MAX_HOST {
        return Some("a host longer than 255 characters");
    }
    let mut labels = 0;
    for label in host.split('.') {
        if label.is_empty() {
            return Some("an empty label");
        }
        if label.len() > MAX_LABEL {
            return Some("a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some("a character not allowed in a host name");
        }
        labels += 1;
    }
    if labels < 2 {
        return Some("a bare top-level domain");
    }
    None
}

/// A list of URLs split into what ZIA takes and what it would refuse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The URLs ZIA takes, without duplicates, sorted.
    pub valid: Vec<String>,
    /// How many URLs were dropped.
    pub invalid: u64,
    /// The first few dropped URLs with the reason, escaped for printing.
    pub examples: Vec<String>,
}

/// Checks every URL of `urls`.
pub fn check_all(urls: &[String]) -> Checked {
    let mut valid = BTreeSet::new();
    let mut invalid = 0;
    let mut examples = Vec::new();
    for url in urls {
        match refusal(url) {
            None => {
                valid.insert(url.clone());
            }
            Some(reason) => {
                invalid += 1;
                if examples.len() < EXAMPLES {
                    let shown: String = url.chars().take(EXAMPLE_CHARS).collect();
                    examples.push(format!("{} ({reason})", shown.escape_debug()));
                }
            }
        }
    }
    Checked {
        valid: valid.into_iter().collect(),
        invalid,
        examples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_zia_takes() {
        for url in [
            "example.com",
            ".example.com",
            "www.example.com/path/page.html",
            "xn--bcher-kva.example",
            "example.com:8080/x",
            "10.1.2.3",
            "a-b_c.example.org",
        ] {
            assert_eq!(refusal(url), None, "{url}");
        }
        assert_eq!(refusal(&format!("{}.com", "a".repeat(63))), None);
    }

    #[test]
    fn refuses_what_zia_refuses() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_host = format!("{}com", "abcdefghi.".repeat(26));
        let long_url = format!("example.com/{}", "p".repeat(1013));
        for (url, why) in [
            ("", "empty"),
            ("Example.com", "upper-case letters"),
            ("https://example.com", "a scheme"),
            ("*.example.com", "a wildcard '*'"),
            ("com", "a bare top-level domain"),
            (".com", "a bare top-level domain"),
            (
                "bücher.example",
                "not printable ASCII (an IDN must be punycode)",
            ),
            (
                "exa mple.com",
                "not printable ASCII (an IDN must be punycode)",
            ),
            ("a..example.com", "an empty label"),
            (long_label.as_str(), "a label longer than 63 characters"),
            (long_host.as_str(), "a host longer than 255 characters"),
            (long_url.as_str(), "longer than 1024 characters"),
            ("exa!mple.com", "a character not allowed in a host name"),
        ] {
            assert_eq!(refusal(url), Some(why), "{url}");
        }
        assert_eq!(long_url.len(), 1025);
    }

    #[test]
    fn check_all_drops_counts_and_dedups() {
        let urls: Vec<String> = [
            "b.example.com",
            "Bad.com",
            "a.example.com",
            "b.example.com",
            "com",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let checked = check_all(&urls);
        assert_eq!(checked.valid, vec!["a.example.com", "b.example.com"]);
        assert_eq!(checked.invalid, 2);
        assert_eq!(
            checked.examples,
            vec![
                "Bad.com (upper-case letters)",
                "com (a bare top-level domain)"
            ]
        );
    }
}
