//! Serde readers for values the file writes in its own way: `""` for "not set", listen
//! addresses, the list of tailed files, `"auto"` writers, and the `auth` choices.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// Reads a string where `""` means "not set" (a domain, a path, a secret).
pub fn non_empty<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = String::deserialize(deserializer)?;
    Ok((!text.is_empty()).then(|| T::from(text)))
}

/// Reads a listen address; `""` disables the listener.
pub fn listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        de::Error::custom(
            "is not an address: write it like \"127.0.0.1:13010\", or \"\" to disable",
        )
    })
}

/// Reads `feed.files`: a list of paths, or one path as a string (`""` for none), as an
/// environment override writes it.
pub fn files<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    deserializer.deserialize_any(FilesVisitor)
}

struct FilesVisitor;

impl<'de> Visitor<'de> for FilesVisitor {
    type Value = Vec<PathBuf>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of file paths, e.g. [\"/var/log/nss/mcas.log\"]")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<PathBuf>, E> {
        Ok(match text {
            "" => Vec::new(),
            path => vec![PathBuf::from(path)],
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PathBuf>, A::Error> {
        let mut files = Vec::new();
        while let Some(path) = seq.next_element::<String>()? {
            if path.is_empty() {
                return Err(de::Error::custom(
                    "holds an empty path: write each file's absolute path in quotes",
                ));
            }
            files.push(PathBuf::from(path));
        }
        Ok(files)
    }
}

/// Reads `batch.writers`: `"auto"` (0, one per core) or a whole number.
pub fn writers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    deserializer.deserialize_any(WritersVisitor)
}

struct WritersVisitor;

impl Visitor<'_> for WritersVisitor {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\" or a whole number from 1 to 64")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
        usize::try_from(n).map_err(|_| E::custom(format!("{n} is too many: at most 64")))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
        u64::try_from(n)
            .map_err(|_| {
                E::custom(format!(
                    "{n} is not \"auto\" or a whole number from 1 to 64"
                ))
            })
            .and_then(|n| self.visit_u64(n))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(0);
        }
        let n = text
            .trim()
            .parse::<u64>()
            .map_err(|_| E::custom("is not \"auto\" or a whole number from 1 to 64"))?;
        self.visit_u64(n)
    }
}

/// How the agent proves itself to MCAS (`mcas.auth`, and `--auth` of configure-mcas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(try_from = "String")]
pub enum McasAuth {
    /// A legacy API token.
    #[default]
    #[value(name = "token")]
    Token,
    /// A Microsoft Entra application's client credentials.
    #[value(name = "entra")]
    Entra,
}

impl McasAuth {
    /// The value as the file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            McasAuth::Token => "token",
            McasAuth::Entra => "entra",
        }
    }
}

impl TryFrom<String> for McasAuth {
    type Error = String;

    fn try_from(text: String) -> Result<McasAuth, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "token" => Ok(McasAuth::Token),
            "entra" => Ok(McasAuth::Entra),
            _ => Err(
                "is not a way to authenticate to MCAS: write \"token\" (a legacy API token) or \"entra\" (an Entra application)"
                    .to_string(),
            ),
        }
    }
}

/// How the agent logs in to ZIA (`zia.auth`, and `--auth` of configure-zia).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(try_from = "String")]
pub enum ZiaAuth {
    /// An API admin's username and password with the cloud service API key.
    #[default]
    #[value(name = "api_key")]
    ApiKey,
    /// ZIdentity OAuth2 client credentials.
    #[value(name = "oneapi")]
    OneApi,
}

impl ZiaAuth {
    /// The value as the file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ZiaAuth::ApiKey => "api_key",
            ZiaAuth::OneApi => "oneapi",
        }
    }
}

impl TryFrom<String> for ZiaAuth {
    type Error = String;

    fn try_from(text: String) -> Result<ZiaAuth, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "api_key" => Ok(ZiaAuth::ApiKey),
            "oneapi" => Ok(ZiaAuth::OneApi),
            _ => Err(
                "is not a way to log in to ZIA: write \"api_key\" (admin and API key) or \"oneapi\" (ZIdentity client)"
                    .to_string(),
            ),
        }
    }
}
