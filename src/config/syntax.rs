//! A TOML syntax error, told without the text of the file: the line of a botched secret
//! (a missing quote, a stray character, a bare value) is the secret itself, so the message
//! names the line, the column and the key written on it, and what the parser expected.

use std::ops::Range;

/// The problem of a file that is not valid TOML, for a [`super::ConfigError`] naming the
/// file: `line 3, column 71 (mcas.token): invalid basic string, expected `"``...`.
pub(super) fn describe(text: &str, error: &toml_edit::TomlError) -> String {
    let span = error.span().unwrap_or(0..0);
    let (line, column) = position(text, &span);
    let key = key_on_line(text, line)
        .map(|key| format!(" ({key})"))
        .unwrap_or_default();
    let what = parser_message(text, line, error.message());
    format!(
        "is not valid TOML: line {line}, column {column}{key}: {what}; fix that line (its text is not shown: it may hold a secret)"
    )
}

/// The 1-based line and column (in characters) where `span` starts.
fn position(text: &str, span: &Range<usize>) -> (usize, usize) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// `section.key` of the key written at the start of `line` (1-based), under the last
/// `[section]` header above it; `None` when the line starts with no bare key.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line.checked_sub(1)?)?.trim_start();
    let name: String = current
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    if name.is_empty() {
        return None;
    }
    let section = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.split(']').next()?.trim();
        let bare = inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        (bare && !inner.is_empty()).then(|| inner.to_string())
    });
    Some(match section {
        Some(section) => format!("{section}.{name}"),
        None => name,
    })
}

/// The parser's own words, on one line, unless they quote the line's text (then only
/// that the line is not valid).
fn parser_message(text: &str, line: usize, message: &str) -> String {
    let words = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let value = text
        .lines()
        .nth(line.saturating_sub(1))
        .map(|l| l.split_once('=').map_or(l, |(_, v)| v).trim())
        .unwrap_or("");
    let value: Vec<char> = value.chars().collect();
    let quotes_the_line = value
        .windows(4)
        .any(|part| words.contains(&part.iter().collect::<String>()));
    if quotes_the_line || words.is_empty() {
        "the line is not a key = value pair TOML can read".to_string()
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(text: &str) -> String {
        let error = text.parse::<toml_edit::DocumentMut>().unwrap_err();
        describe(text, &error)
    }

    #[test]
    fn names_the_line_and_key_never_the_value() {
        let secret = "s3cr3t-value-0123456789";
        for line in [
            format!("token = \"{secret}\n"),
            format!("token = \"{secret}\"x\n"),
            format!("token = {secret}\n"),
            format!("token \"{secret}\"\n"),
        ] {
            let text = format!("[mcas]\ndomain = \"a.example.com\"\n{line}");
            let message = described(&text);
            assert!(
                message.contains("line 3") && message.contains("(mcas.token)"),
                "{message}"
            );
            assert!(!message.contains("s3cr"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn a_line_outside_any_section_is_named_by_its_key() {
        let message = described("token = \"open\n");
        assert!(
            message.contains("line 1") && message.contains("(token)"),
            "{message}"
        );
    }
}
