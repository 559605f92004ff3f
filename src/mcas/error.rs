//! What can go wrong talking to MCAS, sorted by what the uploader does about it.

use std::fmt;
use std::time::Duration;

use crate::retry::Retry;

/// The request of the upload (or sync) that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    UploadUrl,
    Blob,
    DoneUpload,
    BlockScript,
    DataSources,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::UploadUrl => "upload_url",
            Step::Blob => "blob upload",
            Step::DoneUpload => "done_upload",
            Step::BlockScript => "block script",
            Step::DataSources => "data sources",
        })
    }
}

/// A failed request, by what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Worth trying again after a wait: a connection error, a timeout, 408, 429 or 5xx.
    #[error("{step}: {reason}")]
    Transient {
        step: Step,
        reason: String,
        /// How long the server asked to wait (Retry-After).
        retry_after: Option<Duration>,
        /// The server answered 429: the tenant's throttle was hit.
        throttled: bool,
    },
    /// MCAS refused the credential (401 or 403 on an API call), or Entra refused the
    /// application's token request; `reason` says which and what to do.
    #[error("{step}: {reason}")]
    TokenRefused {
        step: Step,
        status: u16,
        reason: String,
    },
    /// The API path does not exist on that host: the domain is wrong.
    #[error("{step}: MCAS answered 404 Not Found at {host}: check mcas.domain (the tenant's portal host, e.g. mycompany.us3.portal.cloudappsecurity.com)")]
    NotFound { step: Step, host: String },
    /// The blob store refused the upload URL (expired or invalid): ask MCAS for a new one.
    #[error("blob upload: the storage refused the upload URL (HTTP {status}); asking MCAS for a new one")]
    BlobUrlRefused { status: u16 },
    /// upload_url answered a URL the agent will not send a file to (not https, not a URL):
    /// MCAS's fault, not the batch's.
    #[error("upload_url: MCAS answered an upload URL the agent will not use: {reason}")]
    UnusableUploadUrl { reason: String },
    /// The server refused this request for good (another 4xx): retrying cannot help.
    #[error("{step}: refused with HTTP {status}: {body}")]
    Rejected {
        step: Step,
        status: u16,
        body: String,
    },
    /// The batch file could not be read.
    #[error("reading the batch file: {0}")]
    Local(#[from] std::io::Error),
}

/// How much of a server's answer goes into a log line or the status.
const BODY_SHOWN: usize = 300;

impl crate::exit::ExitStatus for ApiError {
    fn exit_code(&self) -> u8 {
        crate::exit::UNAVAILABLE
    }
}

impl ApiError {
    /// Sorts a non-2xx answer of an API call.
    pub fn from_api_status(
        step: Step,
        status: u16,
        retry_after: Option<Duration>,
        host: &str,
        body: &[u8],
    ) -> ApiError {
        match status {
            401 | 403 => ApiError::TokenRefused {
                step,
                status,
                reason: format!("MCAS refused the API token (HTTP {status}): a global administrator must generate a new API token in the MCAS portal (Settings > Security extensions > API tokens), then run `sudo nss configure-mcas` and `sudo nss restart`"),
            },
            404 => ApiError::NotFound {
                step,
                host: host.to_string(),
            },
            _ => Self::common(step, status, retry_after, body),
        }
    }

    /// Sorts a non-2xx answer of the blob store.
    pub fn from_blob_status(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
        match status {
            401 | 403 | 404 => ApiError::BlobUrlRefused { status },
            _ => Self::common(Step::Blob, status, retry_after, body),
        }
    }

    fn common(step: Step, status: u16, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
        match status {
            408 | 429 | 500..=599 => ApiError::Transient {
                step,
                reason: format!("HTTP {status} {}", shown(body)),
                retry_after,
                throttled: status == 429,
            },
            _ => ApiError::Rejected {
                step,
                status,
                body: shown(body),
            },
        }
    }

    /// Whether MCAS refused for a reason of the tenant's configuration rather than of one
    /// file: a 4xx other than the throttle from upload_url or done_upload (an unknown data
    /// source or log format, a permission the credential lacks). Every batch would be
    /// refused alike, so uploads pause and the batches stay in the spool; quarantine is
    /// for what is a file's own fault (a damaged batch, a blob refused for its size).
    pub fn is_tenant_wide(&self) -> bool {
        matches!(
            self,
            ApiError::Rejected {
                step: Step::UploadUrl | Step::DoneUpload,
                status: 400..=499,
                ..
            }
        )
    }

    /// Whether the same request may be sent again, sorted as ZIA's answers are: 429 is
    /// [`Retry::Throttled`], other transient failures [`Retry::Transient`], with the wait
    /// MCAS asked for; everything else [`Retry::Never`] (a refused blob URL is answered by a
    /// new URL, not by the same request).
    pub fn retry(&self) -> Retry {
        match self {
            ApiError::Transient {
                retry_after,
                throttled: true,
                ..
            } => Retry::Throttled {
                asked: *retry_after,
            },
            ApiError::Transient { retry_after, .. } => Retry::Transient {
                asked: *retry_after,
            },
            ApiError::TokenRefused { .. }
            | ApiError::NotFound { .. }
            | ApiError::BlobUrlRefused { .. }
            | ApiError::UnusableUploadUrl { .. }
            | ApiError::Rejected { .. }
            | ApiError::Local(_) => Retry::Never,
        }
    }

    /// The step that failed; `None` when the batch file could not be read.
    pub fn step(&self) -> Option<Step> {
        match self {
            ApiError::Transient { step, .. }
            | ApiError::TokenRefused { step, .. }
            | ApiError::NotFound { step, .. }
            | ApiError::Rejected { step, .. } => Some(*step),
            ApiError::BlobUrlRefused { .. } => Some(Step::Blob),
            ApiError::UnusableUploadUrl { .. } => Some(Step::UploadUrl),
            ApiError::Local(_) => None,
        }
    }

    /// A transport failure (connect, TLS, timeout, reset), with the URL left out because a
    /// blob URL carries a signature.
    pub fn from_transport(step: Step, error: reqwest::Error) -> ApiError {
        if let Some(failure) = crate::https::proxy_failure(&error) {
            return ApiError::Transient {
                step,
                reason: failure.message,
                retry_after: None,
                throttled: false,
            };
        }
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        ApiError::Transient {
            step,
            reason: format!(
                "{kind}: {}",
                crate::error_text::one_line(&error.without_url())
            ),
            retry_after: None,
            throttled: false,
        }
    }
}

/// What a failed upload step means for the batch and for the uploads of the tenant: the
/// one reading of MCAS's answers the uploader acts on. It is decided by the step, the
/// status and what the uploader knows ([`Known`]), never by words in a body, which MCAS
/// does not document and may echo from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The tenant's throttle (429): the rate limiter waits as MCAS asked.
    Throttled,
    /// MCAS fails whatever the batch (upload_url carries only a file name): no fault of
    /// the batch; tried again at the steady outage cadence.
    Outage,
    /// A step that carries the batch (the blob, done_upload) failed for now: the failure
    /// may be the batch's own.
    BatchFailed,
    /// The blob store refused the upload URL: a new one is asked for.
    NewUrl,
    /// upload_url answered a URL the agent will not use.
    UnusableUrl,
    /// Every batch would be refused alike (the credential, the domain, the tenant's
    /// configuration): uploads pause, the batches stay in the spool.
    Pause,
    /// The repeat of a done_upload that went unanswered was refused: the first one
    /// reached MCAS and took the file.
    DeliveredBefore,
    /// The file's own fault (the blob store refused it, it cannot be read): quarantine.
    Quarantine,
}

/// What the uploader knows beside the answer when it reads one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// A done_upload of this upload URL was sent before and got no answer.
    pub done_unanswered: bool,
    /// MCAS's data sources list says the configured data source does not exist.
    pub data_source_missing: bool,
}

impl Disposition {
    /// Reads a failed step.
    pub fn of(error: &ApiError, known: Known) -> Disposition {
        match error {
            // What may be sent again, sorted as ZIA's answers are; then whose fault it is.
            ApiError::Transient { .. } => match (error.retry(), error.step()) {
                (Retry::Throttled { .. }, _) => Disposition::Throttled,
                (_, Some(Step::Blob | Step::DoneUpload)) => Disposition::BatchFailed,
                _ => Disposition::Outage,
            },
            ApiError::BlobUrlRefused { .. } => Disposition::NewUrl,
            ApiError::UnusableUploadUrl { .. } => Disposition::UnusableUrl,
            ApiError::TokenRefused { .. } | ApiError::NotFound { .. } => Disposition::Pause,
            // The first call reached MCAS, so the refusal of the repeat is about the used
            // URL, unless MCAS's own list says the data source is missing: then the first
            // was refused alike, nothing was taken, and the batch waits for the fix.
            ApiError::Rejected {
                step: Step::DoneUpload,
                status: 400..=499,
                ..
            } if known.done_unanswered && !known.data_source_missing => {
                Disposition::DeliveredBefore
            }
            ApiError::Rejected { .. } if error.is_tenant_wide() => Disposition::Pause,
            ApiError::Rejected { .. } | ApiError::Local(_) => Disposition::Quarantine,
        }
    }
}

/// What kept a request from getting an answer, told by the types among the error's causes
/// rather than by the words of their messages, which libraries reword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer in time.
    Timeout,
    /// The host name does not resolve.
    NameNotResolved,
    /// The TLS handshake or the certificate check failed.
    Tls,
    /// The host refused the connection.
    Refused,
    /// Anything else (reset, unreachable network, ...).
    Other,
}

impl TransportFailure {
    /// Classifies a request's failure.
    pub fn of(error: &reqwest::Error) -> TransportFailure {
        if error.is_timeout() {
            return TransportFailure::Timeout;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = cause {
            if let Some(kind) = Self::of_one(error) {
                return kind;
            }
            // An io::Error's source() skips the error it wraps (it answers that error's
            // own source): step into it instead.
            cause = match error
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => error.source(),
            };
        }
        TransportFailure::Other
    }

    fn of_one(error: &(dyn std::error::Error + 'static)) -> Option<TransportFailure> {
        if error.is::<crate::https::NameNotResolved>() {
            Some(TransportFailure::NameNotResolved)
        } else if error.is::<rustls::Error>() {
            Some(TransportFailure::Tls)
        } else if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            Some(TransportFailure::Refused)
        } else if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            Some(TransportFailure::Timeout)
        } else {
            None
        }
    }
}

/// A server's answer as one printable line, cut short.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_SHOWN)
        .collect();
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_be_sent_again() {
        let api = |step, status, wait: Option<u64>| {
            ApiError::from_api_status(step, status, wait.map(Duration::from_secs), "h", b"{}")
        };
        let secs = |n| Some(Duration::from_secs(n));
        let table: Vec<(ApiError, Retry)> = vec![
            (
                api(Step::UploadUrl, 429, Some(20)),
                Retry::Throttled { asked: secs(20) },
            ),
            (
                api(Step::DoneUpload, 429, None),
                Retry::Throttled { asked: None },
            ),
            (
                api(Step::UploadUrl, 503, Some(5)),
                Retry::Transient { asked: secs(5) },
            ),
            (
                api(Step::DoneUpload, 500, None),
                Retry::Transient { asked: None },
            ),
            (
                ApiError::from_blob_status(500, secs(1), b""),
                Retry::Transient { asked: secs(1) },
            ),
            (ApiError::from_blob_status(403, None, b""), Retry::Never),
            (api(Step::UploadUrl, 401, None), Retry::Never),
            (api(Step::UploadUrl, 404, None), Retry::Never),
            (api(Step::DoneUpload, 400, None), Retry::Never),
            (ApiError::Local(std::io::Error::other("gone")), Retry::Never),
        ];
        for (error, expected) in table {
            assert_eq!(error.retry(), expected, "{error}");
        }
    }

    #[test]
    fn every_answer_has_one_disposition() {
        use Disposition::*;
        let api = |step, status, body: &str| {
            ApiError::from_api_status(step, status, None, "h", body.as_bytes())
        };
        let transient = |step| ApiError::Transient {
            step,
            reason: "timed out".into(),
            retry_after: None,
            throttled: false,
        };
        let fresh = Known::default();
        let repeat = Known {
            done_unanswered: true,
            ..Known::default()
        };
        let missing = Known {
            done_unanswered: true,
            data_source_missing: true,
        };
        let echoed = r#"{"detail": "already processed", "inputStreamName": "NSS", "format": "x"}"#;
        let table: Vec<(ApiError, Known, Disposition)> = vec![
            (api(Step::UploadUrl, 429, ""), fresh, Throttled),
            (api(Step::DoneUpload, 429, ""), repeat, Throttled),
            (api(Step::UploadUrl, 503, ""), fresh, Outage),
            (transient(Step::UploadUrl), fresh, Outage),
            (api(Step::DoneUpload, 503, ""), fresh, BatchFailed),
            (transient(Step::DoneUpload), repeat, BatchFailed),
            (
                ApiError::from_blob_status(500, None, b""),
                fresh,
                BatchFailed,
            ),
            (ApiError::from_blob_status(403, None, b""), fresh, NewUrl),
            (
                ApiError::UnusableUploadUrl {
                    reason: "http".into(),
                },
                fresh,
                UnusableUrl,
            ),
            (api(Step::UploadUrl, 401, ""), fresh, Pause),
            (api(Step::DoneUpload, 403, ""), repeat, Pause),
            (api(Step::UploadUrl, 404, ""), fresh, Pause),
            (api(Step::UploadUrl, 400, "unknown source"), fresh, Pause),
            (
                api(Step::DoneUpload, 400, "unknown data source"),
                fresh,
                Pause,
            ),
            // The refused repeat is read by what is known, whatever its body says.
            (api(Step::DoneUpload, 400, echoed), repeat, DeliveredBefore),
            (
                api(Step::DoneUpload, 400, "data source"),
                repeat,
                DeliveredBefore,
            ),
            (api(Step::DoneUpload, 409, ""), repeat, DeliveredBefore),
            (api(Step::DoneUpload, 400, echoed), missing, Pause),
            (
                ApiError::from_blob_status(413, None, b""),
                fresh,
                Quarantine,
            ),
            (
                ApiError::from_blob_status(413, None, b""),
                repeat,
                Quarantine,
            ),
            (
                ApiError::Local(std::io::Error::other("gone")),
                fresh,
                Quarantine,
            ),
        ];
        for (error, known, expected) in table {
            assert_eq!(
                Disposition::of(&error, known),
                expected,
                "{error} {known:?}"
            );
        }
    }

    #[test]
    fn refusals_of_the_whole_tenant_are_told_from_a_files_own() {
        let api = |step, status| ApiError::from_api_status(step, status, None, "h", b"{}");
        assert!(api(Step::DoneUpload, 400).is_tenant_wide());
        assert!(api(Step::UploadUrl, 400).is_tenant_wide());
        assert!(api(Step::DoneUpload, 409).is_tenant_wide());
        // The throttle, the token and the domain have their own ways.
        assert!(!api(Step::DoneUpload, 429).is_tenant_wide());
        assert!(!api(Step::DoneUpload, 401).is_tenant_wide());
        assert!(!api(Step::UploadUrl, 404).is_tenant_wide());
        assert!(!api(Step::DoneUpload, 500).is_tenant_wide());
        // The blob store refusing the file (its size) is the file's own fault.
        assert!(!ApiError::from_blob_status(413, None, b"").is_tenant_wide());
        assert!(!ApiError::from_blob_status(400, None, b"").is_tenant_wide());
    }
}
