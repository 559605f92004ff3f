//! The daemon and `nss troubleshoot mcas` with an Entra application's credentials
//! (`mcas.auth = "entra"`), against the emulator's token endpoint.

use std::time::Duration;

use mcas_emulator::entra::{OTHER_TEST_CERTIFICATE_PEM, TEST_CERTIFICATE_PEM};
use mcas_emulator::{Endpoint, EntraApp, Roles};

use crate::support::harness::*;

const CLIENT_ID: &str = "3b0c7d8e-1f2a-4b5c-8d9e-0a1b2c3d4e5f";
const SECRET: &str = "Zq8~entra-client-secret-value_0123456789";

/// The world's settings with the Entra application instead of the legacy token.
fn entra_settings(world: &World) -> Settings {
    let mut settings = world.settings();
    settings
        .remove("mcas.token")
        .set("mcas.auth", &quote("entra"))
        .set("mcas.authority", &quote(&world.emulator.authority()))
        .set("mcas.tenant_id", &quote(&world.emulator.tenant_id()))
        .set("mcas.client_id", &quote(CLIENT_ID));
    settings
}

fn with_secret(world: &World, secret: &str) -> Settings {
    let mut settings = entra_settings(world);
    settings.set("mcas.client_secret", &quote(secret));
    settings
}

fn with_certificate(world: &World, pem: &str) -> Settings {
    let path = world.dir.path().join("app-certificate.pem");
    std::fs::write(&path, pem).unwrap();
    let mut settings = entra_settings(world);
    settings.set("mcas.certificate_file", &quote(&path.display().to_string()));
    settings
}

fn troubleshoot(world: &World, settings: &Settings) -> (i32, String) {
    let config = world.dir.path().join("troubleshoot.toml");
    settings.write(&config);
    let (code, text) = run_nss(&config, &["troubleshoot", "mcas"], &[]);
    assert!(!text.contains(SECRET), "the secret was printed:\n{text}");
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_delivered_over_several_token_lifetimes_and_the_secret_never_shown() {
    let world = World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_secret(CLIENT_ID, SECRET)];
        c.entra.token_lifetime = Duration::from_secs(3);
    })
    .await;
    let mut settings = with_secret(&world, SECRET);
    settings.set("batch.max_age", &quote("1s"));
    let agent = world.agent(&settings);
    let addr = agent.feed.unwrap();

    // Five rounds over about ten seconds: batches sealed by age, three token lifetimes.
    let mut expected = Vec::new();
    for round in 0..5 {
        let records: Vec<Vec<u8>> = (0..200).map(|n| leef(&format!("r{round}"), n, 0)).collect();
        send_tcp(addr, &lines(&records));
        expected.extend(records);
        world
            .emulator
            .wait_for_records(expected.len() as u64, Duration::from_secs(30))
            .await
            .unwrap();
        // The pace of the rounds, not a wait for the agent: the rounds span three token
        // lifetimes.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_exactly_once(&world.emulator, expected);

    let tokens = world.emulator.calls_to(Endpoint::Token);
    assert!(tokens.len() >= 2, "{} token requests", tokens.len());
    assert!(tokens.iter().all(|c| c.status == 200));
    for call in world.emulator.calls() {
        match call.endpoint {
            Some(Endpoint::UploadUrl | Endpoint::DoneUpload | Endpoint::BlockScript) => {
                assert!(
                    call.header("authorization")
                        .is_some_and(|a| a.starts_with("Bearer eyJ")),
                    "{call:?}"
                );
                assert_ne!(call.status, 401, "a token was used past its lifetime");
            }
            Some(Endpoint::Blob) => assert_eq!(call.header("authorization"), None),
            _ => {}
        }
    }
    let status = agent.status();
    let log = agent.log_text();
    let mut agent = agent;
    agent.stop();
    for (what, text) in [("status", status.to_string()), ("log", log)] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
    }
    let config = world.dir.path().join("dump.toml");
    settings.write(&config);
    let (code, text) = run_nss(&config, &["dump-config"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains(SECRET),
        "dump-config shows the secret:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credential_delivers_and_a_foreign_certificate_is_explained() {
    let world = World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_certificate(CLIENT_ID, TEST_CERTIFICATE_PEM)];
    })
    .await;
    world
        .emulator
        .set_banned(vec![".app0.example.com".to_string()]);
    let settings = with_certificate(&world, TEST_CERTIFICATE_PEM);
    let (code, text) = troubleshoot(&world, &settings);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Authorization: Bearer"), "{text}");

    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..300).map(|n| leef("cert", n, 0)).collect();
    send_tcp(agent.feed.unwrap(), &lines(&records));
    world
        .emulator
        .wait_for_records(300, Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&world.emulator, records);
    drop(agent);

    let foreign = with_certificate(&world, OTHER_TEST_CERTIFICATE_PEM);
    let (code, text) = troubleshoot(&world, &foreign);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS700027") && text.contains("mcas.certificate_file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn troubleshoot_turns_each_refusal_into_its_fix() {
    let world = World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_secret(CLIENT_ID, SECRET)];
    })
    .await;
    world
        .emulator
        .set_banned(vec![".app0.example.com".to_string()]);
    let (code, text) = troubleshoot(&world, &with_secret(&world, SECRET));
    assert_eq!(code, 0, "{text}");

    let (code, text) = troubleshoot(&world, &with_secret(&world, "wrong-secret"));
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS7000215")
            && text.contains("generate a new client secret")
            && text.contains("nss configure-mcas"),
        "{text}"
    );

    let mut unknown_tenant = with_secret(&world, SECRET);
    unknown_tenant.set("mcas.tenant_id", &quote("nosuchtenant.onmicrosoft.com"));
    let (code, text) = troubleshoot(&world, &unknown_tenant);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS90002") && text.contains("mcas.tenant_id"),
        "{text}"
    );

    let mut unknown_app = with_secret(&world, SECRET);
    unknown_app.set(
        "mcas.client_id",
        &quote("00000000-0000-0000-0000-000000000001"),
    );
    let (code, text) = troubleshoot(&world, &unknown_app);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS700016") && text.contains("mcas.client_id"),
        "{text}"
    );

    world
        .emulator
        .set_app_roles(
            CLIENT_ID,
            Roles {
                discovery_manage: false,
                discovery_read: true,
            },
        )
        .unwrap();
    let (code, text) = troubleshoot(&world, &with_secret(&world, SECRET));
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("HTTP 403") && text.contains("Discovery.manage"),
        "{text}"
    );

    world.emulator.revoke_consent(CLIENT_ID).unwrap();
    let (code, text) = troubleshoot(&world, &with_secret(&world, SECRET));
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS65001") && text.contains("admin consent"),
        "{text}"
    );

    world.emulator.expire_secret(CLIENT_ID).unwrap();
    let (code, text) = troubleshoot(&world, &with_secret(&world, SECRET));
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("AADSTS7000222") && text.contains("expired"),
        "{text}"
    );
}

/// The "token accepted" line of `nss status` for a running agent whose uploads paused.
fn token_line(world: &World, settings: &Settings) -> String {
    let config = world.dir.path().join("status.toml");
    settings.write(&config);
    let (code, text) = run_nss(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains(SECRET), "the secret was printed:\n{text}");
    text.lines()
        .find(|l| l.contains("token accepted"))
        .unwrap_or_else(|| panic!("no token line:\n{text}"))
        .to_string()
}

/// A refused secret and a missing Discovery.manage pause uploads: `nss status` says FAIL
/// on the credential's line, with the fix, from the daemon's typed pause reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fails_the_credential_when_entra_or_mcas_refuse_the_application() {
    let world = World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_secret(CLIENT_ID, SECRET)];
    })
    .await;
    let paused = |s: &serde_json::Value| !s["upload"]["paused"].is_null();

    // A wrong secret: Entra refuses the token request.
    let mut settings = with_secret(&world, "wrong-secret-0123456789");
    settings.set("batch.max_age", &quote("300ms"));
    let mut agent = world.agent(&settings);
    send_tcp(agent.feed.unwrap(), &lines(&[leef("wrong-secret", 0, 0)]));
    let status = agent.wait_status("uploads paused", paused);
    assert_eq!(
        status["upload"]["pause_reason"]["kind"], "credential_refused",
        "{status}"
    );
    let line = token_line(&world, &settings);
    assert!(
        line.contains("FAIL") && line.contains("AADSTS7000215"),
        "{line}"
    );
    agent.stop();

    // The right secret, without the Discovery.manage permission: MCAS answers 403.
    world
        .emulator
        .set_app_roles(
            CLIENT_ID,
            Roles {
                discovery_manage: false,
                discovery_read: true,
            },
        )
        .unwrap();
    let mut settings = with_secret(&world, SECRET);
    settings.set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    send_tcp(agent.feed.unwrap(), &lines(&[leef("no-manage", 0, 0)]));
    agent.wait_status("uploads paused", paused);
    let line = token_line(&world, &settings);
    assert!(
        line.contains("FAIL") && line.contains("Discovery.manage"),
        "{line}"
    );
    assert!(world.emulator.uploads().is_empty());
}
