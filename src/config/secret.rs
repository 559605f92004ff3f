//! Secrets (the MCAS API token, client secrets, passwords), kept out of logs, `Debug` output and error messages.

use std::fmt;

/// A secret string. Its `Debug` and `Display` show only a mask (`****` and the last four
/// characters), so it can sit in structs that are logged without leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `****` followed by the last four characters, as `nss status` and prompts show it.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        // A short secret would be mostly revealed by its last four characters.
        if chars.len() < 16 {
            return "****".to_string();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("****{tail}")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Whether `token` looks like an MCAS API token: at least 32 characters, all of
/// `[0-9A-Za-z-_=.+]` (legacy tokens are 64 hex characters; newer ones are longer).
pub fn check_token_shape(token: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_=.+".contains(c);
    if let Some(bad) = token.chars().find(|&c| !allowed(c)) {
        let shown = if bad.is_ascii_graphic() {
            format!("'{bad}'")
        } else {
            format!("U+{:04X}", bad as u32)
        };
        return Err(format!(
            "the token holds the character {shown}; an MCAS API token has only letters, digits and - _ = . +: copy it again from the portal"
        ));
    }
    if token.len() < 32 {
        return Err(format!(
            "the token is {} characters long; an MCAS API token has at least 32: copy the whole token from the portal",
            token.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_four() {
        let secret = Secret::new("0123456789abcdef0123456789abcdefWXYZ");
        assert_eq!(secret.masked(), "****WXYZ");
        assert_eq!(format!("{secret:?}"), "****WXYZ");
        assert_eq!(format!("{secret}"), "****WXYZ");
        assert_eq!(Secret::new("short").masked(), "****");
    }

    #[test]
    fn token_shape() {
        assert!(check_token_shape(&"a".repeat(64)).is_ok());
        assert!(check_token_shape("abc-_=.+0123456789ABCDEFGHIJKLMNOP").is_ok());
        assert!(check_token_shape("too-short").is_err());
        let err = check_token_shape(&format!("{} x", "a".repeat(40))).unwrap_err();
        assert!(err.contains("U+0020"), "{err}");
    }
}
