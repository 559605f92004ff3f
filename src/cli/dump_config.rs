//! `nss dump-config`: the effective configuration, secrets masked.

use std::path::{Path, PathBuf};

use crate::config::{format_duration, format_size, Limit, Secret, Settings};

/// Prints the configuration as TOML that `Settings::load` reads back (but for the
/// secrets), and the warnings about it on standard error.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    print!("{}", render(settings));
    for warning in settings.warnings() {
        eprintln!("nss: warning: {warning}");
    }
    Ok(())
}

/// A secret's line: its file when it came from one, else the secret masked.
fn secret(key: &str, secret: &Option<Secret>, file: &Option<PathBuf>) -> String {
    match (secret, file) {
        (_, Some(file)) => format!("{key}_file = {}", quote(&file.display().to_string())),
        (Some(secret), None) => format!("{key} = {}", quote(&secret.masked())),
        (None, None) => format!("{key} = \"\""),
    }
}

fn text(value: &Option<String>) -> String {
    quote(value.as_deref().unwrap_or(""))
}

fn quote(text: &str) -> String {
    // JSON string escapes are TOML basic-string escapes.
    serde_json::to_string(text).expect("a string always serializes")
}

fn path(p: &Option<impl AsRef<Path>>) -> String {
    quote(
        &p.as_ref()
            .map(|p| p.as_ref().display().to_string())
            .unwrap_or_default(),
    )
}

fn limit(l: Limit) -> String {
    match l {
        Limit::Auto => quote("auto"),
        Limit::Bytes(b) => quote(&format_size(b)),
    }
}

fn addr(a: Option<std::net::SocketAddr>) -> String {
    quote(&a.map(|a| a.to_string()).unwrap_or_default())
}

/// The configuration as TOML, with the secrets masked.
pub fn render(s: &Settings) -> String {
    let found = if s.file_found {
        ""
    } else {
        " (not found: defaults)"
    };
    let (mcas, zia) = (&s.mcas, &s.zia);
    let files: Vec<String> = s
        .feed
        .files
        .iter()
        .map(|f| quote(&f.display().to_string()))
        .collect();
    format!(
        r#"# effective configuration of {path}{found}
[mcas]
domain = {domain}
auth = {mcas_auth}
{token}
tenant_id = {tenant_id}
client_id = {client_id}
{client_secret}
certificate_file = {certificate_file}
authority = {authority}
data_source = {data_source}
source = {source}
ca_file = {ca_file}

[feed]
listen = {listen}
allow_remote = {feed_remote}
files = [{files}]
max_record_bytes = {max_record}
max_connections = {max_connections}
partial_timeout = {partial_timeout}

[batch]
max_records = {max_records}
max_bytes = {max_bytes}
max_age = {max_age}
busy_max_bytes = {busy_max_bytes}
gzip_level = {gzip_level}
writers = {writers}

[upload]
api_calls_per_minute = {calls}
min_api_calls_per_minute = {min_calls}
timeout = {timeout}
backoff_min = {backoff_min}
backoff_max = {backoff_max}
outage_retry = {outage_retry}
auth_retry = {auth_retry}
shutdown_timeout = {shutdown_timeout}

[spool]
max_bytes = {spool_max}

[memory]
limit = {memory_limit}

[sync]
interval = {interval}
category = {category}
max_custom_urls = {max_urls}
max_custom_categories = {max_categories}

[zia]
base_url = {base_url}
auth = {zia_auth}
username = {username}
{password}
{api_key}
token_url = {token_url}
client_id = {zia_client_id}
{zia_client_secret}
private_key_file = {private_key_file}
ca_file = {zia_ca_file}

[proxy]
url = {proxy_url}
username = {proxy_username}
{proxy_password}
no_proxy = {no_proxy}

[metrics]
listen = {metrics}
allow_remote = {metrics_remote}

[paths]
state_dir = {state_dir}
runtime_dir = {runtime_dir}
"#,
        path = s.path.display(),
        proxy_url = text(&s.proxy.url),
        proxy_username = text(&s.proxy.username),
        proxy_password = secret("password", &s.proxy.password, &s.proxy.password_file),
        no_proxy = quote(&s.proxy.no_proxy),
        domain = text(&mcas.domain),
        mcas_auth = quote(mcas.auth.as_str()),
        token = secret("token", &mcas.token, &mcas.token_file),
        tenant_id = text(&mcas.tenant_id),
        client_id = text(&mcas.client_id),
        client_secret = secret(
            "client_secret",
            &mcas.client_secret,
            &mcas.client_secret_file
        ),
        certificate_file = path(&mcas.certificate_file),
        authority = quote(&mcas.authority),
        data_source = quote(&s.mcas.data_source),
        source = quote(&s.mcas.source),
        ca_file = path(&s.mcas.ca_file),
        listen = addr(s.feed.listen),
        feed_remote = s.feed.allow_remote,
        files = files.join(", "),
        max_record = quote(&format_size(s.feed.max_record_bytes)),
        max_connections = s.feed.max_connections,
        partial_timeout = quote(&format_duration(s.feed.partial_timeout)),
        max_records = s.batch.max_records,
        max_bytes = quote(&format_size(s.batch.max_bytes)),
        max_age = quote(&format_duration(s.batch.max_age)),
        busy_max_bytes = quote(&format_size(s.batch.busy_max_bytes)),
        gzip_level = s.batch.gzip_level,
        writers = if s.batch.writers == 0 {
            quote("auto")
        } else {
            s.batch.writers.to_string()
        },
        calls = s.upload.api_calls_per_minute,
        min_calls = s.upload.min_api_calls_per_minute,
        timeout = quote(&format_duration(s.upload.timeout)),
        backoff_min = quote(&format_duration(s.upload.backoff_min)),
        backoff_max = quote(&format_duration(s.upload.backoff_max)),
        outage_retry = quote(&format_duration(s.upload.outage_retry)),
        auth_retry = quote(&format_duration(s.upload.auth_retry)),
        shutdown_timeout = quote(&format_duration(s.upload.shutdown_timeout)),
        spool_max = limit(s.spool.max_bytes),
        memory_limit = limit(s.memory.limit),
        interval = quote(&format_duration(s.sync.interval)),
        category = quote(&s.sync.category),
        max_urls = s.sync.max_custom_urls,
        max_categories = s.sync.max_custom_categories,
        base_url = text(&zia.base_url),
        zia_auth = quote(zia.auth.as_str()),
        username = text(&zia.username),
        password = secret("password", &zia.password, &zia.password_file),
        api_key = secret("api_key", &zia.api_key, &zia.api_key_file),
        token_url = text(&zia.token_url),
        zia_client_id = text(&zia.client_id),
        zia_client_secret = secret("client_secret", &zia.client_secret, &zia.client_secret_file),
        private_key_file = path(&zia.private_key_file),
        zia_ca_file = path(&zia.ca_file),
        metrics = addr(s.metrics.listen),
        metrics_remote = s.metrics.allow_remote,
        state_dir = quote(&s.paths.state_dir.display().to_string()),
        runtime_dir = quote(&s.paths.runtime_dir.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_as_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[batch]\nmax_age = \"90s\"\n[feed]\nfiles = [\"/tmp/x.log\"]\n",
        )
        .unwrap();
        let first = Settings::load(&path).unwrap();
        std::fs::write(&path, render(&first)).unwrap();
        let second = Settings::load(&path).unwrap();
        assert_eq!(
            render(&first).lines().skip(1).collect::<Vec<_>>(),
            render(&second).lines().skip(1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn shows_the_new_keys_with_every_secret_masked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let secrets = [
            "mcas-client-secret-0123456789",
            "zia-password-0123456789",
            "zia-client-secret-0123456789",
        ];
        std::fs::write(
            &path,
            format!(
                "[mcas]\nauth = \"entra\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"{}\"\n[zia]\nbase_url = \"https://zsapi.zscaler.net\"\nusername = \"admin\"\npassword = \"{}\"\napi_key = \"abcdefghijkl\"\nclient_secret = \"{}\"\n[feed]\nallow_remote = true\n",
                secrets[0], secrets[1], secrets[2]
            ),
        )
        .unwrap();
        let text = render(&Settings::load(&path).unwrap());
        for secret in secrets.iter().chain(&["abcdefghijkl"]) {
            assert!(!text.contains(secret), "{secret} shows in:\n{text}");
        }
        for line in [
            "auth = \"entra\"",
            "tenant_id = \"t\"",
            "client_secret = \"****6789\"",
            "authority = \"https://login.microsoftonline.com\"",
            "[zia]\nbase_url = \"https://zsapi.zscaler.net\"\nauth = \"api_key\"\nusername = \"admin\"\npassword = \"****6789\"\napi_key = \"****\"",
            "[feed]\nlisten = \"127.0.0.1:13010\"\nallow_remote = true",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
    }

    /// `section.key` for every `key = value` line of a TOML text.
    fn keys(text: &str) -> std::collections::BTreeSet<String> {
        let mut section = String::new();
        let mut keys = std::collections::BTreeSet::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                section = name.to_string();
            } else if let Some((key, _)) = line.split_once(" = ") {
                keys.insert(format!("{section}.{}", key.trim()));
            }
        }
        keys
    }

    #[test]
    fn the_packaged_file_documents_every_key() {
        let packaged = include_str!("../../packaging/config.toml");
        // Each documented default, uncommented: `# key = value  # what it is`.
        let uncommented: String = packaged
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split(" = ").next().is_some_and(|k| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &uncommented).unwrap();
        let settings = Settings::load(&path).unwrap();
        assert_eq!(keys(&uncommented), keys(&render(&settings)));
    }
}
