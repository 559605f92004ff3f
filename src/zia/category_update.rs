//! Pushing one custom category: the difference between what ZIA holds and what it should
//! hold, checked against the tenant's quota, sent in paced slices of ADD_TO_LIST and
//! REMOVE_FROM_LIST (never a full PUT, which would clear what other admins set), then
//! activated once.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::api::{Api, LARGE_ANSWER, SMALL_ANSWER};
use super::error::ZiaError;
use super::{ActivationState, ZiaOptions};

/// The `superCategory` of a category this client creates.
pub const SUPER_CATEGORY: &str = "USER_DEFINED";

/// A custom category as `GET /urlCategories` answers it (the fields this client reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCategory {
    pub id: String,
    #[serde(default)]
    pub configured_name: Option<String>,
    #[serde(default)]
    pub super_category: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
}

/// `GET /urlCategories/urlQuota`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Custom URLs the tenant holds.
    pub unique_urls_provisioned: i64,
    /// Custom URLs it may still add.
    pub remaining_urls_quota: i64,
}

impl Quota {
    /// The remaining quota, 0 if ZIA reports it below zero.
    pub fn remaining(&self) -> u64 {
        self.remaining_urls_quota.max(0) as u64
    }
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: String,
}

/// What to add to and remove from a category's URLs to make them `wanted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In `wanted`, not in ZIA; sorted.
    pub add: Vec<String>,
    /// In ZIA, not in `wanted`; sorted.
    pub remove: Vec<String>,
}

impl Diff {
    /// The difference from `current` (ZIA's list, in any order) to `wanted`.
    pub fn between(current: &[String], wanted: &[String]) -> Diff {
        let current: BTreeSet<&String> = current.iter().collect();
        let wanted: BTreeSet<&String> = wanted.iter().collect();
        Diff {
            add: wanted.difference(&current).map(|s| s.to_string()).collect(),
            remove: current.difference(&wanted).map(|s| s.to_string()).collect(),
        }
    }

    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Fails with [`ZiaError::QuotaExceeded`] when adding `needed` URLs, after removals
/// freeing `freed`, would pass the `remaining` quota.
pub fn check_quota(remaining: u64, freed: u64, needed: u64) -> Result<(), ZiaError> {
    let available = remaining + freed;
    if needed > available {
        return Err(ZiaError::QuotaExceeded {
            remaining,
            freed,
            available,
            needed,
            excess: needed - available,
        });
    }
    Ok(())
}

/// The custom categories, whole.
pub async fn list_categories(api: &Api) -> Result<Vec<RemoteCategory>, ZiaError> {
    api.call(
        Method::GET,
        "/urlCategories?customOnly=true",
        None,
        LARGE_ANSWER,
    )
    .await
}

/// The category called `name`, if any, compared without regard to case as ZIA's Go SDK
/// does: an administrator may have created "mcas unsanctioned apps" by hand.
pub fn find<'a>(categories: &'a [RemoteCategory], name: &str) -> Option<&'a RemoteCategory> {
    categories.iter().find(|c| {
        c.configured_name
            .as_deref()
            .is_some_and(|n| same_name(n, name))
    })
}

/// Whether two category names are the same to ZIA's clients (case aside).
pub fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// The category of Zscaler's own cloud-side MCAS integration, unless it is `ours`: a
/// tenant that has both holds the same URLs twice, counted twice against the quota.
pub fn find_defender<'a>(
    categories: &'a [RemoteCategory],
    ours: &str,
) -> Option<&'a RemoteCategory> {
    if same_name(ours, super::DEFENDER_CATEGORY) {
        return None;
    }
    find(categories, super::DEFENDER_CATEGORY)
}

/// The tenant's custom URL quota.
pub async fn quota(api: &Api) -> Result<Quota, ZiaError> {
    api.call(Method::GET, "/urlCategories/urlQuota", None, SMALL_ANSWER)
        .await
}

/// The activation state (`GET /status`).
pub async fn status(api: &Api) -> Result<ActivationState, ZiaError> {
    let answer: StatusAnswer = api.call(Method::GET, "/status", None, SMALL_ANSWER).await?;
    Ok(ActivationState::parse(&answer.status))
}

/// Creates the category with `urls` (the first slice; the rest is added after). Answers
/// its id.
pub async fn create(
    api: &Api,
    name: &str,
    description: &str,
    urls: &[String],
) -> Result<String, ZiaError> {
    let body = json!({
        "configuredName": name,
        "superCategory": SUPER_CATEGORY,
        "customCategory": true,
        "type": "URL_CATEGORY",
        "urls": urls,
        "description": description,
    });
    let created: RemoteCategory = api
        .call(Method::POST, "/urlCategories", Some(&body), LARGE_ANSWER)
        .await?;
    check_id(&created.id)?;
    Ok(created.id)
}

/// Which incremental update a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAction {
    Add,
    Remove,
}

impl ListAction {
    fn query(self) -> &'static str {
        match self {
            ListAction::Add => "ADD_TO_LIST",
            ListAction::Remove => "REMOVE_FROM_LIST",
        }
    }
}

/// Adds or removes `urls` in slices of `options.slice`; answers the writes made.
pub async fn update_list(
    api: &Api,
    category: &RemoteCategory,
    name: &str,
    action: ListAction,
    urls: &[String],
    options: &ZiaOptions,
) -> Result<u64, ZiaError> {
    let path = format!("/urlCategories/{}?action={}", category.id, action.query());
    // The name as ZIA holds it, which may differ from ours in case.
    let name = category.configured_name.as_deref().unwrap_or(name);
    let mut writes = 0;
    for slice in urls.chunks(options.slice.max(1)) {
        // Every write carries the name and only the URLs (as requests recorded against a
        // real tenant do), so the other attributes stay as they are; the super category
        // too when ZIA listed it.
        let mut body = json!({
            "configuredName": name,
            "urls": slice,
        });
        if let Some(super_category) = &category.super_category {
            body["superCategory"] = json!(super_category);
        }
        let _: Value = api
            .call(Method::PUT, &path, Some(&body), LARGE_ANSWER)
            .await?;
        writes += 1;
        info!(
            action = action.query(),
            urls = slice.len(),
            id = %category.id,
            "ZIA: a slice of the category's URLs written"
        );
    }
    Ok(writes)
}

/// Activates the pending changes, then waits (a few tries) for `ACTIVE`.
pub async fn activate(api: &Api, options: &ZiaOptions) -> Result<ActivationState, ZiaError> {
    // A JSON body, as both SDKs send it: ZIA answers 415 to a write without a media type.
    let answer: StatusAnswer = api
        .call(
            Method::POST,
            "/status/activate",
            Some(&json!({})),
            SMALL_ANSWER,
        )
        .await?;
    api.counters.activations.add(1);
    let mut state = ActivationState::parse(&answer.status);
    for _ in 0..options.activation_polls {
        if state == ActivationState::Active {
            break;
        }
        tokio::time::sleep(
            options
                .activation_poll_interval
                .max(Duration::from_millis(500)),
        )
        .await;
        state = status(api).await?;
    }
    Ok(state)
}

/// Refuses an id that cannot go into a path as it is (ZIA's are `CUSTOM_NN`).
pub fn check_id(id: &str) -> Result<(), ZiaError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ZiaError::BadAnswer {
            endpoint: "POST /urlCategories".to_string(),
            reason: format!("a category id {:?} that is not a ZIA id", id.escape_debug()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn diff_adds_and_removes_only_the_difference() {
        let current = strings(&["c.example", "a.example", "b.example"]);
        let wanted = strings(&["b.example", "d.example", "c.example"]);
        let diff = Diff::between(&current, &wanted);
        assert_eq!(diff.add, strings(&["d.example"]));
        assert_eq!(diff.remove, strings(&["a.example"]));
        assert!(Diff::between(&current, &current).is_empty());
        let from_nothing = Diff::between(&[], &wanted);
        assert_eq!(from_nothing.add.len(), 3);
        assert!(from_nothing.remove.is_empty());
    }

    #[test]
    fn quota_counts_what_removals_free() {
        assert!(check_quota(10, 0, 10).is_ok());
        assert!(check_quota(0, 5, 5).is_ok());
        match check_quota(10, 2, 15) {
            Err(ZiaError::QuotaExceeded {
                available, excess, ..
            }) => {
                assert_eq!(available, 12);
                assert_eq!(excess, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_are_found_without_regard_to_case() {
        let category = |id: &str, name: &str| RemoteCategory {
            id: id.to_string(),
            configured_name: Some(name.to_string()),
            super_category: None,
            urls: Vec::new(),
        };
        let all = [
            category("CUSTOM_01", "mcas unsanctioned apps"),
            category("CUSTOM_02", "MS DEFENDER Unsanctioned Apps"),
        ];
        let ours = "MCAS Unsanctioned Apps";
        assert_eq!(find(&all, ours).unwrap().id, "CUSTOM_01");
        assert_eq!(find_defender(&all, ours).unwrap().id, "CUSTOM_02");
        assert!(find_defender(&all, "MS Defender Unsanctioned Apps").is_none());
    }

    #[test]
    fn ids_must_be_zia_ids() {
        assert!(check_id("CUSTOM_01").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
    }
}
