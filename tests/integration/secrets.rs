//! No output quotes a secret, whatever the configuration file's shape: a syntax error on
//! the line of a secret, or a secret written under the wrong key, is refused naming the
//! key and the line, in every command and in the log of a refused reload.

use nix::sys::signal::Signal;

use crate::support::harness::*;

/// A ZIA password, as long and odd as real ones.
const PASSWORD: &str = "Pa55-w0rd-quite-secret-9f3b";

/// Panics when `text` holds any eight consecutive characters of `secret`: a parser that
/// quotes the start of a line, or a message cut short, leaks a part as surely as the whole.
fn assert_no_part_of(text: &str, secret: &str, what: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for window in chars.windows(8) {
        let part: String = window.iter().collect();
        assert!(
            !text.contains(&part),
            "{what}: a part of the secret ({part:?}) was printed:\n{text}"
        );
    }
}

/// Runs `nss <args>` on the file `toml`; answers the exit code and both outputs. Unlike
/// `run_nss`, a value the file sets may show where dump-config prints it as configured.
fn nss_on(dir: &std::path::Path, toml: &str, args: &[&str]) -> (i32, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let output = nss()
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("NSS_AGENT__PATHS__STATE_DIR", dir.join("state"))
        .env("NSS_AGENT__PATHS__RUNTIME_DIR", dir.join("run"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The lines a secret may be botched on: its value, then the file's text around it.
fn malformed_lines(key: &str, secret: &str) -> Vec<String> {
    vec![
        // A missing closing quote.
        format!("{key} = \"{secret}\n"),
        // A stray character after the string.
        format!("{key} = \"{secret}\"x\n"),
        // A bare value.
        format!("{key} = {secret}\n"),
        // A literal string left open.
        format!("{key} = '{secret}\n"),
        // Two values on the line.
        format!("{key} = \"{secret}\" \"{secret}\"\n"),
        // No `=`.
        format!("{key} \"{secret}\"\n"),
    ]
}

#[test]
fn a_syntax_error_on_the_line_of_a_secret_never_quotes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mcas_head = "[mcas]\ndomain = \"x.us3.portal.cloudappsecurity.com\"\n";
    let zia_head = "[zia]\nusername = \"a@example.com\"\n";
    let files: Vec<(String, &str, &str)> = malformed_lines("token", TOKEN)
        .into_iter()
        .map(|line| (format!("{mcas_head}{line}"), TOKEN, "mcas.token"))
        .chain(
            malformed_lines("password", PASSWORD)
                .into_iter()
                .map(|line| (format!("{zia_head}{line}"), PASSWORD, "zia.password")),
        )
        .collect();
    for (toml, secret, key) in &files {
        for args in [
            &["dump-config"][..],
            &["status"],
            &["status", "--json"],
            &["run"],
        ] {
            let (code, text) = nss_on(dir.path(), toml, args);
            assert_eq!(code, 78, "nss {args:?} on\n{toml}\n{text}");
            assert_no_part_of(&text, secret, &format!("nss {args:?} on\n{toml}"));
            // The administrator is told where to look instead.
            assert!(
                text.contains("line 3") && text.contains(key),
                "nss {args:?} on\n{toml}\n{text}"
            );
        }
    }
}

#[test]
fn a_secret_written_under_any_other_key_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[mcas]\ndomain = \"x.us3.portal.cloudappsecurity.com\"\n";
    let (code, dump) = nss_on(dir.path(), good, &["dump-config"]);
    assert_eq!(code, 0, "{dump}");
    let document: toml_edit::DocumentMut = dump.parse().unwrap();
    let mut tried = 0;
    for (section, table) in document.iter() {
        let Some(table) = table.as_table() else {
            continue;
        };
        for (key, _) in table.iter() {
            // Every key, whatever its type: a swapped value lands anywhere.
            let mut swapped = document.clone();
            swapped[section][key] = toml_edit::value(TOKEN);
            let (code, text) = nss_on(dir.path(), &swapped.to_string(), &["dump-config"]);
            tried += 1;
            if code == 0 {
                // Accepted as a value of that key: dump-config shows what is configured.
                continue;
            }
            assert_eq!(code, 78, "{section}.{key}:\n{text}");
            assert!(text.contains(&format!("{section}.{key}")), "{text}");
            assert_no_part_of(&text, TOKEN, &format!("the token as {section}.{key}"));
        }
    }
    assert!(tried > 40, "only {tried} keys in dump-config's output");
}

#[test]
fn an_environment_override_of_the_wrong_type_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run_nss(
        &dir.path().join("missing.toml"),
        &["dump-config"],
        &[
            ("NSS_AGENT__BATCH__MAX_RECORDS", TOKEN),
            ("NSS_AGENT__MCAS__DOMAIN", TOKEN),
        ],
    );
    assert_eq!(code, 78, "{text}");
    assert_no_part_of(&text, TOKEN, "an override");
}

/// The log line of a refused SIGHUP names the line and the key, not the secret on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_does_not_log_the_secret_on_the_bad_line() {
    let world = World::start().await;
    let settings = world.settings();
    let mut agent = world.agent(&settings);
    let config = world.dir.path().join("config.toml");
    let broken = settings.toml().replace(
        &format!("token = {}", quote(TOKEN)),
        &format!("token = \"{TOKEN}"),
    );
    assert_ne!(broken, settings.toml());
    std::fs::write(&config, &broken).unwrap();
    agent.signal(Signal::SIGHUP);
    agent.wait_log("was not reloaded");
    assert!(agent.running(), "{}", agent.log_text());
    let log = agent.log_text();
    assert!(log.contains("mcas.token"), "{log}");
    assert_no_part_of(&log, TOKEN, "the log of the refused reload");
    let (_, status) = run_nss(&config, &["status"], &[]);
    assert_no_part_of(&status, TOKEN, "nss status after the refused reload");
}
