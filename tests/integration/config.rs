//! Bad configuration is refused before anything starts: exit 78 and the key named.

use crate::harness::*;

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
        let (code, stderr) = run_with(&toml);
        assert_eq!(code, 78, "{toml}\n{stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(hint),
            "{toml}\n{stderr}"
        );
        assert!(!stderr.contains(TOKEN), "the token was printed");
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
