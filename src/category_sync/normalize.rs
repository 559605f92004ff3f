//! The block script's body made into the custom URLs of a category.
//!
//! MCAS sends one domain a line; a leading dot means the domain and its subdomains (the
//! form Zscaler's custom URL categories use). The body is bytes from a remote service: a
//! line that is not a plain domain name is dropped and counted, never guessed at.

use std::collections::BTreeSet;

use idna::AsciiDenyList;

/// The longest domain name DNS can carry, without the leading dot.
const MAX_NAME: usize = 253;
/// The longest label DNS can carry.
const MAX_LABEL: usize = 63;
/// How many dropped lines are kept as examples for the administrator.
const EXAMPLES: usize = 5;
/// How much of a dropped line an example shows.
const EXAMPLE_CHARS: usize = 80;

/// The custom URLs a block script holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// Lower case, IDNA to ASCII, without duplicates, sorted; a leading dot kept as given.
    pub urls: Vec<String>,
    /// Lines dropped because they are not a domain name (blank lines are not counted).
    pub invalid: u64,
    /// The first few dropped lines, escaped for printing.
    pub examples: Vec<String>,
}

/// Reads a block script: one domain a line, LF or CRLF.
pub fn block_script(body: &[u8]) -> Normalized {
    let mut urls = BTreeSet::new();
    let mut invalid = 0;
    let mut examples = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match url(line) {
            Some(url) => {
                urls.insert(url);
            }
            None => {
                invalid += 1;
                if examples.len() < EXAMPLES {
                    examples.push(example(line));
                }
            }
        }
    }
    Normalized {
        urls: urls.into_iter().collect(),
        invalid,
        examples,
    }
}

/// One line as a custom URL: `example.com` or `.example.com`, or `None` when it is not a
/// domain name.
pub fn url(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let (dot, name) = match line.strip_prefix('.') {
        Some(name) => (".", name),
        None => ("", line),
    };
    // A fully qualified name's final dot says nothing more.
    let name = name.strip_suffix('.').unwrap_or(name);
    // Checked before IDNA, which would map some of these away (e.g. a full-width solidus
    // to '/'), and rejected anyway afterwards.
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return None;
    }
    // UTS #46: lower case, Unicode normalisation, Punycode; URL-forbidden characters
    // (scheme and path separators among them) refused.
    let ascii = idna::domain_to_ascii_cow(name.as_bytes(), AsciiDenyList::URL).ok()?;
    if ascii.len() > MAX_NAME {
        return None;
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    // A bare top-level domain ("com") would put a whole TLD into the category.
    if labels.len() < 2 || !labels.iter().all(|label| is_label(label)) {
        return None;
    }
    Some(format!("{dot}{ascii}"))
}

/// A DNS label: letters, digits, hyphens (not first or last) and underscores (which
/// some service names use), 1 to 63 of them.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A dropped line as the administrator sees it: printable, cut short.
fn example(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut shown: String = text.chars().take(EXAMPLE_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(body: &[u8]) -> Vec<String> {
        block_script(body).urls
    }

    #[test]
    fn keeps_the_leading_dot_sorts_and_dedupes() {
        let n = block_script(b".reddit.com\n.redd.it\nreddit.com\n.reddit.com\n.redd.it\n");
        assert_eq!(n.urls, [".redd.it", ".reddit.com", "reddit.com"]);
        assert_eq!(n.invalid, 0);
    }

    #[test]
    fn lower_case_whitespace_and_crlf() {
        let n = block_script(b"  .Reddit.COM\r\nReddit.com\r\n\r\n\t.EXAMPLE.org.\t\r\n\n");
        assert_eq!(n.urls, [".example.org", ".reddit.com", "reddit.com"]);
        assert_eq!(n.invalid, 0, "blank lines are not invalid");
    }

    #[test]
    fn internationalised_domains_become_punycode() {
        assert_eq!(
            urls(".bücher.example\nBÜCHER.example\n.xn--bcher-kva.example\nмосква.рф\n".as_bytes()),
            [
                ".xn--bcher-kva.example",
                "xn--80adxhks.xn--p1ai",
                "xn--bcher-kva.example"
            ]
        );
    }

    #[test]
    fn drops_and_counts_what_is_not_a_domain() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        let mut body = Vec::new();
        for line in [
            "https://reddit.com",
            "reddit.com/r/rust",
            "red dit.com",
            "reddit.com:443",
            "*.reddit.com",
            "red!dit.com",
            "-reddit.com",
            "reddit..com",
            "..reddit.com",
            ".",
            "com",
            "<html>",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        body.extend_from_slice(b"caf\xe9.example\n");
        body.extend_from_slice(b"good.example\n");
        let n = block_script(&body);
        assert_eq!(n.urls, ["good.example"]);
        assert_eq!(n.invalid, 15);
        assert_eq!(n.examples.len(), EXAMPLES);
        assert_eq!(n.examples[0], "https://reddit.com");
    }

    #[test]
    fn the_longest_names_pass() {
        let label = "a".repeat(63);
        assert!(url(format!("{label}.com").as_bytes()).is_some());
        let name = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "a".repeat(61));
        assert_eq!(name.len(), 253);
        assert!(url(name.as_bytes()).is_some());
        assert!(url(format!(".{name}").as_bytes()).is_some());
        assert!(url(format!("{name}a").as_bytes()).is_none());
    }

    #[test]
    fn examples_are_printable() {
        let n = block_script(b"bad\x1bline.com\n");
        assert_eq!(n.invalid, 1);
        assert_eq!(n.examples, ["bad\\u{1b}line.com"]);
    }

    #[test]
    fn an_empty_body_is_an_empty_list() {
        assert_eq!(block_script(b""), Normalized::default());
        assert_eq!(block_script(b"\n\r\n  \n"), Normalized::default());
    }
}
