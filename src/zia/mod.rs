//! The ZIA Cloud Service API client: pushes the unsanctioned-apps category into the
//! tenant's ZIA as a custom URL category, and checks that the agent can.
//!
//! A push logs in (API key session or OneAPI token), reads the custom categories and the
//! quota, sends only the difference (REMOVE_FROM_LIST, then ADD_TO_LIST, in paced
//! slices), activates once if something changed, and logs out. Other categories, and the
//! attributes of ours other than its URLs, are never written.

mod api;
pub(crate) mod category_update;
pub(crate) mod error;
pub(crate) mod login;
pub(crate) mod obfuscate;
pub(crate) mod retry_policy;
pub(crate) mod urls;

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

pub use category_update::{Diff, Quota};
pub use error::{LoginKind, ZiaError};

use crate::config::ZiaTarget;
use crate::counter::Count;
use api::Api;
use category_update::ListAction;

/// The description a created category gets (ZIA keeps it; pushes never rewrite it).
pub const DEFAULT_DESCRIPTION: &str =
    "Unsanctioned apps of Microsoft Defender for Cloud Apps, kept up to date by nss-agent";

/// The name of the category Zscaler's own cloud-side MCAS integration keeps.
pub const DEFENDER_CATEGORY: &str = "MS Defender Unsanctioned Apps";

/// How a [`ZiaClient`] paces, retries and slices; the defaults suit the real ZIA.
#[derive(Debug, Clone)]
pub struct ZiaOptions {
    /// The longest one request may take.
    pub request_timeout: Duration,
    /// First wait after a 5xx, load shedding or a connection error; doubles up to
    /// `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait after a 5xx, load shedding or a connection error.
    pub backoff_max: Duration,
    /// Retries of a request after 5xx answers, load shedding and connection errors, all
    /// counted together.
    pub max_retries: u32,
    /// Retries of a request answered 429.
    pub max_throttled: u32,
    /// Wait after a 409 EDIT_LOCK_NOT_AVAILABLE.
    pub edit_lock_wait: Duration,
    /// Retries of a request answered 409 EDIT_LOCK_NOT_AVAILABLE.
    pub max_edit_lock_retries: u32,
    /// URLs a write carries at most.
    pub slice: usize,
    /// `GET /status` tries after an activation that is not yet `ACTIVE`.
    pub activation_polls: u32,
    /// Wait between those tries (at least half a second: ZIA's read limit).
    pub activation_poll_interval: Duration,
    /// The description of a category this client creates.
    pub description: String,
}

impl Default for ZiaOptions {
    fn default() -> ZiaOptions {
        ZiaOptions {
            request_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_retries: 4,
            max_throttled: 10,
            edit_lock_wait: Duration::from_secs(5),
            max_edit_lock_retries: 6,
            slice: 1000,
            activation_polls: 5,
            activation_poll_interval: Duration::from_secs(1),
            description: DEFAULT_DESCRIPTION.to_string(),
        }
    }
}

/// What the client did since it was made: shown in the status report's `sync.zia`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ZiaCounters {
    /// HTTP requests sent to ZIA and its token endpoint, retries and logins included.
    #[serde(default)]
    pub api_calls: Count,
    /// Answers 429.
    #[serde(default)]
    pub throttled: Count,
    /// Activations asked for (`POST /status/activate` answered 2xx).
    #[serde(default)]
    pub activations: Count,
    /// Logins (API key sessions or OneAPI tokens) attempted.
    #[serde(default)]
    pub logins: Count,
}

/// ZIA's activation state (`GET /status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationState {
    /// Every change is enforced.
    Active,
    /// Changes wait for an activation.
    Pending,
    /// An activation is under way (or queued behind other administrators').
    InProgress,
    /// Something the documentation does not list, as ZIA spelled it.
    Other(String),
}

impl ActivationState {
    /// Reads ZIA's spelling.
    pub fn parse(status: &str) -> ActivationState {
        match status {
            "ACTIVE" => ActivationState::Active,
            "PENDING" => ActivationState::Pending,
            "INPROGRESS" => ActivationState::InProgress,
            other => ActivationState::Other(other.chars().take(40).collect()),
        }
    }

    /// ZIA's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ActivationState::Active => "ACTIVE",
            ActivationState::Pending => "PENDING",
            ActivationState::InProgress => "INPROGRESS",
            ActivationState::Other(s) => s,
        }
    }
}

/// What one push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The category's id in ZIA (`CUSTOM_NN`).
    pub category_id: String,
    /// Whether this push created it.
    pub created: bool,
    /// URLs added.
    pub added: u64,
    /// URLs removed.
    pub removed: u64,
    /// URLs dropped before the push because ZIA would refuse them.
    pub invalid: u64,
    /// The first few of those, with the reason.
    pub invalid_examples: Vec<String>,
    /// URLs the category holds in ZIA now.
    pub urls: u64,
    /// The tenant's remaining custom URL quota after the push (from the quota read before
    /// the writes, less what they added, plus what they removed).
    pub quota_remaining: u64,
    /// The activation state after the push; `None` when nothing changed (no activation).
    pub activation: Option<ActivationState>,
    /// Writes (create and list updates) made.
    pub writes: u64,
    /// Zscaler's own integration's category ([`DEFENDER_CATEGORY`]), if the tenant holds
    /// it besides ours.
    pub defender_category: Option<CategorySummary>,
}

/// A category as ZIA holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorySummary {
    pub id: String,
    /// Its name as ZIA spells it.
    pub name: String,
    pub url_count: u64,
}

impl CategorySummary {
    fn of(category: &category_update::RemoteCategory) -> CategorySummary {
        CategorySummary {
            id: category.id.clone(),
            name: category.configured_name.clone().unwrap_or_default(),
            url_count: category.urls.len() as u64,
        }
    }
}

/// What [`ZiaClient::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The tenant's custom URL quota.
    pub urls_provisioned: u64,
    pub quota_remaining: u64,
    /// The category, if ZIA has it.
    pub category: Option<CategorySummary>,
    /// ZIA's activation state.
    pub activation: ActivationState,
    /// Zscaler's own integration's category ([`DEFENDER_CATEGORY`]), if the tenant holds
    /// it besides ours.
    pub defender_category: Option<CategorySummary>,
}

/// A client of one tenant's ZIA API. Its login is kept between calls of one push and
/// ended at the end of each (API key sessions); OneAPI tokens are kept until they end.
pub struct ZiaClient {
    api: Api,
    options: ZiaOptions,
}

impl std::fmt::Debug for ZiaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZiaClient")
            .field("api_base", &self.api.api_base)
            .finish_non_exhaustive()
    }
}

impl ZiaClient {
    /// A client of `target` with the default options.
    pub fn new(target: &ZiaTarget) -> Result<ZiaClient, ZiaError> {
        ZiaClient::with_options(target, ZiaOptions::default())
    }

    /// A client of `target` with `options`.
    pub fn with_options(target: &ZiaTarget, options: ZiaOptions) -> Result<ZiaClient, ZiaError> {
        let http = crate::https::client(
            target.ca_file.as_deref(),
            "zia.ca_file",
            target.proxy.as_ref(),
        )
        .map_err(|e| ZiaError::Setup(e.to_string()))?;
        Ok(ZiaClient {
            api: Api::new(
                http,
                &target.base_url,
                target.login.clone(),
                options.clone(),
            ),
            options,
        })
    }

    /// The client counts into `counters` (kept by the daemon across reloads) instead of
    /// its own.
    pub fn with_counters(mut self, counters: Arc<ZiaCounters>) -> ZiaClient {
        self.api.counters = counters;
        self
    }

    /// The counters of this client (shared: they keep counting).
    pub fn counters(&self) -> Arc<ZiaCounters> {
        self.api.counters.clone()
    }

    /// Makes the custom category `name` hold exactly the URLs of `urls` that ZIA takes,
    /// and activates the change. Those it would refuse are dropped and counted. Logs out
    /// at the end (API key login), whatever the outcome.
    pub async fn push_category(&self, name: &str, urls: &[String]) -> Result<PushReport, ZiaError> {
        let result = self.push_logged_in(name, urls).await;
        self.api.logout().await;
        result
    }

    async fn push_logged_in(&self, name: &str, urls: &[String]) -> Result<PushReport, ZiaError> {
        let checked = urls::check_all(urls);
        if checked.invalid > 0 {
            info!(
                dropped = checked.invalid,
                examples = %checked.examples.join(", "),
                "ZIA: URLs dropped because ZIA would refuse them"
            );
        }
        let wanted = checked.valid;
        let categories = category_update::list_categories(&self.api).await?;
        let existing = category_update::find(&categories, name).cloned();
        let defender_category =
            category_update::find_defender(&categories, name).map(CategorySummary::of);
        let quota = category_update::quota(&self.api).await?;
        let mut report = PushReport {
            category_id: String::new(),
            created: false,
            added: 0,
            removed: 0,
            invalid: checked.invalid,
            invalid_examples: checked.examples,
            urls: wanted.len() as u64,
            quota_remaining: quota.remaining(),
            activation: None,
            writes: 0,
            defender_category,
        };
        let (category, diff) = match existing {
            Some(category) => {
                category_update::check_id(&category.id)?;
                let diff = Diff::between(&category.urls, &wanted);
                if diff.is_empty() {
                    info!(category = name, id = %category.id, "ZIA: the category is up to date");
                    report.category_id = category.id;
                    return Ok(report);
                }
                category_update::check_quota(
                    quota.remaining(),
                    diff.remove.len() as u64,
                    diff.add.len() as u64,
                )?;
                (category, diff)
            }
            None => {
                category_update::check_quota(quota.remaining(), 0, wanted.len() as u64)?;
                let first = &wanted[..wanted.len().min(self.options.slice.max(1))];
                let id = category_update::create(&self.api, name, &self.options.description, first)
                    .await?;
                info!(category = name, %id, urls = first.len(), "ZIA: created the category");
                report.created = true;
                report.writes += 1;
                report.added += first.len() as u64;
                let category = category_update::RemoteCategory {
                    id,
                    configured_name: Some(name.to_string()),
                    super_category: Some(category_update::SUPER_CATEGORY.to_string()),
                    urls: first.to_vec(),
                };
                let diff = Diff::between(&category.urls, &wanted);
                (category, diff)
            }
        };
        report.category_id = category.id.clone();
        // Removals first: they free quota for the additions.
        report.writes += category_update::update_list(
            &self.api,
            &category,
            name,
            ListAction::Remove,
            &diff.remove,
            &self.options,
        )
        .await?;
        report.removed += diff.remove.len() as u64;
        report.writes += category_update::update_list(
            &self.api,
            &category,
            name,
            ListAction::Add,
            &diff.add,
            &self.options,
        )
        .await?;
        report.added += diff.add.len() as u64;
        report.quota_remaining = (quota.remaining() + report.removed).saturating_sub(report.added);
        let state = category_update::activate(&self.api, &self.options).await?;
        info!(
            category = name,
            id = %report.category_id,
            added = report.added,
            removed = report.removed,
            activation = state.as_str(),
            "ZIA: the category was pushed"
        );
        report.activation = Some(state);
        Ok(report)
    }

    /// Logs in, reads the quota, finds the category `name` and the activation state, and
    /// logs out: what `nss troubleshoot zia` and `configure-zia` show.
    pub async fn check(&self, name: &str) -> Result<CheckReport, ZiaError> {
        let result = self.check_logged_in(name).await;
        self.api.logout().await;
        result
    }

    async fn check_logged_in(&self, name: &str) -> Result<CheckReport, ZiaError> {
        let quota = category_update::quota(&self.api).await?;
        let categories = category_update::list_categories(&self.api).await?;
        let category = category_update::find(&categories, name).map(CategorySummary::of);
        let defender_category =
            category_update::find_defender(&categories, name).map(CategorySummary::of);
        let activation = category_update::status(&self.api).await?;
        Ok(CheckReport {
            urls_provisioned: quota.unique_urls_provisioned.max(0) as u64,
            quota_remaining: quota.remaining(),
            category,
            activation,
            defender_category,
        })
    }
}
