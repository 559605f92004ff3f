//! What the unsanctioned-apps sync and its pushes into ZIA count: the `sync` section of
//! the status report.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::counter::{Count, Flag, Shared, WallTime};
use crate::zia::ZiaCounters;

/// What the unsanctioned-apps sync last did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncCounters {
    /// The last sync that succeeded.
    pub last_success: WallTime,
    /// URLs in the category after it.
    pub urls: Count,
    /// URLs it added and removed.
    pub added: Count,
    pub removed: Count,
    /// The last sync's error, until one succeeds.
    pub last_error: Shared<Option<String>>,
    /// When the next sync is due.
    pub next: WallTime,
    /// The push of the category into the tenant's ZIA.
    #[serde(default)]
    pub zia: ZiaPushCounters,
}

impl SyncCounters {
    /// The outcome of the last sync and push only (for `nss status` of a stopped
    /// daemon): every count since start at zero.
    pub fn outcome(&self) -> SyncCounters {
        let outcome = SyncCounters::default();
        outcome.last_success.set_opt(self.last_success.get());
        outcome.urls.set(self.urls.get());
        outcome.last_error.set(self.last_error.get());
        let (zia, last) = (&outcome.zia, &self.zia);
        zia.category_id.set(last.category_id.get());
        zia.last_push.set_opt(last.last_push.get());
        zia.last_activation.set_opt(last.last_activation.get());
        zia.activation_state.set(last.activation_state.get());
        zia.urls.set(last.urls.get());
        zia.quota_remaining.set(last.quota_remaining.get());
        zia.last_error.set(last.last_error.get());
        zia.defender_category.set(last.defender_category.get());
        outcome
    }
}

/// What the pushes into ZIA did: `sync.zia`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ZiaPushCounters {
    /// A ZIA API is configured (`zia.base_url`).
    pub enabled: Flag,
    /// The category's id in ZIA, once known.
    pub category_id: Shared<Option<String>>,
    /// The last push that succeeded (whether or not it changed anything).
    pub last_push: WallTime,
    /// The last activation, and ZIA's state after it (`ACTIVE`, `PENDING`, ...).
    pub last_activation: WallTime,
    #[serde(default)]
    pub activation_state: Shared<Option<String>>,
    /// URLs the category holds in ZIA after the last push.
    pub urls: Count,
    /// The tenant's custom-URL quota left after the last push; `None` until read.
    pub quota_remaining: Shared<Option<u64>>,
    /// The last push's error, until one succeeds.
    pub last_error: Shared<Option<String>>,
    /// Pushes that succeeded since start.
    #[serde(default)]
    pub pushes: Count,
    /// Zscaler's own MCAS integration's category ("MS Defender Unsanctioned Apps"), when
    /// the last push or check found it in the tenant besides ours: the same URLs held
    /// twice, counted twice against the quota.
    #[serde(default)]
    pub defender_category: Shared<Option<ZiaCategoryReport>>,
    /// The ZIA client's own counters: API calls, 429s, activations, logins.
    #[serde(flatten)]
    pub client: Arc<ZiaCounters>,
}

/// A custom category as ZIA holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZiaCategoryReport {
    /// Its name as ZIA spells it.
    pub name: String,
    /// `CUSTOM_NN`.
    pub id: String,
    /// URLs it holds.
    pub urls: u64,
}
