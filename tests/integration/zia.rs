//! The ZIA client against the in-process ZIA emulator: what a push sends, what ZIA holds
//! and enforces afterwards, and how the client rides out ZIA's answers.

use std::time::Duration;

use mcas_emulator::zia::{
    FaultScope, ZiaCategory, ZiaConfig, ZiaEmulator, ZiaFault, DEFAULT_API_KEY, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_USERNAME, TEST_CLIENT_KEY_PEM,
};
use nss_agent::config::{OneApiSecret, Secret, ZiaLogin, ZiaTarget};
use nss_agent::zia::{ActivationState, ZiaClient, ZiaError, ZiaOptions};
use tempfile::TempDir;

const CATEGORY: &str = "MCAS Unsanctioned Apps";

/// A ZIA emulator with its certificates in a temporary directory.
struct World {
    dir: TempDir,
    zia: ZiaEmulator,
}

impl World {
    async fn start(adjust: impl FnOnce(&mut ZiaConfig)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ZiaConfig::new(&dir.path().join("certs"));
        adjust(&mut config);
        let zia = ZiaEmulator::start(config).await.unwrap();
        World { dir, zia }
    }

    fn target(&self, login: ZiaLogin) -> ZiaTarget {
        ZiaTarget {
            base_url: self.zia.base_url(),
            login,
            ca_file: Some(self.zia.ca_pem_path()),
            proxy: None,
        }
    }

    fn api_key(&self) -> ZiaTarget {
        self.target(ZiaLogin::ApiKey {
            username: DEFAULT_USERNAME.to_string(),
            password: Secret::new(DEFAULT_PASSWORD),
            api_key: Secret::new(DEFAULT_API_KEY),
        })
    }

    fn oneapi_secret(&self) -> ZiaTarget {
        self.target(ZiaLogin::OneApi {
            token_url: self.zia.token_url(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            secret: OneApiSecret::ClientSecret(Secret::new(DEFAULT_CLIENT_SECRET)),
        })
    }

    fn oneapi_private_key(&self) -> ZiaTarget {
        let key = self.dir.path().join("client.key");
        std::fs::write(&key, TEST_CLIENT_KEY_PEM).unwrap();
        self.target(ZiaLogin::OneApi {
            token_url: self.zia.token_url(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            secret: OneApiSecret::PrivateKey(key),
        })
    }
}

/// Short waits after edit locks and 5xx, so that the tests stay quick; ZIA's pacing is
/// not an option and stays as it is.
fn quick() -> ZiaOptions {
    ZiaOptions {
        edit_lock_wait: Duration::from_millis(200),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..ZiaOptions::default()
    }
}

fn client(target: &ZiaTarget, options: ZiaOptions) -> ZiaClient {
    ZiaClient::with_options(target, options).unwrap()
}

fn urls(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(".{prefix}{i}.example.com"))
        .collect()
}

fn sorted(mut urls: Vec<String>) -> Vec<String> {
    urls.sort();
    urls
}

/// The category `name` as ZIA enforces it.
fn enforced(zia: &ZiaEmulator, name: &str) -> ZiaCategory {
    zia.activated_category(name)
        .unwrap_or_else(|| panic!("{name:?} is not activated: {:?}", zia.activated()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_push_creates_the_category_with_exactly_the_list() {
    let world = World::start(|_| {}).await;
    let wanted = urls("app", 5);
    let report = client(&world.api_key(), quick())
        .push_category(CATEGORY, &wanted)
        .await
        .unwrap();

    assert!(report.created);
    assert_eq!(report.added, 5);
    assert_eq!(report.removed, 0);
    assert_eq!(report.urls, 5);
    assert_eq!(report.quota_remaining, 25_000 - 5);
    assert_eq!(report.activation, Some(ActivationState::Active));
    let saved = world.zia.saved_category(CATEGORY).unwrap();
    assert_eq!(report.category_id, saved.id);
    assert_eq!(sorted(saved.urls), sorted(wanted.clone()));
    assert_eq!(saved.super_category, "USER_DEFINED");
    assert!(!saved.description.is_empty());
    assert_eq!(sorted(enforced(&world.zia, CATEGORY).urls), sorted(wanted));
    let stats = world.zia.stats();
    assert_eq!(
        stats.activations, 1,
        "activated by the client, not by the logout"
    );
    assert_eq!(stats.logouts, 1, "the session is ended after the push");
    let creates: Vec<_> = world
        .zia
        .successful_writes()
        .into_iter()
        .filter(|c| c.method == "POST")
        .collect();
    assert_eq!(creates.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_sent_as_remove_and_add_diffs_in_slices_and_activated_once() {
    let world = World::start(|_| {}).await;
    // Ours, with attributes another admin set; and another admin's category.
    let mut ours = ZiaCategory::new(CATEGORY, &[".old0.example.com", ".keep.example.com"]);
    ours.description = "Set by the security team".to_string();
    ours.keywords = vec!["casino".to_string()];
    world.zia.seed(ours);
    let theirs = ZiaCategory::new(
        "Finance Partners",
        &["bank.example.net", ".pay.example.org"],
    );
    world.zia.seed(theirs.clone());

    let wanted = vec![
        ".keep.example.com".to_string(),
        ".new0.example.com".to_string(),
        ".new1.example.com".to_string(),
        ".new2.example.com".to_string(),
    ];
    let options = ZiaOptions {
        slice: 2,
        ..quick()
    };
    // OneAPI has no logout, so only the client's own activation can publish the change.
    let report = client(&world.oneapi_secret(), options)
        .push_category(CATEGORY, &wanted)
        .await
        .unwrap();

    assert!(!report.created);
    assert_eq!((report.added, report.removed), (3, 1));
    assert_eq!(report.writes, 3, "one REMOVE, two ADD slices");
    let writes = world.zia.successful_writes();
    let actions: Vec<&str> = writes.iter().map(|c| c.query.as_str()).collect();
    assert_eq!(
        actions,
        [
            "action=REMOVE_FROM_LIST",
            "action=ADD_TO_LIST",
            "action=ADD_TO_LIST"
        ],
        "{writes:#?}"
    );
    assert_eq!(writes[0].urls(), [".old0.example.com"]);
    let added: Vec<String> = writes[1..].iter().flat_map(|c| c.urls()).collect();
    assert_eq!(
        added,
        [
            ".new0.example.com",
            ".new1.example.com",
            ".new2.example.com"
        ]
    );
    for write in &writes {
        let body = write.body.as_ref().unwrap();
        assert_eq!(body["configuredName"], CATEGORY);
        assert_eq!(body["superCategory"], "USER_DEFINED");
        assert!(body.get("description").is_none(), "{body}");
    }

    let stats = world.zia.stats();
    assert_eq!(stats.activations, 1);
    assert_eq!(stats.throttled, 0, "writes paced to one a second");
    assert!(!world.zia.pending());
    let now = enforced(&world.zia, CATEGORY);
    assert_eq!(sorted(now.urls), sorted(wanted));
    assert_eq!(now.description, "Set by the security team");
    assert_eq!(now.keywords, ["casino"]);
    let other = enforced(&world.zia, "Finance Partners");
    assert_eq!(other.urls, theirs.urls);
    assert_eq!(
        world.zia.saved_category("Finance Partners").unwrap().urls,
        theirs.urls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_changes_nothing_writes_nothing_and_does_not_activate() {
    let world = World::start(|_| {}).await;
    let client = client(&world.oneapi_secret(), quick());
    let wanted = urls("same", 3);
    client.push_category(CATEGORY, &wanted).await.unwrap();
    let before = world.zia.stats();

    let report = client.push_category(CATEGORY, &wanted).await.unwrap();

    assert_eq!(report.writes, 0);
    assert_eq!(report.activation, None);
    assert!(!report.created);
    let after = world.zia.stats();
    assert_eq!(after.writes, before.writes);
    assert_eq!(after.activations, before.activations);
    assert_eq!(
        client.counters().activations.get(),
        1,
        "one activation in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_edit_locks_and_server_errors_are_ridden_out() {
    let world = World::start(|_| {}).await;
    world
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::RateLimit, 2);
    world
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::EditLock, 2);
    world
        .zia
        .push_fault(FaultScope::Reads, ZiaFault::Status(503), 1);
    let client = client(&world.api_key(), quick());
    let wanted = urls("busy", 4);

    let report = client.push_category(CATEGORY, &wanted).await.unwrap();

    assert!(report.created);
    assert_eq!(
        sorted(world.zia.saved_category(CATEGORY).unwrap().urls),
        sorted(wanted)
    );
    let stats = world.zia.stats();
    assert_eq!(stats.edit_locks, 2);
    assert!(stats.throttled >= 2);
    assert!(client.counters().throttled.get() >= 2, "429s counted");
    assert_eq!(stats.activations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_over_the_quota_pushes_nothing_and_says_by_how_much() {
    let world = World::start(|config| config.quota = 10).await;
    world.zia.seed(ZiaCategory::new(
        "Someone Else",
        &[
            "a.example.net",
            "b.example.net",
            "c.example.net",
            "d.example.net",
        ],
    ));

    let error = client(&world.api_key(), quick())
        .push_category(CATEGORY, &urls("big", 8))
        .await
        .unwrap_err();

    match &error {
        ZiaError::QuotaExceeded {
            remaining,
            needed,
            excess,
            ..
        } => assert_eq!((*remaining, *needed, *excess), (6, 8, 2)),
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("6 remaining") && text.contains("2 too many"),
        "{text}"
    );
    assert_eq!(world.zia.stats().writes, 0);
    assert_eq!(world.zia.stats().activations, 0);
    assert!(world.zia.saved_category(CATEGORY).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneapi_tokens_are_renewed_when_they_end_during_a_push() {
    let world = World::start(|config| config.token_lifetime = Duration::from_secs(2)).await;
    let options = ZiaOptions {
        slice: 1,
        ..quick()
    };
    // A private-key client: each token request carries a new signed assertion.
    let report = client(&world.oneapi_private_key(), options)
        .push_category(CATEGORY, &urls("long", 4))
        .await
        .unwrap();

    assert_eq!(report.writes, 4, "a create and three one-URL slices");
    let stats = world.zia.stats();
    assert!(stats.tokens >= 2, "{stats:?}");
    assert_eq!(stats.failed_logins, 0);
    let refused: Vec<_> = world
        .zia
        .calls()
        .into_iter()
        .filter(|c| c.status == 401)
        .collect();
    assert!(refused.is_empty(), "renewed before it ended: {refused:#?}");
    assert_eq!(enforced(&world.zia, CATEGORY).urls.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_by_a_new_login() {
    // Writes are a second apart: the session idles out between two of them.
    let world = World::start(|config| config.session_idle = Duration::from_millis(700)).await;
    let options = ZiaOptions {
        slice: 1,
        ..quick()
    };
    let wanted = urls("idle", 3);

    let report = client(&world.api_key(), options)
        .push_category(CATEGORY, &wanted)
        .await
        .unwrap();

    assert_eq!(report.added, 3);
    let stats = world.zia.stats();
    assert!(stats.session_timeouts >= 1, "{stats:?}");
    assert!(stats.logins >= 2, "{stats:?}");
    assert_eq!(sorted(enforced(&world.zia, CATEGORY).urls), sorted(wanted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_zia_would_refuse_are_dropped_and_counted_the_rest_pushed() {
    let world = World::start(|_| {}).await;
    let mut list = urls("fine", 2);
    list.extend(
        ["HTTPS://Upper.example.com", "*.wild.example.com", "com"]
            .iter()
            .map(|s| s.to_string()),
    );

    let report = client(&world.oneapi_secret(), quick())
        .push_category(CATEGORY, &list)
        .await
        .unwrap();

    assert_eq!(report.invalid, 3);
    assert_eq!(report.invalid_examples.len(), 3);
    assert!(
        report.invalid_examples[2].starts_with("com "),
        "{:?}",
        report.invalid_examples
    );
    assert_eq!(report.urls, 2);
    assert_eq!(
        sorted(enforced(&world.zia, CATEGORY).urls),
        sorted(urls("fine", 2))
    );
    assert!(
        world.zia.calls().iter().all(|c| c.status < 400),
        "nothing refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_skips_the_push() {
    let world = World::start(|_| {}).await;
    world.zia.set_read_only(true);
    let error = client(&world.oneapi_secret(), quick())
        .push_category(CATEGORY, &urls("ro", 2))
        .await
        .unwrap_err();
    assert!(matches!(error, ZiaError::ReadOnly { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(world.zia.saved().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_quota_the_category_and_the_activation_state() {
    let world = World::start(|_| {}).await;
    world.zia.seed(ZiaCategory::new(
        CATEGORY,
        &["a.example.com", "b.example.com"],
    ));
    let client = client(&world.api_key(), quick());
    let report = client.check(CATEGORY).await.unwrap();
    assert_eq!(report.urls_provisioned, 2);
    assert_eq!(report.quota_remaining, 24_998);
    let category = report.category.unwrap();
    assert_eq!((category.id.as_str(), category.url_count), ("CUSTOM_01", 2));
    assert_eq!(report.activation, ActivationState::Active);
    assert_eq!(world.zia.stats().logouts, 1);
    assert!(client.check("Nope").await.unwrap().category.is_none());
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} shown in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_say_so_without_showing_a_secret() {
    let world = World::start(|config| {
        config.password = "the-right-one".to_string();
        config.client_secret = Some("the-right-secret".to_string());
    })
    .await;
    let api_key = world.api_key();
    let error = client(&api_key, quick())
        .push_category(CATEGORY, &urls("x", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ZiaError::LoginRefused { status: 400, .. }),
        "{error:?}"
    );
    let shown = format!(
        "{error} {error:?} {api_key:?} {:?}",
        client(&api_key, quick())
    );
    assert!(shown.contains("INVALID_USERNAME_OR_PASSWORD"), "{shown}");
    assert_no_secret(&shown, &[DEFAULT_PASSWORD, DEFAULT_API_KEY]);

    let oneapi = world.oneapi_secret();
    let error = client(&oneapi, quick()).check(CATEGORY).await.unwrap_err();
    assert!(
        matches!(error, ZiaError::LoginRefused { status: 401, .. }),
        "{error:?}"
    );
    let shown = format!("{error} {error:?} {oneapi:?}");
    assert_no_secret(&shown, &[DEFAULT_CLIENT_SECRET]);
    assert!(world.zia.saved().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_that_is_not_one_is_named_not_sent() {
    let world = World::start(|_| {}).await;
    let key = world.dir.path().join("not-a-key.pem");
    std::fs::write(&key, "garbage").unwrap();
    let target = world.target(ZiaLogin::OneApi {
        token_url: world.zia.token_url(),
        client_id: DEFAULT_CLIENT_ID.to_string(),
        secret: OneApiSecret::PrivateKey(key.clone()),
    });
    let error = client(&target, quick()).check(CATEGORY).await.unwrap_err();
    assert!(matches!(error, ZiaError::PrivateKey(_)), "{error:?}");
    assert_eq!(world.zia.stats().tokens, 0);
    assert!(
        error.to_string().contains("not-a-key.pem") || error.to_string().contains("PEM"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_an_error_naming_the_endpoint() {
    let world = World::start(|_| {}).await;
    // About 9.5 MB of category list: more than any real tenant's.
    let long: Vec<String> = (0..100_000)
        .map(|i| format!("host{i:06}.{}.example.com", "x".repeat(60)))
        .collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    world.zia.seed(ZiaCategory::new("Huge", &long));

    let error = client(&world.oneapi_secret(), quick())
        .check(CATEGORY)
        .await
        .unwrap_err();

    assert!(matches!(error, ZiaError::Oversized { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("GET /urlCategories:"),
        "{error}"
    );
}
