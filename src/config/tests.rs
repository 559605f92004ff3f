//! Loading and checking the settings: every refusal names its key.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(toml: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load(&path)
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn defaults_when_the_file_is_missing() {
    let settings = Settings::load(Path::new("/nonexistent/config.toml")).unwrap();
    assert!(!settings.file_found);
    assert_eq!(settings.batch.max_records, 100_000);
    assert_eq!(settings.batch.max_bytes, 256 << 20);
    assert_eq!(
        settings.feed.listen,
        Some("127.0.0.1:13010".parse().unwrap())
    );
    let err = settings.mcas_target().unwrap_err();
    assert_eq!(err.key, "mcas.domain");
    assert!(err.problem.contains("configure-mcas"));
}

#[test]
fn reads_sizes_durations_and_auto() {
    let s = load(&format!(
        r#"
        [mcas]
        domain = "x.us3.portal.cloudappsecurity.com"
        token = "{TOKEN}"
        [feed]
        listen = ""
        files = ["/tmp/a.log"]
        max_record_bytes = "64KiB"
        [batch]
        max_bytes = "64MiB"
        max_age = "90s"
        max_records = 10
        [memory]
        limit = "512MiB"
        [spool]
        max_bytes = "auto"
        "#
    ))
    .unwrap();
    assert_eq!(s.feed.listen, None);
    assert_eq!(s.feed.max_record_bytes, 64 << 10);
    assert_eq!(s.batch.max_bytes, 64 << 20);
    assert_eq!(s.batch.max_age, Duration::from_secs(90));
    assert_eq!(s.memory.limit, Limit::Bytes(512 << 20));
    assert_eq!(s.spool.max_bytes, Limit::Auto);
    let target = s.mcas_target().unwrap();
    match target.credential {
        McasCredential::Token(token) => assert_eq!(token.expose(), TOKEN),
        other => panic!("expected a token, got {other:?}"),
    }
}

#[test]
fn names_the_key_at_fault() {
    for (toml, key) in [
        ("[mcas]\ndomain = \"https://x.com\"", "mcas.domain"),
        ("[mcas]\ndomain = \"x.com/path\"", "mcas.domain"),
        ("[mcas]\ndomain = \"x .com\"", "mcas.domain"),
        ("[mcas]\nca_file = \"/nonexistent.pem\"", "mcas.ca_file"),
        ("[mcas]\ntoken = \"short\"", "mcas.token"),
        ("[batch]\nmax_age = \"soon\"", "batch.max_age"),
        ("[batch]\nmax_bytes = \"8GiB\"", "batch.max_bytes"),
        ("[batch]\ngzip_level = 11", "batch.gzip_level"),
        ("[batch]\nmax_agee = \"5m\"", "batch.max_agee"),
        ("[feed]\nlisten = \"localhost\"", "feed.listen"),
    ] {
        let err = load(toml).unwrap_err();
        assert_eq!(err.key, key, "{toml}: {err}");
    }
}

#[test]
fn the_token_never_shows_in_debug() {
    let s = load(&format!("[mcas]\ntoken = \"{TOKEN}\"")).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(TOKEN));
    assert!(debug.contains("****cdef"));
}

const DOMAIN: &str = "x.us3.portal.cloudappsecurity.com";

/// A PEM file with a certificate and a private key (their bodies do not matter here).
fn certificate(dir: &Path) -> String {
    let path = dir.join("app.pem");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn every_new_check_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    for (toml, key, says) in [
        (
            "[feed]\nlisten = \"0.0.0.0:13010\"".to_string(),
            "feed.listen",
            "no authentication",
        ),
        (
            "[feed]\nlisten = \"[::]:13010\"".to_string(),
            "feed.listen",
            "feed.allow_remote",
        ),
        (
            "[metrics]\nlisten = \"10.0.0.5:9713\"".to_string(),
            "metrics.listen",
            "metrics.allow_remote",
        ),
        (
            "[feed]\nfiles = [\"/var/log/a.log\", \"b.log\"]".to_string(),
            "feed.files",
            "absolute path",
        ),
        (
            "[paths]\nstate_dir = \"state\"".to_string(),
            "paths.state_dir",
            "absolute path",
        ),
        (
            "[paths]\nruntime_dir = \"\"".to_string(),
            "paths.runtime_dir",
            "absolute path",
        ),
        (
            "[mcas]\ntoken_file = \"token\"".to_string(),
            "mcas.token_file",
            "absolute path",
        ),
        (
            "[mcas]\nclient_secret_file = \"./s\"".to_string(),
            "mcas.client_secret_file",
            "absolute path",
        ),
        (
            "[mcas]\ncertificate_file = \"app.pem\"".to_string(),
            "mcas.certificate_file",
            "absolute path",
        ),
        (
            "[zia]\npassword_file = \"pw\"".to_string(),
            "zia.password_file",
            "absolute path",
        ),
        (
            "[zia]\napi_key_file = \"k\"".to_string(),
            "zia.api_key_file",
            "absolute path",
        ),
        (
            "[zia]\nprivate_key_file = \"k.pem\"".to_string(),
            "zia.private_key_file",
            "absolute path",
        ),
        (
            "[zia]\nca_file = \"ca.pem\"".to_string(),
            "zia.ca_file",
            "absolute path",
        ),
        (
            "[batch]\nmax_age = \"100000000d\"".to_string(),
            "batch.max_age",
            "30 days",
        ),
        (
            "[batch]\nmax_age = 99999999999".to_string(),
            "batch.max_age",
            "30 days",
        ),
        (
            "[upload]\ntimeout = \"31d\"".to_string(),
            "upload.timeout",
            "30 days",
        ),
        (
            "[upload]\nbackoff_max = \"1000d\"".to_string(),
            "upload.backoff_max",
            "30 days",
        ),
        (
            "[upload]\nauth_retry = \"1y\"".to_string(),
            "upload.auth_retry",
            "30 days",
        ),
        (
            "[upload]\nshutdown_timeout = \"40d\"".to_string(),
            "upload.shutdown_timeout",
            "30 days",
        ),
        (
            "[sync]\ninterval = \"60d\"".to_string(),
            "sync.interval",
            "30 days",
        ),
        (
            "[feed]\nmax_record_bytes = \"2GiB\"".to_string(),
            "feed.max_record_bytes",
            "1GiB",
        ),
        (
            "[memory]\nlimit = \"2TiB\"".to_string(),
            "memory.limit",
            "1TiB",
        ),
        ("[memory]\nlimit = 0".to_string(), "memory.limit", "auto"),
        (
            "[spool]\nmax_bytes = \"18446744073709551615\"".to_string(),
            "spool.max_bytes",
            "out of range",
        ),
        (
            "[mcas]\nsource = \"ZSCALER_LEEF\"".to_string(),
            "mcas.source",
            "ZSCALER_CEF_SYSLOG",
        ),
        ("[mcas]\nauth = \"oauth\"".to_string(), "mcas.auth", "entra"),
        (
            "[mcas]\nauthority = \"http://login.microsoftonline.com\"".to_string(),
            "mcas.authority",
            "https",
        ),
        (
            "[mcas]\nauthority = \"https://login.microsoftonline.com/common\"".to_string(),
            "mcas.authority",
            "path",
        ),
        (
            "[mcas]\ntenant_id = \"a/b\"".to_string(),
            "mcas.tenant_id",
            "Entra id",
        ),
        (
            "[mcas]\nclient_id = \"a b\"".to_string(),
            "mcas.client_id",
            "Entra id",
        ),
        (
            "[mcas]\nclient_secret = \"s\"\nclient_secret_file = \"/etc/s\"".to_string(),
            "mcas.client_secret",
            "both set",
        ),
        (
            format!("[mcas]\nclient_secret = \"s\"\ncertificate_file = \"{cert}\""),
            "mcas.certificate_file",
            "both set",
        ),
        (
            "[mcas]\ncertificate_file = \"/nonexistent/app.pem\"".to_string(),
            "mcas.certificate_file",
            "cannot read",
        ),
        (
            "[zia]\nbase_url = \"http://zsapi.zscaler.net\"".to_string(),
            "zia.base_url",
            "https",
        ),
        (
            "[zia]\nbase_url = \"https://zsapi.zscaler.net/api/v1\"".to_string(),
            "zia.base_url",
            "path",
        ),
        (
            "[zia]\nauth = \"password\"".to_string(),
            "zia.auth",
            "oneapi",
        ),
        (
            "[zia]\napi_key = \"0123456789abc\"".to_string(),
            "zia.api_key",
            "12",
        ),
        (
            "[zia]\ntoken_url = \"http://x.zslogin.net/oauth2/v1/token\"".to_string(),
            "zia.token_url",
            "https",
        ),
        (
            "[zia]\npassword = \"p\"\npassword_file = \"/etc/p\"".to_string(),
            "zia.password",
            "both set",
        ),
        (
            "[zia]\nca_file = \"/nonexistent/ca.pem\"".to_string(),
            "zia.ca_file",
            "cannot read",
        ),
        (
            "[zia]\nurl = \"https://zsapi.zscaler.net\"".to_string(),
            "zia.url",
            "not a known key",
        ),
        (
            "[feed]\nallow_remote = \"sometimes\"".to_string(),
            "feed.allow_remote",
            "boolean",
        ),
    ] {
        let err = load(&toml).unwrap_err();
        assert_eq!(err.key, key, "{toml}: {err}");
        assert!(err.problem.contains(says), "{toml}: {err}");
    }
}

#[test]
fn what_the_checks_accept() {
    let s = load(
        "[feed]\nlisten = \"0.0.0.0:13010\"\nallow_remote = true\n[metrics]\nlisten = \"[::1]:9713\"\n[batch]\nmax_age = \"30d\"\n[mcas]\nsource = \"ZSCALER_CEF\"\n[memory]\nlimit = 1048576\n",
    )
    .unwrap();
    assert_eq!(s.feed.listen, Some("0.0.0.0:13010".parse().unwrap()));
    assert_eq!(s.batch.max_age, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(s.mcas.source, "ZSCALER_CEF");
    assert_eq!(s.memory.limit, Limit::Bytes(1 << 20));
}

#[test]
fn an_entra_application_is_the_mcas_credential() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[mcas]\ndomain = \"{DOMAIN}\"\nauth = \"entra\"\nauthority = \"https://login.microsoftonline.us/\"\n"
    );
    for (missing, key) in [
        (
            "tenant_id = \"contoso.onmicrosoft.com\"\nclient_secret = \"s\"\n",
            "mcas.client_id",
        ),
        (
            "client_id = \"c\"\nclient_secret = \"s\"\n",
            "mcas.tenant_id",
        ),
        (
            "tenant_id = \"t\"\nclient_id = \"c\"\n",
            "mcas.client_secret",
        ),
    ] {
        let err = load(&format!("{base}{missing}"))
            .unwrap()
            .mcas_target()
            .unwrap_err();
        assert_eq!(err.key, key, "{missing}: {err}");
    }
    // The token is not needed with entra.
    let s = load(&format!(
        "{base}tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s3cret\"\n"
    ))
    .unwrap();
    match s.mcas_target().unwrap().credential {
        McasCredential::Entra(app) => {
            assert_eq!(app.authority, "https://login.microsoftonline.us");
            assert_eq!((app.tenant_id.as_str(), app.client_id.as_str()), ("t", "c"));
            assert!(matches!(app.secret, EntraSecret::ClientSecret(s) if s.expose() == "s3cret"));
        }
        other => panic!("expected an Entra application, got {other:?}"),
    }
    let cert = certificate(dir.path());
    let s = load(&format!(
        "{base}tenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = \"{cert}\"\n"
    ))
    .unwrap();
    match s.mcas_target().unwrap().credential {
        McasCredential::Entra(app) => {
            assert!(matches!(app.secret, EntraSecret::Certificate(p) if p == Path::new(&cert)))
        }
        other => panic!("expected an Entra application, got {other:?}"),
    }
}

#[test]
fn the_zia_target_is_off_until_its_base_url_is_set() {
    assert!(load("").unwrap().zia_target().unwrap().is_none());
    let base = "[zia]\nbase_url = \"https://zsapi.zscaler.net/\"\n";
    for (keys, missing) in [
        ("", "zia.username"),
        ("username = \"a@b.c\"\n", "zia.password"),
        ("username = \"a@b.c\"\npassword = \"p\"\n", "zia.api_key"),
        ("auth = \"oneapi\"\n", "zia.token_url"),
        ("auth = \"oneapi\"\ntoken_url = \"https://v.zslogin.net/oauth2/v1/token\"\n", "zia.client_id"),
        ("auth = \"oneapi\"\ntoken_url = \"https://v.zslogin.net/oauth2/v1/token\"\nclient_id = \"c\"\n", "zia.client_secret"),
    ] {
        let err = load(&format!("{base}{keys}")).unwrap().zia_target().unwrap_err();
        assert_eq!(err.key, missing, "{keys}: {err}");
    }
    let target = load(&format!(
        "{base}username = \"a@b.c\"\npassword = \"p\"\napi_key = \"abcdefghijkl\"\n"
    ))
    .unwrap()
    .zia_target()
    .unwrap()
    .unwrap();
    assert_eq!(target.base_url, "https://zsapi.zscaler.net");
    assert!(
        matches!(target.login, ZiaLogin::ApiKey { api_key, .. } if api_key.expose() == "abcdefghijkl")
    );
    let target = load(&format!(
        "{base}auth = \"oneapi\"\ntoken_url = \"https://v.zslogin.net/oauth2/v1/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
    ))
    .unwrap()
    .zia_target()
    .unwrap()
    .unwrap();
    assert!(matches!(
        target.login,
        ZiaLogin::OneApi {
            secret: OneApiSecret::ClientSecret(_),
            ..
        }
    ));
}

#[test]
fn secrets_come_from_files_and_the_credentials_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("mcas.token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(credentials.join("zia.password"), "pass word\r\n").unwrap();
    std::fs::write(credentials.join("mcas.client_secret"), "from-credentials").unwrap();
    let api_key = dir.path().join("api-key");
    std::fs::write(&api_key, "abcdefghijkl\n").unwrap();
    std::fs::set_permissions(&api_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cert = certificate(dir.path());
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &path,
        format!(
            "[mcas]\ncertificate_file = \"{cert}\"\n[zia]\napi_key_file = \"{}\"\n",
            api_key.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Settings::load_with_credentials(&path, Some(&credentials)).unwrap();
    assert_eq!(s.mcas.token.as_ref().unwrap().expose(), TOKEN);
    assert_eq!(s.zia.password.as_ref().unwrap().expose(), "pass word");
    assert_eq!(s.zia.api_key.as_ref().unwrap().expose(), "abcdefghijkl");
    // A certificate proves the application: the credential's secret is not read beside it.
    assert!(s.mcas.client_secret.is_none());
    // No secret in the file itself, none readable by others: nothing to warn about.
    assert_eq!(s.warnings(), Vec::<String>::new());

    // An inline secret wins over the credentials directory.
    std::fs::write(&path, format!("[mcas]\ntoken = \"{}\"\n", "f".repeat(40))).unwrap();
    let s = Settings::load_with_credentials(&path, Some(&credentials)).unwrap();
    assert_eq!(s.mcas.token.as_ref().unwrap().expose(), "f".repeat(40));
    // ... and a file holding a secret that others can read is a warning.
    let warnings = s.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("chmod 600") && !warnings[0].contains(&"f".repeat(40)));

    std::fs::set_permissions(&api_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(
        &path,
        format!("[zia]\napi_key_file = \"{}\"\n", api_key.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let warnings = Settings::load_with_credentials(&path, None)
        .unwrap()
        .warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("zia.api_key_file: "),
        "{warnings:?}"
    );

    // A bad token from the credentials directory names the key it stands for.
    std::fs::write(credentials.join("mcas.token"), "short\n").unwrap();
    std::fs::write(&path, "").unwrap();
    let err = Settings::load_with_credentials(&path, Some(&credentials)).unwrap_err();
    assert_eq!(err.key, "mcas.token", "{err}");
}

#[test]
fn the_advice_for_a_shared_secret_keeps_the_daemon_reading_it() {
    let path = Path::new("/etc/nss-agent/config.toml");
    // The packaged layout: root-owned, read by the daemon through its group.
    assert_eq!(
        super::load::private_mode_advice(path, true),
        "chown root:nss-agent /etc/nss-agent/config.toml && chmod 0640 /etc/nss-agent/config.toml"
    );
    assert_eq!(
        super::load::private_mode_advice(path, false),
        "chmod 600 /etc/nss-agent/config.toml"
    );
}
