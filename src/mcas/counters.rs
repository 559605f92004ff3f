//! What the MCAS client and the data-source reading count: shown in the status report's
//! `upload` and `mcas` sections.

use serde::{Deserialize, Serialize};

use crate::counter::{Count, Real, Shared, WallTime};

/// What the MCAS client counts, shown in the `upload` section: every call of the process
/// goes through one client's limiter, uploads and data-source reads alike.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct McasCounters {
    /// MCAS API calls made since start (every call counts against the tenant's 30 a
    /// minute).
    #[serde(default)]
    pub api_calls: Count,
    /// API calls MCAS answered 429 (the tenant's throttle, shared with other agents).
    #[serde(default)]
    pub throttled: Count,
    /// This agent's own limit of API calls a minute now: `upload.api_calls_per_minute`,
    /// halved on each 429 down to `upload.min_api_calls_per_minute`, growing back while
    /// calls succeed.
    #[serde(default)]
    pub api_rate: Real,
}

/// What MCAS's data sources list last said of `mcas.data_source`: shown in the `mcas`
/// section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataSourceCounters {
    /// Whether MCAS lists `data_source`; null when not known (not yet read, or the list
    /// is unreadable).
    #[serde(default, rename = "data_source_found")]
    pub found: Shared<Option<bool>>,
    /// When MCAS last received data for the data source (the portal's "receiving data").
    #[serde(default)]
    pub last_data_received: WallTime,
    /// What is wrong with the data source, in words, when something is.
    #[serde(default, rename = "data_source_problem")]
    pub problem: Shared<Option<String>>,
    /// The log format uploads use (upload_url's `source`); null until decided.
    #[serde(default)]
    pub source: Shared<Option<String>>,
    /// Why that log format: `set in mcas.source`, or what `auto` read.
    #[serde(default)]
    pub source_why: Shared<Option<String>>,
}
