//! The unsanctioned apps reaching the tenant's ZIA through the real binary: the daemon's
//! sync and `nss sync-now` push the category, `nss status` shows it, `configure-zia`,
//! `troubleshoot zia` and `disable-zia` do what they say; against the emulated MCAS and
//! the emulated ZIA together.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mcas_emulator::zia::{
    ZiaCategory, ZiaConfig, ZiaEmulator, DEFAULT_API_KEY, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD, DEFAULT_USERNAME,
};

use crate::support::harness::*;

pub(crate) const CATEGORY: &str = "MCAS Unsanctioned Apps";

/// The emulated MCAS and ZIA, and a configuration file for one-shot commands.
pub(crate) struct Tenant {
    pub(crate) world: World,
    pub(crate) zia: ZiaEmulator,
    pub(crate) config: PathBuf,
}

impl Tenant {
    pub(crate) async fn start(adjust: impl FnOnce(&mut ZiaConfig)) -> Tenant {
        let world = World::start().await;
        let mut zia_config = ZiaConfig::new(&world.dir.path().join("zia-certs"));
        adjust(&mut zia_config);
        let zia = ZiaEmulator::start(zia_config).await.unwrap();
        let config = world.dir.path().join("config.toml");
        let tenant = Tenant { world, zia, config };
        tenant.settings().write(&tenant.config);
        tenant
    }

    /// Settings with the ZIA API key login.
    pub(crate) fn settings(&self) -> Settings {
        let mut settings = self.world.settings();
        settings
            .set("zia.base_url", &quote(&self.zia.base_url()))
            .set("zia.auth", &quote("api_key"))
            .set("zia.username", &quote(DEFAULT_USERNAME))
            .set("zia.password", &quote(DEFAULT_PASSWORD))
            .set("zia.api_key", &quote(DEFAULT_API_KEY))
            .set(
                "zia.ca_file",
                &quote(&self.zia.ca_pem_path().display().to_string()),
            );
        settings
    }

    /// Runs `nss --config <config> <args>`; no secret may show in its output.
    pub(crate) async fn nss(&self, args: &[&str]) -> (i32, String) {
        let mut command = nss();
        command.arg("--config").arg(&self.config).args(args);
        let output = tokio::process::Command::from(command)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_no_secret(&text);
        (output.status.code().unwrap_or(-1), text)
    }

    pub(crate) fn activated_urls(&self) -> Vec<String> {
        let mut urls = self
            .zia
            .activated_category(CATEGORY)
            .map(|c| c.urls)
            .unwrap_or_default();
        urls.sort();
        urls
    }
}

pub(crate) fn assert_no_secret(text: &str) {
    for secret in [
        TOKEN,
        DEFAULT_PASSWORD,
        DEFAULT_API_KEY,
        DEFAULT_CLIENT_SECRET,
    ] {
        assert!(!text.contains(secret), "a secret was printed:\n{text}");
    }
}

pub(crate) fn apps(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(".{prefix}{i}.example.com"))
        .collect()
}

pub(crate) fn sorted(mut urls: Vec<String>) -> Vec<String> {
    urls.sort();
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_the_category_in_zia_with_renewed_oneapi_tokens() {
    let tenant = Tenant::start(|config| config.token_lifetime = Duration::from_secs(1)).await;
    let other = tenant
        .zia
        .seed(ZiaCategory::new("Finance Partners", &[".bank.example.com"]));
    tenant.world.emulator.set_banned(apps("app", 30));
    let mut settings = tenant.world.settings();
    settings
        .set("zia.base_url", &quote(&tenant.zia.base_url()))
        .set("zia.auth", &quote("oneapi"))
        .set("zia.token_url", &quote(&tenant.zia.token_url()))
        .set("zia.client_id", &quote(DEFAULT_CLIENT_ID))
        .set("zia.client_secret", &quote(DEFAULT_CLIENT_SECRET))
        .set(
            "zia.ca_file",
            &quote(&tenant.zia.ca_pem_path().display().to_string()),
        )
        .set("sync.interval", &quote("2s"));
    let metrics_port = free_port();
    settings.set(
        "metrics.listen",
        &quote(&format!("127.0.0.1:{metrics_port}")),
    );
    let agent = tenant.world.agent(&settings);

    let status = agent.wait_status("a push into ZIA", |s| {
        s["sync"]["zia"]["pushes"].as_u64() >= Some(1)
    });
    assert_eq!(tenant.activated_urls(), sorted(apps("app", 30)));
    let zia = &status["sync"]["zia"];
    assert_eq!(zia["enabled"], true, "{status}");
    assert_eq!(zia["urls"], 30, "{status}");
    assert!(
        zia["category_id"].as_str().unwrap().starts_with("CUSTOM_"),
        "{status}"
    );
    assert!(zia["quota_remaining"].as_u64().is_some(), "{status}");
    assert!(zia["last_activation"].is_string(), "{status}");

    // MCAS's list changes; the next syncs follow it, with tokens of a second's life.
    tenant.world.emulator.set_banned(apps("app", 20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while tenant.activated_urls() != sorted(apps("app", 20)) {
        assert!(Instant::now() < deadline, "ZIA never got the new list");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = agent.wait_status("three pushes into ZIA", |s| {
        s["sync"]["zia"]["pushes"].as_u64() >= Some(3)
    });
    assert!(status["sync"]["zia"]["last_error"].is_null(), "{status}");
    assert!(tenant.zia.stats().tokens >= 2, "tokens were renewed");
    let finance = tenant.zia.activated_category("Finance Partners").unwrap();
    assert_eq!(finance.id, other);
    assert_eq!(finance.urls, vec![".bank.example.com".to_string()]);

    let (code, text) = tenant.nss(&["status"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("category in ZIA") && text.contains("20 URLs in CUSTOM_"),
        "{text}"
    );
    let metrics = crate::observe::http_get(metrics_port, "/metrics");
    assert!(metrics.contains("nss_agent_sync_zia_urls 20"), "{metrics}");
    assert_no_secret(&agent.log_text());
    assert_no_secret(&status.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_sends_only_the_difference_and_nothing_when_nothing_changed() {
    let tenant = Tenant::start(|_| {}).await;
    tenant.world.emulator.set_banned(apps("app", 40));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Pushed into ZIA as CUSTOM_") && text.contains("(created)"),
        "{text}"
    );
    assert_eq!(tenant.activated_urls(), sorted(apps("app", 40)));
    let activations = tenant.zia.stats().activations;

    // Ten apps leave, five arrive: only those go to ZIA, removals first, activated once.
    let mut next = apps("app", 30);
    next.extend(apps("new", 5));
    tenant.world.emulator.set_banned(next.clone());
    let writes_before = tenant.zia.successful_writes().len();
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("(+5 -10)") && text.contains("activated: ACTIVE"),
        "{text}"
    );
    let writes: Vec<_> = tenant.zia.successful_writes()[writes_before..].to_vec();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].query, "action=REMOVE_FROM_LIST");
    assert_eq!(
        sorted(writes[0].urls()),
        sorted(apps("app", 40)[30..].to_vec())
    );
    assert_eq!(writes[1].query, "action=ADD_TO_LIST");
    assert_eq!(sorted(writes[1].urls()), sorted(apps("new", 5)));
    assert_eq!(tenant.zia.stats().activations, activations + 1);
    assert_eq!(tenant.activated_urls(), sorted(next));

    // The same list again: no write, no activation.
    let writes_before = tenant.zia.successful_writes().len();
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(tenant.zia.successful_writes().len(), writes_before);
    assert_eq!(tenant.zia.stats().activations, activations + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_over_the_quota_pushes_nothing_and_says_by_how_much() {
    let tenant = Tenant::start(|config| config.quota = 25).await;
    tenant.world.emulator.set_banned(apps("app", 20));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    let writes = tenant.zia.successful_writes().len();

    tenant.world.emulator.set_banned(apps("app", 40));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("quota")
            && text.contains("15 too many")
            && text.contains("nothing was pushed"),
        "{text}"
    );
    assert_eq!(
        tenant.zia.successful_writes().len(),
        writes,
        "nothing was written"
    );
    assert_eq!(
        tenant.activated_urls(),
        sorted(apps("app", 20)),
        "ZIA keeps its content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_zia_verifies_and_troubleshoot_and_disable_do_what_they_say() {
    let tenant = Tenant::start(|_| {}).await;
    // Only MCAS in the file at first.
    tenant.world.settings().write(&tenant.config);
    let dir = tenant.world.dir.path();
    let password = dir.join("zia-password");
    std::fs::write(&password, format!("{DEFAULT_PASSWORD}\n")).unwrap();
    let key = dir.join("zia-key");
    std::fs::write(&key, DEFAULT_API_KEY).unwrap();
    let base_url = tenant.zia.base_url();
    let ca = tenant.zia.ca_pem_path().display().to_string();
    // The CA of a TLS-inspecting proxy, as an administrator would put it in the file.
    std::fs::write(
        &tenant.config,
        format!(
            "{}\n[zia]\nca_file = \"{ca}\"\n",
            std::fs::read_to_string(&tenant.config).unwrap()
        ),
    )
    .unwrap();
    let flags = |password: &std::path::Path| {
        vec![
            "configure-zia".to_string(),
            "--auth".into(),
            "api_key".into(),
            "--base-url".into(),
            base_url.clone(),
            "--username".into(),
            DEFAULT_USERNAME.into(),
            "--password-file".into(),
            password.display().to_string(),
            "--api-key-file".into(),
            key.display().to_string(),
        ]
    };
    let args = flags(&password);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = tenant.nss(&args).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Verdict: OK") && text.contains("remaining"),
        "{text}"
    );
    assert!(text.contains("does not exist yet"), "{text}");

    tenant.world.emulator.set_banned(apps("app", 3));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    let (code, text) = tenant.nss(&["troubleshoot", "zia"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("is CUSTOM_") && text.contains("with 3 URLs"),
        "{text}"
    );

    // A wrong password: saved all the same, refused with a verdict, exit 69.
    let wrong = dir.join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let args = flags(&wrong);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = tenant.nss(&args).await;
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("refused the login"), "{text}");

    let (code, text) = tenant.nss(&["disable-zia"]).await;
    assert_eq!(code, 0, "{text}");
    let file = std::fs::read_to_string(&tenant.config).unwrap();
    assert!(
        !file.contains("base_url") && !file.contains("username"),
        "{file}"
    );
    let (code, text) = tenant.nss(&["troubleshoot", "zia"]).await;
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("zia.base_url"), "{text}");
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ZIA: not configured"), "{text}");
}
