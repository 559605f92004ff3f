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
