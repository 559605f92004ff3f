//! `nss troubleshoot mcas` checks the blob host MCAS's upload URLs point at (the second
//! host the firewall must allow): one upload_url, then a TCP connection and a TLS
//! handshake to the URL's host, directly or through the proxy, no data sent, no
//! done_upload; a host it cannot reach is named, to be allowed.

use mcas_emulator::connect_proxy::ConnectProxy;
use mcas_emulator::Endpoint;

use crate::support::harness::*;

/// Writes `settings` as the world's configuration and runs `nss troubleshoot mcas`.
fn troubleshoot(world: &World, settings: &Settings) -> (i32, String) {
    let config = world.dir.path().join("troubleshoot.toml");
    settings.write(&config);
    run_nss(&config, &["troubleshoot", "mcas"], &[])
}

async fn world() -> World {
    let world = World::start().await;
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    world
}

/// The blob host answers the handshake: ok, one upload_url and nothing else, not a byte at
/// the blob store (it would show as a blob call), and the URL's signature not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_blob_host_is_ok_and_nothing_is_uploaded() {
    let world = world().await;
    let (code, text) = troubleshoot(&world, &world.settings());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "Blob host: OK, {} is reachable (TCP connection and TLS handshake, direct)",
            world.emulator.domain()
        )),
        "{text}"
    );
    assert!(
        !text.contains("sig="),
        "the upload URL's signature was printed:\n{text}"
    );
    assert_eq!(world.emulator.calls_to(Endpoint::UploadUrl).len(), 1);
    assert!(world.emulator.calls_to(Endpoint::Blob).is_empty());
    assert!(world.emulator.calls_to(Endpoint::DoneUpload).is_empty());
    assert!(world.emulator.uploads().is_empty() && world.emulator.snapshots().is_empty());
}

/// Upload URLs naming a host nothing answers on (the portal answers, the blob store is
/// blocked): FAIL, exit 69, and the host to allow named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_blob_host_is_named_and_fails() {
    let world = world().await;
    let port = free_port();
    world
        .emulator
        .set_blob_host(Some(&format!("127.0.0.1:{port}")));
    let (code, text) = troubleshoot(&world, &world.settings());
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("Verdict: OK"),
        "the token check itself passed:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "Blob host: FAIL: cannot connect to 127.0.0.1:{port}"
        )) && text.contains(&format!("allow 127.0.0.1 on port {port} in the firewall")),
        "{text}"
    );
    assert!(text.contains("blob store"), "{text}");
    assert!(world.emulator.calls_to(Endpoint::DoneUpload).is_empty());
}

/// With a proxy, the handshake goes through it like the uploads do (a CONNECT tunnel to
/// the blob host), and a blob host the proxy cannot reach is named too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blob_host_is_checked_through_the_proxy() {
    let world = world().await;
    let proxy = ConnectProxy::start().await.unwrap();
    // The portal under a name only the proxy knows: the emulator's own address is then
    // reached only as the blob host.
    let portal = format!("localhost:{}", free_port());
    proxy.alias(&portal, world.emulator.addr());
    let mut settings = world.settings();
    settings
        .set("mcas.domain", &quote(&portal))
        .set("proxy.url", &quote(&proxy.url()));
    let (code, text) = troubleshoot(&world, &settings);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "Blob host: OK, {} is reachable (TCP connection and TLS handshake, through the proxy {})",
            world.emulator.domain(),
            proxy.url()
        )),
        "{text}"
    );
    assert_eq!(proxy.stats().tunnels_to(&world.emulator.domain()), 1);

    let port = free_port();
    world
        .emulator
        .set_blob_host(Some(&format!("127.0.0.1:{port}")));
    let (code, text) = troubleshoot(&world, &settings);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains(&format!(
            "the proxy refused to open a tunnel to 127.0.0.1:{port}"
        )) && text.contains(&format!("reach 127.0.0.1 on port {port}")),
        "{text}"
    );
}
