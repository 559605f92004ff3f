//! Bad configuration is refused before anything starts: exit 78 and the key named.

use crate::support::harness::*;

fn run_with(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let output = nss()
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env("NSS_AGENT__PATHS__STATE_DIR", dir.path().join("state"))
        .env("NSS_AGENT__PATHS__RUNTIME_DIR", dir.path().join("run"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mcas(domain: &str, token: Option<&str>, extra: &str) -> String {
    let token = token
        .map(|t| format!("token = {}\n", quote(t)))
        .unwrap_or_default();
    format!("[mcas]\ndomain = {}\n{token}{extra}", quote(domain))
}

/// `toml` is refused with exit 78, naming `key` and saying `hint`, without printing a
/// secret.
fn assert_refused(toml: &str, key: &str, hint: &str) {
    let (code, stderr) = run_with(toml);
    assert_eq!(code, 78, "{toml}\n{stderr}");
    assert!(
        stderr.contains(key) && stderr.contains(hint),
        "{toml}\n{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "the token was printed");
    assert!(!stderr.contains("s3cret"), "the client secret was printed");
}

#[test]
fn bad_configurations_exit_78_naming_the_key() {
    let good = "x.us3.portal.cloudappsecurity.com";
    for (toml, key, hint) in [
        (
            mcas("https://x.us3.portal.cloudappsecurity.com", Some(TOKEN), ""),
            "mcas.domain",
            "https://",
        ),
        (
            mcas("x.us3.portal.cloudappsecurity.com/api", Some(TOKEN), ""),
            "mcas.domain",
            "path",
        ),
        (
            mcas("x.us3.portal. cloudappsecurity.com", Some(TOKEN), ""),
            "mcas.domain",
            "white space",
        ),
        (mcas("", Some(TOKEN), ""), "mcas.domain", "configure-mcas"),
        (mcas(good, None, ""), "mcas.token", "configure-mcas"),
        (
            mcas(good, Some(TOKEN), "ca_file = \"/nonexistent/ca.pem\"\n"),
            "mcas.ca_file",
            "/nonexistent/ca.pem",
        ),
        (
            format!(
                "{}[batch]\nmax_age = \"a while\"\n",
                mcas(good, Some(TOKEN), "")
            ),
            "batch.max_age",
            "90s",
        ),
    ] {
        assert_refused(&toml, key, hint);
    }
}

#[test]
fn environment_overrides_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let output = nss()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("dump-config")
        .env("NSS_AGENT__BATCH__MAX_AGE", "30s")
        .env("NSS_AGENT__MCAS__TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("max_age = \"30s\""), "{stdout}");
    assert!(
        !stdout.contains(TOKEN) && stdout.contains("****"),
        "{stdout}"
    );

    let output = nss()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("dump-config")
        .env("NSS_AGENT__BATCH__MAX_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("batch.max_bytes"));
}

#[test]
fn the_contracts_checks_exit_78_naming_the_key() {
    let good = "x.us3.portal.cloudappsecurity.com";
    for (toml, key, hint) in [
        (
            format!(
                "{}[feed]\nlisten = \"0.0.0.0:{}\"\n",
                mcas(good, Some(TOKEN), ""),
                free_port()
            ),
            "feed.listen",
            "no authentication",
        ),
        (
            format!(
                "{}[metrics]\nlisten = \"0.0.0.0:{}\"\n",
                mcas(good, Some(TOKEN), ""),
                free_port()
            ),
            "metrics.listen",
            "metrics.allow_remote = true",
        ),
        (
            format!(
                "{}[batch]\nmax_age = \"100000000d\"\n",
                mcas(good, Some(TOKEN), "")
            ),
            "batch.max_age",
            "30 days",
        ),
        (
            format!("{}[sync]\ninterval = \"31d\"\n", mcas(good, Some(TOKEN), "")),
            "sync.interval",
            "30 days",
        ),
        (
            format!(
                "{}[sync]\ninterval = \"100000000d\"\n",
                mcas(good, Some(TOKEN), "")
            ),
            "sync.interval",
            "30 days",
        ),
        (
            format!(
                "{}[upload]\nbackoff_max = \"100000000d\"\n",
                mcas(good, Some(TOKEN), "")
            ),
            "upload.backoff_max",
            "30 days",
        ),
        (
            mcas(good, Some(TOKEN), "source = \"LEEF\"\n"),
            "mcas.source",
            "ZSCALER, ZSCALER_QRADAR, ZSCALER_CEF, ZSCALER_SYSLOG, ZSCALER_QRADAR_SYSLOG, ZSCALER_CEF_SYSLOG",
        ),
        (
            mcas(
                good,
                None,
                "auth = \"entra\"\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_secret = \"s3cret-value\"\n",
            ),
            "mcas.client_id",
            "configure-mcas",
        ),
        (
            mcas(good, Some(TOKEN), "token_file = \"/etc/token\"\n"),
            "mcas.token",
            "keep one of the two",
        ),
        (
            mcas(good, Some(TOKEN), "authority = \"http://login.microsoftonline.com\"\n"),
            "mcas.authority",
            "https",
        ),
        (
            format!(
                "{}[zia]\nbase_url = \"https://zsapi.zscaler.net\"\nusername = \"admin@example.com\"\npassword = \"pw\"\napi_key = \"too-short\"\n",
                mcas(good, Some(TOKEN), "")
            ),
            "zia.api_key",
            "12",
        ),
    ] {
        assert_refused(&toml, key, hint);
    }
}

#[test]
fn relative_paths_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{}[paths]\nstate_dir = \"state\"\n",
            mcas("x.us3.portal.cloudappsecurity.com", Some(TOKEN), "")
        ),
    )
    .unwrap();
    let (code, text) = run_nss(&path, &["run"], &[]);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("paths.state_dir") && text.contains("absolute path"),
        "{text}"
    );
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "").unwrap();
    let (code, text) = run_nss(
        &other,
        &["dump-config"],
        &[("NSS_AGENT__FEED__FILES", "/var/log/a.log,feed.log")],
    );
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("feed.files") && text.contains("entry 2 of 2"),
        "{text}"
    );
}

/// The feed port on every address is refused above; with `feed.allow_remote` it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_feed_listener_serves_when_allowed() {
    let world = World::start().await;
    let port = free_port();
    let mut settings = world.settings();
    settings
        .set("feed.listen", &quote(&format!("0.0.0.0:{port}")))
        .set("feed.allow_remote", "true")
        .set("batch.max_age", &quote("300ms"));
    let agent = world.agent(&settings);
    let records: Vec<Vec<u8>> = (0..20).map(|n| leef("remote", n, 0)).collect();
    send_tcp(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &lines(&records),
    );
    world
        .emulator
        .wait_for_records(records.len() as u64, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    drop(agent);
    assert_exactly_once(&world.emulator, records);
}

/// Under systemd the token may come from `LoadCredential=`: `$CREDENTIALS_DIRECTORY/mcas.token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_credentials_directory() {
    let world = World::start().await;
    world.emulator.set_banned(vec![".reddit.com".to_string()]);
    let mut settings = world.settings();
    settings.set("mcas.token", &quote(""));
    let config = world.dir.path().join("config.toml");
    settings.write(&config);
    let credentials = world.dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("mcas.token"), format!("{TOKEN}\n")).unwrap();
    let credentials = credentials.display().to_string();

    // Without the credential there is no token.
    let (code, text) = run_nss(&config, &["troubleshoot", "mcas"], &[]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("mcas.token"), "{text}");

    let env = [("CREDENTIALS_DIRECTORY", credentials.as_str())];
    let (code, text) = run_nss(&config, &["dump-config"], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("token = \"****CRET\""), "{text}");
    // MCAS accepts it: the trailing newline was trimmed.
    let (code, text) = run_nss(&config, &["troubleshoot", "mcas"], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(".reddit.com"), "{text}");
}
