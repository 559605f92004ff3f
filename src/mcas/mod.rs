//! The MCAS client: the Cloud Discovery API (upload_url, done_upload, the block script,
//! the data sources), the Entra application tokens that may authorise it,
//! the blob store behind an upload URL, the process-wide rate limiter of API calls, and
//! what MCAS's answers mean. Used by the uploader, the sync, troubleshoot and configure.

pub(crate) mod blob;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod counters;
pub(crate) mod data_source;
pub(crate) mod entra;
pub(crate) mod error;
pub(crate) mod limit;
pub(crate) mod log_format;
pub(crate) mod retry_after;

pub use client::{
    BlockScript, DataSource, DataSourcesError, McasClient, Provider, RawAnswer, SendError,
    UploadTarget,
};
pub use entra::{EntraError, EntraTokens};
pub use error::{ApiError, Disposition, Known, Step};
pub use limit::ApiRateLimiter;
