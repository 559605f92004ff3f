//! `nss sync-now`: one unsanctioned-apps sync, printed, then exit.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::mcas::McasClient;
use crate::status::ZiaStats;
use crate::status::{rfc3339, Stats};
use crate::sync::{self, push, CategoryStore, SyncOutcome};
use crate::zia::ZiaClient;

/// Runs one sync against MCAS, pushes the category into ZIA when `[zia]` is set, and
/// prints what they did. MCAS or ZIA refusing or unreachable comes back as an
/// [`crate::mcas::ApiError`] or a [`crate::zia::ZiaError`] in the chain (exit 69), a
/// missing domain or token as a [`crate::config::ConfigError`] (exit 78).
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let target = settings.mcas_target()?;
    let zia = match settings.zia_target()? {
        Some(target) => Some(ZiaClient::new(&target)?),
        None => None,
    };
    let client = McasClient::from_settings(&target, &settings.upload, Arc::new(Stats::default()))?;
    let store = CategoryStore::in_state_dir(&settings.paths.state_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(sync::sync_once(&client, &store, &settings.sync))?;
    print!("{}", render(settings, &store, &outcome));
    let Some(zia) = zia else {
        println!("ZIA: not configured (zia.base_url is empty): the category stays on the appliance; `sudo nss configure-zia` sets it up");
        return Ok(());
    };
    let stats = ZiaStats::default();
    let report = runtime.block_on(push::push_category(
        &zia,
        &store,
        &settings.sync.category,
        &stats,
    ))?;
    print!("{}", push::render(&report));
    Ok(())
}

/// The outcome for a person.
fn render(settings: &Settings, store: &CategoryStore, outcome: &SyncOutcome) -> String {
    let mut text = format!(
        "Synced the unsanctioned apps of MCAS into {:?} at {}\n\
         \x20 URLs:    {}\n\
         \x20 added:   {}\n\
         \x20 removed: {}\n",
        settings.sync.category,
        rfc3339(outcome.at),
        outcome.urls,
        outcome.added,
        outcome.removed,
    );
    if outcome.invalid == 0 {
        text.push_str("  invalid lines dropped: 0\n");
    } else {
        let examples: Vec<String> = outcome
            .invalid_examples
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        text.push_str(&format!(
            "  invalid lines dropped: {} (e.g. {})\n",
            outcome.invalid,
            examples.join(", ")
        ));
    }
    text.push_str(&format!(
        "Custom URL categories: {} of {}; custom URLs: {} of {} ({})\n",
        outcome.categories,
        settings.sync.max_custom_categories,
        outcome.total_urls,
        settings.sync.max_custom_urls,
        store.path().display(),
    ));
    text
}
