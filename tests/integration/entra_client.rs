//! The MCAS client with an Entra application's credentials, against the emulator's token
//! endpoint: tokens shared and renewed before they expire, Bearer on API calls only, the
//! AADSTS refusals and MCAS's 403s turned into what to do.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcas_emulator::entra::{OTHER_TEST_CERTIFICATE_PEM, TEST_CERTIFICATE_PEM};
use mcas_emulator::{Endpoint, EntraApp, Roles};
use nss_agent::config::{EntraSecret, McasCredential, McasTarget, Secret};
use nss_agent::mcas::ApiError;
use nss_agent::mcas::{ApiRateLimiter, BlockScript, DataSourcesError, McasClient};

use crate::support::harness::*;

const CLIENT_ID: &str = "3b0c7d8e-1f2a-4b5c-8d9e-0a1b2c3d4e5f";
const SECRET: &str = "Zq8~entra-client-secret-value_0123456789";

async fn entra_world(lifetime: Duration) -> World {
    World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_secret(CLIENT_ID, SECRET)];
        c.entra.token_lifetime = lifetime;
    })
    .await
}

fn client(world: &World, tenant: &str, secret: EntraSecret) -> McasClient {
    let target = McasTarget {
        domain: world.emulator.domain(),
        credential: McasCredential::Entra(nss_agent::config::EntraApp {
            authority: world.emulator.authority(),
            tenant_id: tenant.to_string(),
            client_id: CLIENT_ID.to_string(),
            secret,
        }),
        data_source: "NSS".to_string(),
        source: "ZSCALER_QRADAR".to_string(),
        ca_file: Some(world.emulator.ca_pem_path()),
        proxy: None,
    };
    let http = nss_agent::https::client(target.ca_file.as_deref(), "mcas.ca_file", None).unwrap();
    McasClient::new(
        &target,
        http,
        Arc::new(ApiRateLimiter::new(600)),
        Duration::from_secs(5),
        Default::default(),
    )
    .unwrap()
}

fn secret(text: &str) -> EntraSecret {
    EntraSecret::ClientSecret(Secret::new(text.to_string()))
}

fn token_requests(world: &World) -> usize {
    world.emulator.calls_to(Endpoint::Token).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_shared_by_concurrent_calls_and_renewed_before_it_expires() {
    let world = entra_world(Duration::from_secs(3)).await;
    let client = client(&world, &world.emulator.tenant_id(), secret(SECRET));

    // Twenty calls at once: one token request.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.block_script(BlockScript::Banned).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(token_requests(&world), 1);

    // Calls for three lifetimes: renewed every ~2.4 s, never refused for expiry.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        client.block_script(BlockScript::Banned).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewals = token_requests(&world);
    assert!((4..=6).contains(&renewals), "{renewals} token requests");
    let api_calls = world.emulator.calls_to(Endpoint::BlockScript);
    assert!(api_calls.iter().all(|c| c.status == 200));
    assert!(api_calls.iter().all(|c| c
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer eyJ"))));
    // The token endpoint is no MCAS API call: the emulator counted only the block scripts.
    assert_eq!(world.emulator.stats().api_calls, api_calls.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_aadsts_code_and_the_fix() {
    let world = entra_world(Duration::from_secs(3599)).await;
    let tenant = world.emulator.tenant_id();
    let refused = |e: ApiError| match e {
        ApiError::TokenRefused { reason, .. } => reason,
        other => panic!("not a refusal: {other:?}"),
    };

    let e = client(&world, &tenant, secret("wrong"))
        .block_script(BlockScript::Banned)
        .await
        .unwrap_err();
    let reason = refused(e);
    assert!(
        reason.contains("AADSTS7000215") && reason.contains("generate a new client secret"),
        "{reason}"
    );
    assert!(!reason.contains(SECRET));

    let e = client(&world, "nobody.onmicrosoft.com", secret(SECRET))
        .block_script(BlockScript::Banned)
        .await
        .unwrap_err();
    let reason = refused(e);
    assert!(
        reason.contains("AADSTS90002") && reason.contains("mcas.tenant_id"),
        "{reason}"
    );

    world.emulator.expire_secret(CLIENT_ID).unwrap();
    let reason = refused(
        client(&world, &tenant, secret(SECRET))
            .block_script(BlockScript::Banned)
            .await
            .unwrap_err(),
    );
    assert!(
        reason.contains("AADSTS7000222") && reason.contains("expired"),
        "{reason}"
    );

    world
        .emulator
        .register_app(EntraApp {
            consented: false,
            ..EntraApp::with_secret(CLIENT_ID, SECRET)
        })
        .unwrap();
    let reason = refused(
        client(&world, &tenant, secret(SECRET))
            .block_script(BlockScript::Banned)
            .await
            .unwrap_err(),
    );
    assert!(
        reason.contains("AADSTS65001") && reason.contains("admin consent"),
        "{reason}"
    );

    world.emulator.remove_app(CLIENT_ID).unwrap();
    let reason = refused(
        client(&world, &tenant, secret(SECRET))
            .upload_url("a.gz", "ZSCALER_QRADAR")
            .await
            .unwrap_err(),
    );
    assert!(
        reason.contains("AADSTS700016") && reason.contains("mcas.client_id"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_the_data_sources_list() {
    let world = entra_world(Duration::from_secs(3599)).await;
    let client = client(&world, &world.emulator.tenant_id(), secret(SECRET));
    let sources = client.data_sources().await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(
        (sources[0].display_name.as_str(), sources[0].log_type),
        ("NSS", 170)
    );
    assert_eq!(sources[0].last_data_received, None);

    world
        .emulator
        .set_app_roles(
            CLIENT_ID,
            Roles {
                discovery_manage: true,
                discovery_read: false,
            },
        )
        .unwrap();
    assert!(matches!(
        client.data_sources().await,
        Err(DataSourcesError::NotPermitted)
    ));

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
    match client
        .upload_url("a.gz", "ZSCALER_QRADAR")
        .await
        .unwrap_err()
    {
        ApiError::TokenRefused {
            status: 403,
            reason,
            ..
        } => {
            assert!(reason.contains("Discovery.manage"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Still one token: a 403 is about permissions, not the token.
    assert_eq!(token_requests(&world), 1);
}

fn certificate_file(dir: &Path, name: &str, pem: &str) -> EntraSecret {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    EntraSecret::Certificate(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials() {
    let world = World::start_with(|c| {
        c.entra.apps = vec![EntraApp::with_certificate(CLIENT_ID, TEST_CERTIFICATE_PEM)];
    })
    .await;
    let tenant = world.emulator.tenant_id();
    let good = certificate_file(world.dir.path(), "app.pem", TEST_CERTIFICATE_PEM);
    let mcas = client(&world, &tenant, good);
    let target = mcas.upload_url("a.gz", "ZSCALER_QRADAR").await.unwrap();
    assert!(target.url.contains("/blob/"));

    let other = certificate_file(world.dir.path(), "other.pem", OTHER_TEST_CERTIFICATE_PEM);
    match client(&world, &tenant, other)
        .block_script(BlockScript::Banned)
        .await
        .unwrap_err()
    {
        ApiError::TokenRefused { reason, .. } => {
            assert!(
                reason.contains("AADSTS700027") && reason.contains("mcas.certificate_file"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}
