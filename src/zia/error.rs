//! What can go wrong talking to ZIA, sorted by what the caller does about it.
//!
//! No variant carries a password, an API key, a client secret, a session cookie or a
//! token: the messages go to logs and to `nss status`.

use std::fmt;

/// Which login a [`ZiaError::LoginRefused`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// `POST /authenticatedSession` with the admin and the API key.
    ApiKey,
    /// The OneAPI token endpoint.
    OneApi,
}

impl fmt::Display for LoginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoginKind::ApiKey => "the ZIA API key login",
            LoginKind::OneApi => "the OneAPI token endpoint",
        })
    }
}

/// A failed ZIA operation.
#[derive(Debug, thiserror::Error)]
pub enum ZiaError {
    /// The HTTPS client cannot be set up (e.g. `zia.ca_file` unreadable).
    #[error("cannot set up HTTPS for ZIA: {0}")]
    Setup(String),
    /// The OneAPI private key cannot be read or is not a PEM RSA key.
    #[error("zia.private_key_file: {0}")]
    PrivateKey(String),
    /// The credentials were refused at login.
    #[error("{login} refused the credentials (HTTP {status}): {message}")]
    LoginRefused {
        login: LoginKind,
        status: u16,
        message: String,
    },
    /// ZIA answered 401 again right after a new login.
    #[error("{endpoint}: ZIA refused the new session or token too (HTTP 401): check that the API admin (or the OneAPI client) has the URL category permissions")]
    Unauthorized { endpoint: String },
    /// The tenant is in read-only mode (maintenance): skip this cycle.
    #[error("{endpoint}: ZIA is in read-only mode (maintenance); nothing was changed, the next sync tries again")]
    ReadOnly { endpoint: String },
    /// The URLs to add would pass the tenant's custom URL quota; nothing was pushed.
    #[error("the category would pass ZIA's custom URL quota: {needed} URLs to add, {available} available ({remaining} remaining plus {freed} freed by removals), {excess} too many; nothing was pushed")]
    QuotaExceeded {
        /// `remainingUrlsQuota` as ZIA answered it.
        remaining: u64,
        /// URLs the removals of this push would free.
        freed: u64,
        /// `remaining + freed`.
        available: u64,
        /// URLs this push would add.
        needed: u64,
        /// `needed - available`.
        excess: u64,
    },
    /// Another administrator held the edit lock through every retry.
    #[error("{endpoint}: the edit lock stayed taken by another ZIA admin session (409 EDIT_LOCK_NOT_AVAILABLE) through {attempts} tries")]
    EditLocked { endpoint: String, attempts: u32 },
    /// ZIA refused the request for good (a 4xx other than those retried).
    #[error("{endpoint}: ZIA refused the request (HTTP {status}{}): {message}", code_suffix(.code))]
    Rejected {
        endpoint: String,
        status: u16,
        /// ZIA's `code`, e.g. `INVALID_INPUT_ARGUMENT`.
        code: Option<String>,
        /// ZIA's `message`, for the administrator.
        message: String,
    },
    /// ZIA could not be reached or kept failing (5xx, 429, connection errors) through
    /// every retry.
    #[error("{endpoint}: {reason}")]
    Unavailable { endpoint: String, reason: String },
    /// An answer larger than any this endpoint gives.
    #[error("{endpoint}: the answer is larger than {limit} bytes")]
    Oversized { endpoint: String, limit: usize },
    /// A 2xx answer that is not what the API documents.
    #[error("{endpoint}: unexpected answer: {reason}")]
    BadAnswer { endpoint: String, reason: String },
}

fn code_suffix(code: &Option<String>) -> String {
    match code {
        Some(code) => format!(" {code}"),
        None => String::new(),
    }
}

impl crate::exit::ExitStatus for ZiaError {
    /// The configuration is at fault for a client that cannot be set up or a key that
    /// cannot be read; ZIA for the rest.
    fn exit_code(&self) -> u8 {
        match self {
            ZiaError::Setup(_) | ZiaError::PrivateKey(_) => crate::exit::CONFIG,
            _ => crate::exit::UNAVAILABLE,
        }
    }
}

impl ZiaError {
    /// Whether trying again later (the next sync) may succeed without an administrator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ZiaError::ReadOnly { .. } | ZiaError::EditLocked { .. } | ZiaError::Unavailable { .. }
        )
    }
}
