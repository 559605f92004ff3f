//! The tenant's custom URL categories as ZIA keeps them: the saved configuration the API
//! reads and writes, the activated one ZIA enforces, the quota and ZIA's URL rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A custom URL category, with the attributes a full PUT replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZiaCategory {
    /// `CUSTOM_NN`, given by the emulator.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub configured_name: String,
    #[serde(default)]
    pub super_category: String,
    #[serde(default)]
    pub custom_category: bool,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub keywords_retaining_parent_category: Vec<String>,
    #[serde(default)]
    pub db_categorized_urls: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Admin scopes, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Value>,
}

impl ZiaCategory {
    /// A custom category named `name` (super category USER_DEFINED) holding `urls`.
    pub fn new(name: &str, urls: &[&str]) -> ZiaCategory {
        ZiaCategory {
            id: String::new(),
            configured_name: name.to_string(),
            super_category: "USER_DEFINED".to_string(),
            custom_category: true,
            kind: "URL_CATEGORY".to_string(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            keywords: Vec::new(),
            keywords_retaining_parent_category: Vec::new(),
            db_categorized_urls: Vec::new(),
            description: String::new(),
            scopes: None,
        }
    }
}

/// A refusal, answered as `{"code": ..., "message": ...}` (`{"message": ...}` alone when
/// `code` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            code: "INVALID_INPUT_ARGUMENT",
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> Refusal {
        Refusal {
            status: 404,
            code: "RESOURCE_NOT_FOUND",
            message: format!("URL category {id} not found"),
        }
    }
}

/// Saved and activated configuration.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// What the API reads and writes (saved, maybe not yet activated).
    pub saved: BTreeMap<String, ZiaCategory>,
    /// What ZIA enforces: the saved configuration at the last activation.
    pub activated: BTreeMap<String, ZiaCategory>,
    /// Custom URLs the tenant may hold across its custom categories.
    pub quota: u64,
    /// Custom categories the tenant may have.
    pub max_categories: usize,
    next_id: u32,
}

impl Tenant {
    pub fn new(quota: u64, max_categories: usize) -> Tenant {
        Tenant {
            saved: BTreeMap::new(),
            activated: BTreeMap::new(),
            quota,
            max_categories,
            next_id: 1,
        }
    }

    /// Whether saved changes wait for an activation.
    pub fn pending(&self) -> bool {
        self.saved != self.activated
    }

    /// Publishes the saved configuration.
    pub fn activate(&mut self) {
        self.activated = self.saved.clone();
    }

    /// Distinct custom URLs across the saved categories.
    pub fn provisioned(&self) -> u64 {
        provisioned(self.saved.values())
    }

    /// `GET /urlCategories/urlQuota`.
    pub fn quota_answer(&self) -> Value {
        let provisioned = self.provisioned();
        serde_json::json!({
            "uniqueUrlsProvisioned": provisioned,
            "remainingUrlsQuota": self.quota as i64 - provisioned as i64,
        })
    }

    /// Adds a category as another administrator would (tests seed with it): saved and
    /// activated at once. Answers its id.
    pub fn seed(&mut self, mut category: ZiaCategory) -> String {
        category.id = self.new_id();
        category.custom_category = true;
        let id = category.id.clone();
        self.saved.insert(id.clone(), category.clone());
        self.activated.insert(id.clone(), category);
        id
    }

    fn new_id(&mut self) -> String {
        let id = format!("CUSTOM_{:02}", self.next_id);
        self.next_id += 1;
        id
    }

    /// `POST /urlCategories`.
    pub fn create(&mut self, body: &Value) -> Result<ZiaCategory, Refusal> {
        let mut category: ZiaCategory = parse(body)?;
        require_names(&category, true)?;
        check_urls(&category.urls)?;
        if self
            .saved
            .values()
            .any(|c| c.configured_name == category.configured_name)
        {
            return Err(Refusal::invalid(format!(
                "A URL category named {} already exists",
                category.configured_name
            )));
        }
        if self.saved.len() >= self.max_categories {
            return Err(Refusal::invalid(format!(
                "An organization can have a maximum of {} custom URL categories",
                self.max_categories
            )));
        }
        category.urls = dedup(category.urls);
        category.custom_category = true;
        let after = self.saved.values().chain(std::iter::once(&category));
        self.check_quota(provisioned(after))?;
        category.id = self.new_id();
        self.saved.insert(category.id.clone(), category.clone());
        Ok(category)
    }

    /// `PUT /urlCategories/{id}` (`action` none: a full replace, attributes left out are
    /// cleared) or with `ADD_TO_LIST` / `REMOVE_FROM_LIST` (only the URLs change).
    pub fn update(
        &mut self,
        id: &str,
        action: Option<&str>,
        body: &Value,
    ) -> Result<ZiaCategory, Refusal> {
        let current = self
            .saved
            .get(id)
            .cloned()
            .ok_or_else(|| Refusal::not_found(id))?;
        let sent: ZiaCategory = parse(body)?;
        // Incremental writes as recorded against a real tenant carry only the name and
        // the URLs; a full replace sets every attribute, the super category included.
        require_names(&sent, action.is_none())?;
        check_urls(&sent.urls)?;
        let updated = match action {
            None => ZiaCategory {
                id: id.to_string(),
                custom_category: true,
                urls: dedup(sent.urls),
                ..sent
            },
            Some("ADD_TO_LIST") => {
                let mut urls = current.urls.clone();
                urls.extend(sent.urls);
                ZiaCategory {
                    urls: dedup(urls),
                    ..current
                }
            }
            Some("REMOVE_FROM_LIST") => {
                let gone: BTreeSet<&String> = sent.urls.iter().collect();
                let urls = current
                    .urls
                    .iter()
                    .filter(|u| !gone.contains(u))
                    .cloned()
                    .collect();
                ZiaCategory { urls, ..current }
            }
            Some(other) => {
                return Err(Refusal::invalid(format!("Invalid action {other}")));
            }
        };
        let after = self
            .saved
            .values()
            .filter(|c| c.id != id)
            .chain(std::iter::once(&updated));
        let total = provisioned(after);
        if total > self.provisioned() {
            self.check_quota(total)?;
        }
        self.saved.insert(id.to_string(), updated.clone());
        Ok(updated)
    }

    /// `DELETE /urlCategories/{id}`.
    pub fn delete(&mut self, id: &str) -> Result<(), Refusal> {
        self.saved
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| Refusal::not_found(id))
    }

    fn check_quota(&self, total: u64) -> Result<(), Refusal> {
        if total > self.quota {
            return Err(Refusal::invalid(format!(
                "An organization can have a maximum of {} custom URLs. Currently {} are already provisioned and this request would make {}.",
                self.quota,
                self.provisioned(),
                total
            )));
        }
        Ok(())
    }
}

fn provisioned<'a>(categories: impl Iterator<Item = &'a ZiaCategory>) -> u64 {
    categories
        .flat_map(|c| c.urls.iter())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

fn dedup(urls: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    urls.into_iter()
        .filter(|u| seen.insert(u.clone()))
        .collect()
}

/// A body that is not a category is answered as a real tenant answered it: a `message`
/// and no `code`.
fn parse(body: &Value) -> Result<ZiaCategory, Refusal> {
    serde_json::from_value(body.clone()).map_err(|_| Refusal {
        status: 400,
        code: "",
        message: "Request body is invalid.".to_string(),
    })
}

/// Every write must carry `configuredName`; a create and a full PUT `superCategory` too.
fn require_names(category: &ZiaCategory, super_category_needed: bool) -> Result<(), Refusal> {
    if category.configured_name.is_empty() {
        return Err(Refusal::invalid("configuredName is required"));
    }
    if super_category_needed && category.super_category.is_empty() {
        return Err(Refusal::invalid("superCategory is required"));
    }
    let name_ok = category
        .configured_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _-.()".contains(c));
    if !name_ok {
        return Err(Refusal::invalid(format!(
            "Invalid category name {}",
            category.configured_name
        )));
    }
    Ok(())
}

/// One URL ZIA refuses refuses the whole request.
fn check_urls(urls: &[String]) -> Result<(), Refusal> {
    match urls.iter().find(|u| !url_is_valid(u)) {
        Some(bad) => Err(Refusal::invalid(format!("Invalid URL: {bad}"))),
        None => Ok(()),
    }
}

/// ZIA's URL rules: lower-case ASCII, no scheme, no `*`, at most 1,024 characters, a host
/// of at most 255 with labels of at most 63, a leading dot allowed, no bare TLD.
pub fn url_is_valid(url: &str) -> bool {
    if url.is_empty() || url.len() > 1024 {
        return false;
    }
    if !url
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    {
        return false;
    }
    if url.contains("://") || url.contains('*') {
        return false;
    }
    let rest = url.strip_prefix('.').unwrap_or(url);
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return false,
        None => host_port,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn incremental_updates_keep_other_attributes_full_put_clears_them() {
        let mut tenant = Tenant::new(25_000, 64);
        let mut seeded = ZiaCategory::new("Ours", &["a.example.com"]);
        seeded.description = "kept".to_string();
        seeded.keywords = vec!["kw".to_string()];
        let id = tenant.seed(seeded);
        let names = json!({"configuredName": "Ours", "superCategory": "USER_DEFINED"});
        let mut add = names.clone();
        add["urls"] = json!(["b.example.com"]);
        let after = tenant.update(&id, Some("ADD_TO_LIST"), &add).unwrap();
        assert_eq!(after.urls, vec!["a.example.com", "b.example.com"]);
        assert_eq!(after.description, "kept");
        assert_eq!(after.keywords, vec!["kw"]);
        assert!(tenant.pending());
        let full = tenant.update(&id, None, &add).unwrap();
        assert_eq!(full.description, "");
        assert!(full.keywords.is_empty());
        let missing = tenant
            .update(
                &id,
                Some("ADD_TO_LIST"),
                &json!({"urls": ["c.example.com"]}),
            )
            .unwrap_err();
        assert_eq!(missing.message, "configuredName is required");
        let without_super = json!({"configuredName": "Ours", "urls": ["c.example.com"]});
        let after = tenant
            .update(&id, Some("ADD_TO_LIST"), &without_super)
            .unwrap();
        assert_eq!(after.super_category, "USER_DEFINED", "kept as it was");
        let refused = tenant.update(&id, None, &without_super).unwrap_err();
        assert_eq!(refused.message, "superCategory is required");
    }

    #[test]
    fn quota_and_url_rules() {
        let mut tenant = Tenant::new(3, 64);
        let body = json!({"configuredName": "X", "superCategory": "USER_DEFINED",
            "urls": ["a.example.com", "b.example.com", "c.example.com", "d.example.com"]});
        let refused = tenant.create(&body).unwrap_err();
        assert!(refused
            .message
            .starts_with("An organization can have a maximum of 3 custom URLs."));
        let body = json!({"configuredName": "X", "superCategory": "USER_DEFINED",
            "urls": ["a.example.com", "HTTP://b.example.com"]});
        assert!(tenant
            .create(&body)
            .unwrap_err()
            .message
            .contains("Invalid URL"));
        assert!(tenant.saved.is_empty());
        assert!(!url_is_valid("com"));
        assert!(url_is_valid(".example.com"));
    }
}
