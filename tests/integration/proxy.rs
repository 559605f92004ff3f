//! The outbound proxy through the real binary and a real CONNECT proxy process: delivery
//! and the ZIA push reaching the emulators only through it, `troubleshoot` and
//! `dump-config` saying which proxy and what it answered, a proxy refusing the
//! credentials (named, shown, nothing lost), and `HTTPS_PROXY` in the environment
//! left unused.

use std::time::Duration;

use mcas_emulator::connect_proxy::ConnectProxy;

use crate::support::harness::*;
use crate::zia_sync::{apps, assert_no_secret, sorted, Tenant};

const PROXY_USER: &str = "nss-appliance";
const PROXY_PASSWORD: &str = "proxy-Passw0rd-SECRET";

/// A port nothing listens on: a name the agent can reach only through the proxy's alias.
fn alias(proxy: &ConnectProxy, to: std::net::SocketAddr) -> String {
    let name = format!("localhost:{}", free_port());
    proxy.alias(&name, to);
    name
}

/// The tenant's MCAS and ZIA behind the proxy: the settings name hosts that only the
/// proxy reaches, and the proxy with its credentials (the password from a file).
async fn behind_proxy(password: &str) -> (Tenant, ConnectProxy, Settings, String, String) {
    let tenant = Tenant::start(|_| {}).await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.require_credentials(PROXY_USER, PROXY_PASSWORD);
    let mcas_host = alias(&proxy, tenant.world.emulator.addr());
    let zia_host = alias(&proxy, tenant.zia.addr());
    let password_file = tenant.world.dir.path().join("proxy-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let mut settings = tenant.settings();
    settings
        .set("mcas.domain", &quote(&mcas_host))
        .set("zia.base_url", &quote(&format!("https://{zia_host}")))
        .set("proxy.url", &quote(&proxy.url()))
        .set("proxy.username", &quote(PROXY_USER))
        .set(
            "proxy.password_file",
            &quote(&password_file.display().to_string()),
        );
    settings.write(&tenant.config);
    (tenant, proxy, settings, mcas_host, zia_host)
}

fn assert_no_proxy_secret(text: &str) {
    assert!(
        !text.contains(PROXY_PASSWORD),
        "the proxy password was printed:\n{text}"
    );
    assert_no_secret(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_the_zia_push_go_only_through_the_proxy() {
    let (tenant, proxy, settings, mcas_host, zia_host) = behind_proxy(PROXY_PASSWORD).await;
    tenant.world.emulator.set_banned(apps("app", 7));
    let agent = tenant.world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..300).map(|n| leef("proxied", n, 40)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    wait_exactly_once(&tenant.world, &agent, records, Duration::from_secs(60)).await;
    let status = agent.wait_status("a push into ZIA", |s| {
        s["sync"]["zia"]["pushes"].as_u64() >= Some(1)
    });
    assert_eq!(tenant.activated_urls(), sorted(apps("app", 7)));
    assert!(status["upload"]["last_error"].is_null(), "{status}");

    let stats = proxy.stats();
    assert!(stats.tunnels_to(&mcas_host) >= 1, "{stats:?}");
    // The blob store is another host (here the emulator's own address): through the proxy too.
    assert!(
        stats.tunnels_to(&tenant.world.emulator.domain()) >= 1,
        "{stats:?}"
    );
    assert!(stats.tunnels_to(&zia_host) >= 1, "{stats:?}");
    assert_eq!(stats.refused_credentials, 0, "{stats:?}");

    let (code, text) = tenant.nss(&["troubleshoot", "mcas"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("Proxy: {} as {PROXY_USER}", proxy.url())),
        "{text}"
    );
    let (code, text) = tenant.nss(&["troubleshoot", "zia"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("Proxy: {} as {PROXY_USER}", proxy.url()))
            && text.contains("Verdict: OK"),
        "{text}"
    );
    let (code, text) = tenant.nss(&["dump-config"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("[proxy]")
            && text.contains(&format!("url = \"{}\"", proxy.url()))
            && text.contains(&format!("username = \"{PROXY_USER}\""))
            && text.contains("password_file = "),
        "{text}"
    );
    assert_no_proxy_secret(&text);
    assert_no_proxy_secret(&agent.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusing_the_credentials_is_named_and_nothing_is_lost() {
    let wrong = "not-the-proxy-password";
    let (tenant, proxy, settings, _, _) = behind_proxy(wrong).await;
    let agent = tenant.world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..200).map(|n| leef("refused", n, 40)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    let status = agent.wait_status("the proxy's refusal", |s| {
        s["upload"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("proxy.password"))
    });
    let error = status["upload"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("the proxy refused the credentials") && error.contains("proxy.username"),
        "{status}"
    );
    assert!(proxy.stats().refused_credentials >= 1);
    assert!(tenant.world.emulator.uploads().is_empty());

    let (code, text) = tenant.nss(&["status"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("the proxy refused the credentials"), "{text}");
    for args in [["troubleshoot", "mcas"], ["troubleshoot", "zia"]] {
        let (code, text) = tenant.nss(&args).await;
        assert_eq!(code, 69, "{text}");
        assert!(
            text.contains(&format!("Proxy: {} as {PROXY_USER}", proxy.url()))
                && text.contains("the proxy refused the credentials")
                && text.contains("proxy.password"),
            "{text}"
        );
        assert_no_proxy_secret(&text);
    }

    // The proxy's administrator gives the appliance that password: every record arrives.
    proxy.require_credentials(PROXY_USER, wrong);
    wait_exactly_once(&tenant.world, &agent, records, Duration::from_secs(60)).await;
    assert_no_proxy_secret(&agent.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_in_the_environment_is_not_used() {
    let world = World::start().await;
    let proxy = ConnectProxy::start().await.unwrap();
    let settings = world.settings();
    let agent = world.agent_with_env(
        &settings,
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("https_proxy", &proxy.url()),
            ("ALL_PROXY", &proxy.url()),
        ],
    );
    let records: Vec<Vec<u8>> = (0..50).map(|n| leef("direct", n, 10)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    wait_exactly_once(&world, &agent, records, Duration::from_secs(60)).await;
    assert_eq!(proxy.stats(), Default::default(), "the proxy saw nothing");
}
