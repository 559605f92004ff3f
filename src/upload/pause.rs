//! Why uploads are paused, as a type: the uploader decides it from the error's kind, the
//! status file carries it (`upload.pause_reason`), and `nss status` decides from the kind,
//! never from the words of the message.

use serde::{Deserialize, Serialize};

use crate::mcas::ApiError;

/// What made the uploader pause every upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    /// MCAS refused the credential (the API token, or the Entra application's token or
    /// permissions), or Entra refused the application's token request.
    CredentialRefused,
    /// The domain has no MCAS API (404): `mcas.domain` is wrong.
    WrongDomain,
    /// MCAS refused the upload for the whole tenant (the data source, the log format).
    TenantRefused,
    /// MCAS keeps handing upload URLs the agent will not use (not `https://`).
    UnusableUploadUrls,
}

/// Why uploads are paused: the kind, and the message with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseReason {
    pub kind: PauseKind,
    pub message: String,
}

impl PauseReason {
    /// The pause `error` calls for, with `message` (the error and its fix); `None` for an
    /// error that does not pause uploads.
    pub fn of(error: &ApiError, message: String) -> Option<PauseReason> {
        let kind = match error {
            ApiError::TokenRefused { .. } => PauseKind::CredentialRefused,
            ApiError::NotFound { .. } => PauseKind::WrongDomain,
            ApiError::Rejected { .. } if error.is_tenant_wide() => PauseKind::TenantRefused,
            _ => return None,
        };
        Some(PauseReason { kind, message })
    }

    /// The pause of an error the uploader pauses on: its kind where [`PauseReason::of`]
    /// names one, else a refusal of the whole tenant (what every other pause is).
    pub fn pausing(error: &ApiError, message: String) -> PauseReason {
        let kind = Self::of(error, String::new()).map_or(PauseKind::TenantRefused, |r| r.kind);
        PauseReason { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcas::Step;

    #[test]
    fn the_kind_follows_the_error() {
        let kind = |error: ApiError| PauseReason::of(&error, String::new()).map(|r| r.kind);
        let refused = ApiError::TokenRefused {
            step: Step::UploadUrl,
            status: 400,
            reason: "AADSTS7000215".into(),
        };
        assert_eq!(kind(refused), Some(PauseKind::CredentialRefused));
        let not_found = ApiError::NotFound {
            step: Step::UploadUrl,
            host: "h".into(),
        };
        assert_eq!(kind(not_found), Some(PauseKind::WrongDomain));
        let tenant = ApiError::Rejected {
            step: Step::UploadUrl,
            status: 400,
            body: String::new(),
        };
        assert_eq!(kind(tenant), Some(PauseKind::TenantRefused));
        let blob = ApiError::Rejected {
            step: Step::Blob,
            status: 400,
            body: String::new(),
        };
        assert_eq!(kind(blob), None);
    }
}
