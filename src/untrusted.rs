//! What root's commands read from the daemon's files and socket (the status file, the
//! pidfile, control-socket answers) is written by the daemon's account, and so untrusted:
//! read up to a bound, and shown with control characters escaped, so that no file or
//! answer can grow root's `nss` without limit or drive root's terminal.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

/// `text` with every control character (C0, DEL, C1; line ends included) written as a
/// Rust escape such as `\u{1b}`, for one line of a terminal.
pub fn escaped(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Like [`escaped`], but keeping line ends: for a multi-line text.
pub fn escaped_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let shown = |c: char| !c.is_control() || (keep_newlines && c == '\n');
    if text.chars().all(shown) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if shown(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// JSON text with the control characters serde_json leaves as they are (DEL and the C1
/// range, which some terminals obey) written as `\u00XX` escapes: still the same JSON.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    // serde_json escapes U+0000..U+001F itself; outside strings JSON has none of these.
    let raw = |c: char| ('\u{7f}'..='\u{9f}').contains(&c);
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    Cow::Owned(
        json.chars()
            .map(|c| {
                if raw(c) {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Why a bounded read failed: the source is larger than the bound, or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    #[error("{what} is larger than {limit} bytes: not read (it is not one this nss wrote)")]
    TooLarge { what: String, limit: u64 },
    #[error("cannot read {what}: {source}")]
    Io { what: String, source: io::Error },
}

/// All of `reader`, up to `limit` bytes; more is an error naming `what`.
pub fn read_to_end(reader: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, BoundedError> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BoundedError::Io {
            what: what.to_string(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(BoundedError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// One line of `reader` (its newline dropped), up to `limit` bytes; a longer line is an
/// error naming `what`.
pub fn read_line(reader: impl BufRead, limit: u64, what: &str) -> Result<Vec<u8>, BoundedError> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|source| BoundedError::Io {
            what: what.to_string(),
            source,
        })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() as u64 > limit {
        return Err(BoundedError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("plain text"), "plain text");
        assert_eq!(escaped("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        assert_eq!(escaped_lines("a\u{9b}b\nc\r"), "a\\u{9b}b\nc\\u{d}");
        assert_eq!(json_for_terminal("\"a\u{9b}\""), "\"a\\u009b\"");
    }

    #[test]
    fn reads_are_bounded() {
        assert_eq!(read_to_end(&b"abc"[..], 3, "x").unwrap(), b"abc");
        assert!(matches!(
            read_to_end(&b"abcd"[..], 3, "x"),
            Err(BoundedError::TooLarge { .. })
        ));
        assert_eq!(read_line(&b"ab\ncd"[..], 3, "x").unwrap(), b"ab");
        assert!(read_line(&b"abcd"[..], 3, "x").is_err());
        assert_eq!(read_line(&b"abc"[..], 3, "x").unwrap(), b"abc");
    }
}
