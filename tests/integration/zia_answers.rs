//! The real binary against ZIA's answers as its SDKs meet them: activation with a JSON
//! body, load shedding retried, the category found whatever its case, Zscaler's own
//! integration's category reported, and a 403 that is maintenance only when ZIA says so.

use mcas_emulator::zia::{FaultScope, ZiaCategory, ZiaFault, DEFAULT_PASSWORD};
use serde_json::json;

use crate::support::harness::*;
use crate::zia_sync::{apps, assert_no_secret, sorted, Tenant, CATEGORY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_carries_a_json_body() {
    let tenant = Tenant::start(|_| {}).await;
    tenant.world.emulator.set_banned(apps("app", 4));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("activated: ACTIVE"), "{text}");
    let activations: Vec<_> = tenant
        .zia
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/status/activate"))
        .collect();
    assert_eq!(activations.len(), 1, "{activations:?}");
    assert_eq!(activations[0].status, 200);
    assert_eq!(activations[0].body, Some(json!({})));
    let stats = tenant.zia.stats();
    assert_eq!(
        stats.activations, 1,
        "activated by the agent, not by the logout"
    );
    assert_eq!(stats.implicit_activations, 0);
    assert_eq!(tenant.activated_urls(), sorted(apps("app", 4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shedding_is_retried_and_the_push_completes() {
    let tenant = Tenant::start(|_| {}).await;
    tenant.world.emulator.set_banned(apps("app", 6));
    // The create meets all three kinds of load shedding before it goes through.
    tenant
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::OrgBarrier(409), 1);
    tenant
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::OrgBarrier(412), 1);
    tenant
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::AccessBlocked, 1);
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Pushed into ZIA as CUSTOM_") && text.contains("activated: ACTIVE"),
        "{text}"
    );
    let stats = tenant.zia.stats();
    assert_eq!(stats.load_shed, 3);
    assert_eq!(
        stats.logins, 1,
        "a 401 Resource Access Blocked is no ended session"
    );
    assert_eq!(tenant.activated_urls(), sorted(apps("app", 6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shedding_that_does_not_end_fails_the_push_saying_so() {
    let tenant = Tenant::start(|_| {}).await;
    tenant.world.emulator.set_banned(apps("app", 2));
    tenant
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::OrgBarrier(412), 20);
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("shedding load") && text.contains("Failed during enter Org barrier"),
        "{text}"
    );
    assert!(!text.contains("permission"), "{text}");
    let shed = tenant.zia.stats().load_shed;
    assert!((2..20).contains(&shed), "bounded retries: {shed}");
    assert!(tenant.zia.saved_category(CATEGORY).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_category_is_found_whatever_the_case_of_its_name() {
    let tenant = Tenant::start(|_| {}).await;
    let id = tenant.zia.seed(ZiaCategory::new(
        "mcas unsanctioned apps",
        &[".old.example.com"],
    ));
    tenant.world.emulator.set_banned(apps("app", 3));
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("(created)"), "{text}");
    let saved = tenant.zia.saved();
    assert_eq!(saved.len(), 1, "no second category: {saved:?}");
    assert_eq!(saved[0].id, id);
    assert_eq!(saved[0].configured_name, "mcas unsanctioned apps");
    assert_eq!(sorted(saved[0].urls.clone()), sorted(apps("app", 3)));
    let (code, text) = tenant.nss(&["troubleshoot", "zia"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("is {id} with 3 URLs")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zscaler_s_own_integration_category_is_reported_by_status_and_troubleshoot() {
    let tenant = Tenant::start(|_| {}).await;
    let theirs = tenant.zia.seed(ZiaCategory::new(
        "MS Defender Unsanctioned Apps",
        &[".app0.example.com", ".app1.example.com"],
    ));
    tenant.world.emulator.set_banned(apps("app", 5));
    let mut settings = tenant.settings();
    settings.set("sync.interval", &quote("1h"));
    let agent = tenant.world.agent(&settings);
    let status = agent.wait_status("a push into ZIA", |s| {
        s["sync"]["zia"]["pushes"].as_u64() >= Some(1)
    });
    let zia = &status["sync"]["zia"];
    assert_eq!(
        zia["defender_category"],
        json!({"name": "MS Defender Unsanctioned Apps", "id": theirs, "urls": 2}),
        "{status}"
    );
    // Ours keeps the default name the administrator's guide names.
    assert_eq!(
        tenant.zia.saved_category(CATEGORY).map(|c| c.urls.len()),
        Some(5)
    );
    let (code, text) = tenant.nss(&["status"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("MS Defender Unsanctioned Apps")
            && text.contains(&theirs)
            && text.contains("count twice against the custom URL quota"),
        "{text}"
    );
    let (code, text) = tenant.nss(&["troubleshoot", "zia"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Verdict: OK")
            && text.contains("MS Defender Unsanctioned Apps")
            && text.contains("count twice"),
        "{text}"
    );
    assert_no_secret(&agent.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_maintenance_only_when_zia_says_so() {
    let tenant = Tenant::start(|_| {}).await;
    tenant.world.emulator.set_banned(apps("app", 2));
    // A 403 without `x-zscaler-mode: read-only`: ZIA's message, not "maintenance".
    tenant
        .zia
        .push_fault(FaultScope::Writes, ZiaFault::Forbidden, 1);
    let (code, text) = tenant.nss(&["sync-now"]).await;
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("HTTP 403")
            && text.contains("The admin role has read-only access to URL categories"),
        "{text}"
    );
    assert!(!text.contains("maintenance"), "{text}");

    // Maintenance as ZIA marks it, with a body that carries only a message.
    tenant.zia.set_read_only(true);
    let (_, text) = tenant.nss(&["sync-now"]).await;
    assert!(text.contains("read-only mode (maintenance)"), "{text}");
    assert!(tenant.zia.saved_category(CATEGORY).is_none());
    assert!(!text.contains(DEFAULT_PASSWORD), "{text}");
}
