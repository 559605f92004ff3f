//! `nss sync-now`: one unsanctioned-apps sync, printed, then exit. With a daemon running,
//! the daemon does it (asked on its control socket) and this prints its result; without
//! one, it is done here, as the owner of the state directory when run as root.

use anyhow::Context;

use super::Unavailable;
use crate::category_sync::counters::ZiaPushCounters;
use crate::category_sync::{self, publish, CategoryStore, SyncOutcome};
use crate::clock::rfc3339;
use crate::config::Settings;
use crate::control::{self, PushReply, Reply, Request};
use crate::mcas::McasClient;
use crate::pidfile;
use crate::untrusted::escaped_lines;
use crate::zia::ZiaClient;

/// Runs one sync, pushes the category into ZIA when `[zia]` is set, and prints what they
/// did: through the running daemon when there is one, else here as the owner of the state
/// directory. MCAS or ZIA refusing or unreachable comes back as an
/// [`crate::mcas::ApiError`] or [`crate::zia::ZiaError`] in the chain, or [`Unavailable`]
/// from the daemon (exit 69); a missing domain or token as a
/// [`crate::config::ConfigError`] (exit 78). `accept_empty` applies an answer that empties
/// the category or cuts it by more than 90%.
pub fn run(settings: &Settings, accept_empty: bool) -> anyhow::Result<()> {
    let store = CategoryStore::in_state_dir(&settings.paths.state_dir);
    // The running daemon has its credentials (a systemd credential reaches only it): the
    // command needs them only when it syncs itself.
    if let Some(pid) = pidfile::running(&settings.paths.runtime_dir) {
        let request = Request::SyncNow { accept_empty };
        let reply = control::ask(&settings.paths.runtime_dir, &request)
            .with_context(|| format!("cannot ask the running daemon (pid {pid}) for a sync"))?;
        return match reply {
            // The answer comes from the daemon's account: its texts are shown escaped.
            Reply::Synced { outcome, zia } => {
                print!("{}", escaped_lines(&render(settings, &store, &outcome)));
                match zia {
                    None => {
                        println!("{NOT_CONFIGURED}");
                        Ok(())
                    }
                    Some(PushReply::Pushed(text)) => {
                        print!("{}", escaped_lines(&text));
                        Ok(())
                    }
                    Some(PushReply::Failed(message)) => Err(Unavailable(format!(
                        "the daemon's push into ZIA failed: {message}"
                    ))
                    .into()),
                }
            }
            Reply::Failed {
                message,
                unavailable: true,
            } => Err(Unavailable(format!("the daemon's sync failed: {message}")).into()),
            Reply::Failed { message, .. } => {
                Err(anyhow::anyhow!("the daemon's sync failed: {message}"))
            }
            Reply::Reloaded | Reply::ReloadRefused { .. } => Err(anyhow::anyhow!(
                "the daemon answered a sync with a reload's outcome"
            )),
        };
    }
    let target = settings.mcas_target()?;
    let zia_target = settings.zia_target()?;
    // Every file this leaves must belong to the daemon's user, who replaces them later.
    crate::privilege::act_as_state_owner(&settings.paths.state_dir)?;
    let client = McasClient::from_settings(&target, &settings.upload, Default::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(category_sync::sync_once(
        &client,
        &store,
        &settings.sync,
        accept_empty,
    ))?;
    print!("{}", render(settings, &store, &outcome));
    let Some(zia_target) = zia_target else {
        println!("{NOT_CONFIGURED}");
        return Ok(());
    };
    let zia = ZiaClient::new(&zia_target)?;
    // This command's own push: what it did is printed, not kept for the daemon's status.
    let pushed = ZiaPushCounters::default();
    let report = runtime.block_on(publish::push_category(
        &zia,
        &store,
        &settings.sync.category,
        &pushed,
    ))?;
    print!("{}", publish::render(&report));
    Ok(())
}

/// What sync-now says when `[zia]` is not set.
const NOT_CONFIGURED: &str = "ZIA: not configured (zia.base_url is empty): the category stays on the appliance; `sudo nss configure-zia` sets it up";

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
