//! The last step of a sync: the category, as the store now holds it, pushed into the
//! tenant's ZIA, where URL filtering policy uses it. The store stays the record of what
//! was pushed; ZIA gets only the difference (see [`crate::zia`]).

use std::time::SystemTime;

use super::counters::{ZiaCategoryReport, ZiaPushCounters};
use super::{CategoryStore, StoreError};
use crate::clock::rfc3339;
use crate::zia::{PushReport, ZiaClient, ZiaError};

/// Why the category did not reach ZIA.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The store could not be read: nothing was sent.
    #[error("cannot read the category store")]
    Store(#[from] StoreError),
    /// ZIA refused, was unreachable, or the list would pass the tenant's quota.
    #[error("the category was not pushed into ZIA; ZIA keeps its current content")]
    Zia(#[from] ZiaError),
}

/// Pushes the URLs the store holds for `category` into ZIA and records the outcome in
/// `stats` (for `nss status` and the metrics).
pub async fn push_category(
    zia: &ZiaClient,
    store: &CategoryStore,
    category: &str,
    stats: &ZiaPushCounters,
) -> Result<PushReport, PushError> {
    let result = push(zia, store, category).await;
    record(stats, &result);
    result
}

async fn push(
    zia: &ZiaClient,
    store: &CategoryStore,
    category: &str,
) -> Result<PushReport, PushError> {
    let reader = store.clone();
    // File I/O and the store's lock, off the async workers.
    let categories = tokio::task::spawn_blocking(move || reader.load())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let urls = categories
        .into_iter()
        .find(|c| c.name == category)
        .map(|c| c.urls)
        .unwrap_or_default();
    let report = zia.push_category(category, &urls).await?;
    if report.invalid > 0 {
        tracing::warn!(
            invalid = report.invalid,
            examples = ?report.invalid_examples,
            "URLs ZIA would refuse were left out of the push"
        );
    }
    tracing::info!(
        category,
        id = %report.category_id,
        created = report.created,
        added = report.added,
        removed = report.removed,
        urls = report.urls,
        quota_remaining = report.quota_remaining,
        activation = report.activation.as_ref().map_or("none: nothing changed", |a| a.as_str()),
        "the category is in ZIA"
    );
    Ok(report)
}

/// Keeps what `nss status` shows of the push.
fn record(stats: &ZiaPushCounters, result: &Result<PushReport, PushError>) {
    match result {
        Ok(report) => {
            stats.last_push.set(SystemTime::now());
            stats.pushes.add(1);
            stats.urls.set(report.urls);
            stats.category_id.set(Some(report.category_id.clone()));
            stats.quota_remaining.set(Some(report.quota_remaining));
            stats
                .defender_category
                .set(
                    report
                        .defender_category
                        .as_ref()
                        .map(|c| ZiaCategoryReport {
                            name: c.name.clone(),
                            id: c.id.clone(),
                            urls: c.url_count,
                        }),
                );
            if let Some(state) = &report.activation {
                stats.last_activation.set(SystemTime::now());
                stats.activation_state.set(Some(state.as_str().to_string()));
            }
            stats.last_error.set(None);
        }
        Err(error) => {
            let text = crate::error_text::one_line(error);
            tracing::error!(error = %text, "pushing the category into ZIA failed; ZIA keeps its current content");
            if let PushError::Zia(ZiaError::QuotaExceeded { remaining, .. }) = error {
                stats.quota_remaining.set(Some(*remaining));
            }
            stats
                .last_error
                .set(Some(format!("{}: {text}", rfc3339(SystemTime::now()))));
        }
    }
}

/// The push for a person, as `nss sync-now` prints it.
pub fn render(report: &PushReport) -> String {
    let mut text = format!(
        "Pushed into ZIA as {}{}: {} URLs (+{} -{}); custom URL quota left: {}\n",
        report.category_id,
        if report.created { " (created)" } else { "" },
        report.urls,
        report.added,
        report.removed,
        report.quota_remaining,
    );
    if report.invalid > 0 {
        text.push_str(&format!(
            "  left out (ZIA would refuse them): {} (e.g. {})\n",
            report.invalid,
            report.invalid_examples.join(", ")
        ));
    }
    match &report.activation {
        Some(state) => text.push_str(&format!("  activated: {}\n", state.as_str())),
        None => text.push_str("  nothing changed: no write, no activation\n"),
    }
    if let Some(other) = &report.defender_category {
        text.push_str(&format!(
            "  {}\n",
            defender_note(&other.name, &other.id, other.url_count)
        ));
    }
    text
}

/// What to tell the administrator when the tenant also holds the category of Zscaler's
/// own MCAS integration.
pub fn defender_note(name: &str, id: &str, urls: u64) -> String {
    format!(
        "the tenant also holds \"{name}\" ({id}, {urls} URLs), the category of Zscaler's own MCAS integration: the same URLs held twice count twice against the custom URL quota; keep one of the two integrations"
    )
}
