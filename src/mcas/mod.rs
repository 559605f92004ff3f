//! The MCAS client: the Cloud Discovery API (upload_url, done_upload, the block script,
//! the data sources), the Entra application tokens that may authorise it,
//! the blob store behind an upload URL, the process-wide rate limiter of API calls, and
//! what MCAS's answers mean. Used by the uploader, the sync, troubleshoot and configure.

pub mod blob;
pub mod body;
pub mod client;
pub mod counters;
pub mod data_source;
pub mod entra;
pub mod error;
pub mod limit;
pub mod log_format;
pub mod retry;

pub use client::{
    BlockScript, DataSource, DataSourcesError, McasClient, Provider, RawAnswer, SendError,
    UploadTarget,
};
pub use entra::{EntraError, EntraTokens};
pub use error::{ApiError, Disposition, Known, Step};
pub use limit::ApiRateLimiter;
