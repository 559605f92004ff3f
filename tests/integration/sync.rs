//! The unsanctioned-apps sync through `nss sync-now` and `nss url-categories --json`,
//! against the emulator: the category filled and replaced, the other categories left
//! alone, the appliance's limits kept, MCAS's lines normalised, a refused token reported.

use std::path::{Path, PathBuf};

use mcas_emulator::{Endpoint, Fault};
use serde_json::{json, Value};

use crate::support::harness::*;

const CATEGORY: &str = "MCAS Unsanctioned Apps";

/// What a one-shot `nss` command did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A world with a configuration file for one-shot commands.
struct Setup {
    world: World,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Setup {
    async fn start() -> Setup {
        let world = World::start().await;
        let config = world.dir.path().join("config.toml");
        world.settings().write(&config);
        let state_dir = world.dir.path().join("state");
        Setup {
            world,
            config,
            state_dir,
        }
    }

    /// Runs `nss --config <config> <args>` without blocking the emulator's runtime.
    async fn nss(&self, args: &[&str]) -> Run {
        let mut command = nss();
        command.arg("--config").arg(&self.config).args(args);
        let output = tokio::process::Command::from(command)
            .output()
            .await
            .unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "the token was printed"
        );
        run
    }

    /// `nss sync-now`, which must succeed.
    async fn sync(&self) -> Run {
        let run = self.nss(&["sync-now"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        run
    }

    /// `nss url-categories --json`.
    async fn categories(&self) -> Value {
        let run = self.nss(&["url-categories", "--json"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    }

    fn store(&self) -> PathBuf {
        self.state_dir.join("url-categories.json")
    }

    /// Puts categories of another source into the store, as the appliance's admin would.
    fn seed(&self, categories: &[(String, Vec<String>)]) {
        let categories: Vec<Value> = categories
            .iter()
            .map(|(name, urls)| {
                json!({"name": name, "urls": urls, "updated": "2025-06-01T12:00:00Z", "source": "admin"})
            })
            .collect();
        std::fs::create_dir_all(&self.state_dir).unwrap();
        std::fs::write(
            self.store(),
            serde_json::to_vec_pretty(&json!({ "categories": categories })).unwrap(),
        )
        .unwrap();
    }
}

fn domains(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!(".{prefix}{i}.example.com")).collect()
}

fn category<'a>(categories: &'a Value, name: &str) -> Option<&'a Value> {
    categories["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

fn sorted(mut urls: Vec<String>) -> Vec<String> {
    urls.sort();
    urls
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_fills_the_category_and_the_next_replaces_it() {
    let setup = Setup::start().await;
    let finance = vec!["bank.example".to_string(), ".broker.example".to_string()];
    setup.seed(&[("Finance".to_string(), finance.clone())]);

    let first = domains("app", 0..30);
    setup.world.emulator.set_banned(first.clone());
    let run = setup.sync().await;
    assert!(run.stdout.contains(CATEGORY), "{}", run.stdout);
    assert!(run.stdout.contains("URLs:    30"), "{}", run.stdout);
    assert!(run.stdout.contains("added:   30"), "{}", run.stdout);
    assert!(run.stdout.contains("removed: 0"), "{}", run.stdout);

    let categories = setup.categories().await;
    assert_eq!(categories["total_urls"], 32);
    assert_eq!(
        categories["limits"],
        json!({"max_custom_urls": 25000, "max_custom_categories": 48})
    );
    let ours = category(&categories, CATEGORY).unwrap();
    assert_eq!(ours["url_count"], 30);
    assert_eq!(ours["urls"], json!(sorted(first.clone())));
    assert_eq!(ours["source"], "mcas-sync");
    let updated = ours["updated"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(updated).is_ok() && updated.ends_with('Z'));
    let others = json!({"name": "Finance", "url_count": 2, "urls": finance,
                        "updated": "2025-06-01T12:00:00Z", "source": "admin"});
    assert_eq!(category(&categories, "Finance").unwrap(), &others);

    // Ten apps sanctioned again, five new ones unsanctioned.
    let mut second = first[10..].to_vec();
    second.extend(domains("new", 0..5));
    setup.world.emulator.set_banned(second.clone());
    let run = setup.sync().await;
    assert!(run.stdout.contains("URLs:    25"), "{}", run.stdout);
    assert!(run.stdout.contains("added:   5"), "{}", run.stdout);
    assert!(run.stdout.contains("removed: 10"), "{}", run.stdout);

    let categories = setup.categories().await;
    assert_eq!(categories["total_urls"], 27);
    let ours = category(&categories, CATEGORY).unwrap();
    assert_eq!(ours["url_count"], 25);
    assert_eq!(ours["urls"], json!(sorted(second)));
    assert_eq!(category(&categories, "Finance").unwrap(), &others);

    let table = setup.nss(&["url-categories"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains(CATEGORY) && table.stdout.contains("Finance"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("custom URLs: 27 of 25000"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_the_url_limit_fails_and_keeps_the_previous_urls() {
    let setup = Setup::start().await;
    let others: Vec<String> = (0..24_990).map(|i| format!("site{i}.example")).collect();
    setup.seed(&[("Allowed sites".to_string(), others)]);

    // 24,990 + 10 = 25,000: just within the limit.
    setup.world.emulator.set_banned(domains("app", 0..10));
    setup.sync().await;
    let before = setup.categories().await;
    assert_eq!(before["total_urls"], 25_000);
    let file_before = read(&setup.store());

    // 24,990 + 11 = 25,001.
    setup.world.emulator.set_banned(domains("app", 0..11));
    let run = setup.nss(&["sync-now"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needed in [
        "25000 custom URLs",
        "exceeded by 1",
        "sync.max_custom_urls",
        "unsanction apps in MCAS",
        "keeps its previous URLs",
    ] {
        assert!(run.stderr.contains(needed), "{needed:?}: {}", run.stderr);
    }
    assert_eq!(read(&setup.store()), file_before, "the store was rewritten");
    assert_eq!(setup.categories().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_49th_category_fails_naming_the_category_limit() {
    let setup = Setup::start().await;
    let seeded: Vec<(String, Vec<String>)> = (0..48)
        .map(|i| (format!("Category {i}"), vec![format!("site{i}.example")]))
        .collect();
    setup.seed(&seeded);
    let file_before = read(&setup.store());

    setup.world.emulator.set_banned(domains("app", 0..3));
    let run = setup.nss(&["sync-now"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needed in [
        "48 custom URL categories",
        "exceeded by 1",
        "sync.max_custom_categories",
        "remove custom URL categories",
    ] {
        assert!(run.stderr.contains(needed), "{needed:?}: {}", run.stderr);
    }
    assert_eq!(read(&setup.store()), file_before, "the store was rewritten");
    let categories = setup.categories().await;
    assert_eq!(categories["categories"].as_array().unwrap().len(), 48);
    assert!(category(&categories, CATEGORY).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_normalised_and_garbage_dropped() {
    let setup = Setup::start().await;
    let lines = [
        ".Reddit.COM",
        "reddit.com\r",
        ".reddit.com",
        "  .redd.it  ",
        ".reddit.com",
        ".bücher.example",
        "BÜCHER.example",
        "",
        "https://evil.example/path",
        "not a domain",
        "*.wild.example",
        "<html><body>Sign in</body></html>",
    ];
    let long_label = format!("{}.example", "x".repeat(64));
    let mut banned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    banned.push(long_label);
    setup.world.emulator.set_banned(banned);

    let run = setup.sync().await;
    assert!(
        run.stdout.contains("invalid lines dropped: 5"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("https://evil.example/path"),
        "{}",
        run.stdout
    );
    let categories = setup.categories().await;
    let ours = category(&categories, CATEGORY).unwrap();
    assert_eq!(
        ours["urls"],
        json!([
            ".redd.it",
            ".reddit.com",
            ".xn--bcher-kva.example",
            "reddit.com",
            "xn--bcher-kva.example"
        ])
    );
    assert_eq!(ours["url_count"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exits_69_and_changes_nothing() {
    let setup = Setup::start().await;
    setup.world.emulator.set_banned(domains("app", 0..3));
    setup.sync().await;
    let file_before = read(&setup.store());

    setup.world.emulator.push_fault(
        Endpoint::BlockScript,
        Fault::Status {
            code: 401,
            retry_after: None,
            body: "{\"detail\": \"Invalid token.\"}".to_string(),
        },
        1,
    );
    setup.world.emulator.set_banned(domains("app", 0..1));
    let run = setup.nss(&["sync-now"]).await;
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr.contains("MCAS refused the API token (HTTP 401)")
            && run.stderr.contains("configure-mcas"),
        "{}",
        run.stderr
    );
    assert_eq!(read(&setup.store()), file_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_categories_needs_no_token_but_sync_now_does() {
    let setup = Setup::start().await;
    let mut settings = world_without_token(&setup.world);
    settings.write(&setup.config);
    setup.seed(&[("Finance".to_string(), vec!["bank.example".to_string()])]);

    let categories = setup.categories().await;
    assert_eq!(categories["total_urls"], 1);
    let run = setup.nss(&["sync-now"]).await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("mcas.token"), "{}", run.stderr);

    // A damaged store is refused by name, and left for the administrator to repair.
    std::fs::write(setup.store(), b"{\"categories\": [").unwrap();
    let run = setup.nss(&["url-categories", "--json"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("url-categories.json") && run.stderr.contains("damaged"),
        "{}",
        run.stderr
    );
    settings.set("mcas.token", &quote(TOKEN));
    settings.write(&setup.config);
    let run = setup.nss(&["sync-now"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert_eq!(read(&setup.store()), b"{\"categories\": [");
}

/// The world's settings without the token.
fn world_without_token(world: &World) -> Settings {
    let settings = world.settings();
    let mut without = Settings::default();
    for key in [
        "mcas.domain",
        "mcas.ca_file",
        "feed.listen",
        "metrics.listen",
        "paths.state_dir",
        "paths.runtime_dir",
    ] {
        without.set(key, settings.get(key).unwrap());
    }
    without
}
