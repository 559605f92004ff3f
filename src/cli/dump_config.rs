//! `nss dump-config`: the effective configuration, token masked.

use std::path::Path;

use crate::config::{format_duration, format_size, Limit, Settings};

/// Prints the configuration as TOML that `Settings::load` reads back (but for the token).
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    print!("{}", render(settings));
    Ok(())
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

/// The configuration as TOML, with the token masked.
pub fn render(s: &Settings) -> String {
    let found = if s.file_found {
        ""
    } else {
        " (not found: defaults)"
    };
    let token = match (&s.mcas.token, &s.mcas.token_file) {
        (_, Some(file)) => format!("token_file = {}", quote(&file.display().to_string())),
        (Some(token), None) => format!("token = {}", quote(&token.masked())),
        (None, None) => "token = \"\"".to_string(),
    };
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
{token}
data_source = {data_source}
source = {source}
ca_file = {ca_file}

[feed]
listen = {listen}
files = [{files}]
max_record_bytes = {max_record}

[batch]
max_records = {max_records}
max_bytes = {max_bytes}
max_age = {max_age}
gzip_level = {gzip_level}
writers = {writers}

[upload]
api_calls_per_minute = {calls}
timeout = {timeout}
backoff_min = {backoff_min}
backoff_max = {backoff_max}
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

[metrics]
listen = {metrics}

[paths]
state_dir = {state_dir}
runtime_dir = {runtime_dir}
"#,
        path = s.path.display(),
        domain = quote(s.mcas.domain.as_deref().unwrap_or("")),
        data_source = quote(&s.mcas.data_source),
        source = quote(&s.mcas.source),
        ca_file = path(&s.mcas.ca_file),
        listen = addr(s.feed.listen),
        files = files.join(", "),
        max_record = quote(&format_size(s.feed.max_record_bytes)),
        max_records = s.batch.max_records,
        max_bytes = quote(&format_size(s.batch.max_bytes)),
        max_age = quote(&format_duration(s.batch.max_age)),
        gzip_level = s.batch.gzip_level,
        writers = if s.batch.writers == 0 {
            quote("auto")
        } else {
            s.batch.writers.to_string()
        },
        calls = s.upload.api_calls_per_minute,
        timeout = quote(&format_duration(s.upload.timeout)),
        backoff_min = quote(&format_duration(s.upload.backoff_min)),
        backoff_max = quote(&format_duration(s.upload.backoff_max)),
        auth_retry = quote(&format_duration(s.upload.auth_retry)),
        shutdown_timeout = quote(&format_duration(s.upload.shutdown_timeout)),
        spool_max = limit(s.spool.max_bytes),
        memory_limit = limit(s.memory.limit),
        interval = quote(&format_duration(s.sync.interval)),
        category = quote(&s.sync.category),
        max_urls = s.sync.max_custom_urls,
        max_categories = s.sync.max_custom_categories,
        metrics = addr(s.metrics.listen),
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
}
