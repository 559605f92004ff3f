//! The unsanctioned-apps sync: MCAS's block script becomes the URLs of one custom URL
//! category (`sync.category`), within the appliance's limits; the other categories are
//! never touched.

pub(crate) mod counters;
pub(crate) mod guard;
pub(crate) mod normalize;
pub(crate) mod publish;
pub(crate) mod store;

use std::path::Path;
use std::time::{Duration, SystemTime};

pub use normalize::Normalized;
pub use store::{Category, CategoryStore, LimitError, Limits, Replaced, StoreError, SYNC_SOURCE};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::rfc3339;
use crate::config::SyncSettings;
use crate::error_text::one_line;
use crate::mcas::{ApiError, BlockScript, McasClient, Step};
use crate::zia::{PushReport, ZiaClient};
use counters::SyncCounters;

/// How far the wait between two syncs strays from `sync.interval`, either way, so that
/// appliances started together do not call MCAS together.
const JITTER: f64 = 0.05;

/// What one successful sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// When the category was written.
    pub at: SystemTime,
    /// URLs the category holds now.
    pub urls: u64,
    /// URLs new in it.
    pub added: u64,
    /// URLs that left it.
    pub removed: u64,
    /// Lines of MCAS's answer dropped because they are not a domain name.
    pub invalid: u64,
    /// The first few of those lines, escaped for printing.
    pub invalid_examples: Vec<String>,
    /// Custom URLs across all categories now.
    pub total_urls: u64,
    /// Custom categories now.
    pub categories: u64,
}

/// Why a sync changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// MCAS refused or could not be reached (or answered something that is not a list).
    #[error("cannot fetch the unsanctioned apps from MCAS")]
    Api(#[from] ApiError),
    /// The new URLs would pass a limit of the appliance.
    #[error("the category {category:?} was not updated and keeps its previous URLs")]
    Limit {
        category: String,
        #[source]
        source: LimitError,
    },
    /// The category store cannot be read or written.
    #[error(transparent)]
    Store(StoreError),
    /// The answer would empty the category or cut it by more than 90%: held back once.
    #[error(
        "MCAS's answer would take the category {category:?} from {kept} URLs to {offered}; \
         an empty or cut-short answer (from a proxy, say) would unblock every app, so the previous URLs are kept. \
         The same answer at the next sync is taken as meant; `nss sync-now --accept-empty` takes it now"
    )]
    HeldBack {
        category: String,
        kept: u64,
        offered: u64,
    },
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> SyncError {
        match error {
            StoreError::Limit(source) => SyncError::Limit {
                category: match &source {
                    LimitError::Urls { category, .. } | LimitError::Categories { category, .. } => {
                        category.clone()
                    }
                },
                source,
            },
            other => SyncError::Store(other),
        }
    }
}

/// Fetches the unsanctioned apps and makes them the URLs of `settings.category`. An
/// answer that would empty the category or cut it by more than 90% is held back
/// ([`SyncError::HeldBack`]) unless it came the same the time before, or `accept_empty`.
pub async fn sync_once(
    client: &McasClient,
    store: &CategoryStore,
    settings: &SyncSettings,
    accept_empty: bool,
) -> Result<SyncOutcome, SyncError> {
    let body = client.block_script(BlockScript::Banned).await?;
    let list = normalize::block_script(&body);
    if list.urls.is_empty() && list.invalid > 0 {
        // An empty answer means no app is unsanctioned; lines that are all garbage (a
        // proxy's HTML page, say) mean something else answered. Emptying the category on
        // such an answer would unblock every app.
        return Err(ApiError::Transient {
            step: Step::BlockScript,
            reason: format!(
                "the answer holds {} lines and not one domain name (the first: \"{}\")",
                list.invalid,
                list.examples.first().map(String::as_str).unwrap_or("")
            ),
            retry_after: None,
            throttled: false,
        }
        .into());
    }
    if list.invalid > 0 {
        tracing::warn!(
            invalid = list.invalid,
            examples = ?list.examples,
            "lines of the unsanctioned-apps list that are not domain names were dropped"
        );
    }

    let store = store.clone();
    let category = settings.category.clone();
    let limits = Limits::of(settings);
    let mut urls = list.urls;
    urls.sort();
    urls.dedup();
    // File I/O and waiting for the store's lock, off the async workers.
    let replaced = tokio::task::spawn_blocking(move || -> Result<Replaced, SyncError> {
        let kept = store
            .load()?
            .iter()
            .find(|c| c.name == category)
            .map_or(0, |c| c.urls.len() as u64);
        let guard = guard::Guard::in_state_dir(store.path().parent().unwrap_or(Path::new(".")));
        let verdict = guard
            .judge(&category, kept, &urls, accept_empty)
            .map_err(|source| {
                SyncError::Store(StoreError::Io {
                    action: "remember the answer held back beside",
                    path: store.path().to_path_buf(),
                    source,
                })
            })?;
        if verdict == guard::Verdict::HoldBack {
            return Err(SyncError::HeldBack {
                category,
                kept,
                offered: urls.len() as u64,
            });
        }
        Ok(store.replace(&category, SYNC_SOURCE, urls, limits)?)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;

    tracing::info!(
        category = %settings.category,
        urls = replaced.urls,
        added = replaced.added,
        removed = replaced.removed,
        invalid = list.invalid,
        "unsanctioned apps synced"
    );
    Ok(SyncOutcome {
        at: SystemTime::now(),
        urls: replaced.urls,
        added: replaced.added,
        removed: replaced.removed,
        invalid: list.invalid,
        invalid_examples: list.examples,
        total_urls: replaced.total_urls,
        categories: replaced.categories,
    })
}

/// The wait until the next sync: `interval`, give or take 5%.
pub fn next_delay(interval: Duration) -> Duration {
    let offset = (fastrand::f64() * 2.0 - 1.0) * JITTER;
    interval.mul_f64(1.0 + offset)
}

/// After a failed sync, the next try comes at most this soon (or after the interval, if
/// shorter): the appliance promises a sync within two hours.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);

/// A sync asked for by `nss sync-now` through the daemon's control socket.
#[derive(Debug)]
pub struct SyncRequest {
    /// Apply an answer that empties the category (or cuts it by more than 90%).
    pub accept_empty: bool,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<SyncDone>,
}

/// What one sync of the daemon did: the sync itself and, when it succeeded and `[zia]` is
/// set, the push into ZIA.
#[derive(Debug)]
pub struct SyncDone {
    pub result: Result<SyncOutcome, SyncError>,
    pub pushed: Option<Result<PushReport, publish::PushError>>,
}

/// The queue of [`SyncRequest`]s, handed from the sync task of one pipeline to the next.
pub type SyncRequests = mpsc::Receiver<SyncRequest>;

/// The daemon's sync: one right away, then every `settings.interval` (with jitter), and one
/// whenever a [`SyncRequest`] comes; each recorded in `counters` for `nss status` and the
/// metrics; after each successful one, the category is pushed into `zia` when there is
/// one. Runs until `cancel`, then gives the queue back for the next pipeline's sync.
pub async fn run(
    client: McasClient,
    zia: Option<std::sync::Arc<ZiaClient>>,
    store: CategoryStore,
    settings: SyncSettings,
    counters: std::sync::Arc<SyncCounters>,
    mut requests: SyncRequests,
    cancel: CancellationToken,
) -> SyncRequests {
    // `return` ends this block, not the function: the queue goes back either way.
    async {
        let mut asked: Option<SyncRequest> = None;
        loop {
            let accept_empty = asked.as_ref().is_some_and(|r| r.accept_empty);
            let result = tokio::select! {
                result = sync_once(&client, &store, &settings, accept_empty) => result,
                _ = cancel.cancelled() => return,
            };
            let mut delay = record(&counters, &settings, &result);
            let pushed = match (&zia, &result) {
                (Some(zia), Ok(_)) => Some(tokio::select! {
                    pushed = publish::push_category(zia, &store, &settings.category, &counters.zia) => pushed,
                    _ = cancel.cancelled() => return,
                }),
                _ => None,
            };
            if matches!(pushed, Some(Err(_))) {
                // ZIA keeps its current content meanwhile; the next try comes as soon as after
                // a failed sync.
                delay = next_delay(settings.interval.min(RETRY_AFTER_FAILURE));
            }
            match asked.take() {
                Some(request) => {
                    let _ = request.reply.send(SyncDone { result, pushed });
                }
                None => drop((result, pushed)),
            }
            // Checked: a bounded interval still must not overflow the wall clock's range.
            let next = SystemTime::now().checked_add(delay);
            if let Some(next) = next {
                counters.next.set(next);
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                Some(request) = requests.recv() => asked = Some(request),
                _ = cancel.cancelled() => return,
            }
        }
    }
    .await;
    requests
}

/// Records a sync's result in `sync` and says when the next one is due.
fn record(
    sync: &SyncCounters,
    settings: &SyncSettings,
    result: &Result<SyncOutcome, SyncError>,
) -> Duration {
    match result {
        Ok(outcome) => {
            sync.last_success.set(outcome.at);
            sync.urls.set(outcome.urls);
            sync.added.set(outcome.added);
            sync.removed.set(outcome.removed);
            sync.last_error.set(None);
            next_delay(settings.interval)
        }
        Err(error) => {
            let text = one_line(error);
            tracing::error!(error = %text, "the unsanctioned-apps sync failed; the category keeps its previous URLs");
            sync.last_error
                .set(Some(format!("{}: {text}", rfc3339(SystemTime::now()))));
            next_delay(settings.interval.min(RETRY_AFTER_FAILURE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_strays_at_most_five_percent() {
        let interval = Duration::from_secs(7200);
        let delays: Vec<Duration> = (0..1000).map(|_| next_delay(interval)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(6840) && *d <= Duration::from_secs(7560)));
        assert!(delays.iter().any(|d| *d != delays[0]), "no jitter");
    }

    #[test]
    fn a_limit_error_stays_in_the_chain() {
        let error = SyncError::from(StoreError::Limit(LimitError::Categories {
            limit: 48,
            over: 1,
            category: "apps".to_string(),
            count: 49,
        }));
        let source = std::error::Error::source(&error).unwrap();
        assert!(source.to_string().contains("48 custom URL categories"));
        assert!(error.to_string().contains("\"apps\""));
    }
}
