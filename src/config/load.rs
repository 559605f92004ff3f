//! Reading the settings: the TOML file merged with `NSS_AGENT__SECTION__KEY` environment
//! overrides by the `config` crate, deserialised into [`Settings`] with every error naming
//! its key, then the secrets read from their files or from systemd's credentials directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::{ConfigError, Secret, Settings};

/// The sections of the file, for the message about an unknown one.
const SECTIONS: &str =
    "[mcas], [feed], [batch], [upload], [spool], [memory], [sync], [zia], [proxy], [metrics] or [paths]";

/// Every secret: its section and key; each may also come from `<key>_file` or from
/// `$CREDENTIALS_DIRECTORY/<section>.<key>`.
const SECRET_KEYS: [(&str, &str); 6] = [
    ("mcas", "token"),
    ("mcas", "client_secret"),
    ("zia", "password"),
    ("zia", "api_key"),
    ("zia", "client_secret"),
    ("proxy", "password"),
];

/// The merged file and environment, deserialised; secrets not yet read from their files.
pub(super) fn read(path: &Path) -> Result<Settings, ConfigError> {
    let file_key = path.display().to_string();
    let file_found = path.exists();
    if file_found {
        // Read once here so that an unreadable file says so, rather than "not found", and
        // parsed here so that a syntax error is told without the `config` crate's
        // message, which quotes the line (the secret, on a secret's line).
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::new(
                &file_key,
                format!("cannot read the configuration file: {e}"),
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ConfigError::new(
                &file_key,
                format!(
                    "is not UTF-8 text (at byte {}): save it as UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        if let Err(error) = text.parse::<toml_edit::DocumentMut>() {
            return Err(ConfigError::new(
                &file_key,
                super::syntax::describe(&text, &error),
            ));
        }
    }
    let merged = Config::builder()
        .add_source(File::new(&file_key, FileFormat::Toml).required(false))
        .add_source(
            Environment::with_prefix("NSS_AGENT")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("feed.files")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| match e {
            // Parsed above: only a file changed in between gets here; its text untold.
            config::ConfigError::FileParse { .. } => ConfigError::new(
                &file_key,
                "is not valid TOML (it changed while being read): run the command again",
            ),
            other => ConfigError::new("environment", message(&other)),
        })?;
    let mut settings: Settings =
        serde_path_to_error::deserialize(merged).map_err(|e| key_error(&e))?;
    settings.path = path.to_path_buf();
    settings.file_found = file_found;
    Ok(settings)
}

/// Turns a deserialisation error into one that names the key, in words.
fn key_error(error: &serde_path_to_error::Error<config::ConfigError>) -> ConfigError {
    let path = match error.path().to_string() {
        root if root == "." => String::new(),
        path => path,
    };
    match Complaint::of(error.inner()) {
        Complaint::UnknownField(name) => {
            // The path ends with the unknown key itself.
            let key = match path.strip_suffix(&name) {
                Some(parent) if parent.is_empty() || parent.ends_with('.') => path.clone(),
                _ if path.is_empty() => name,
                _ => format!("{path}.{name}"),
            };
            if key.contains('.') {
                ConfigError::new(
                    &key,
                    "is not a known key: check its spelling and section (`nss dump-config` lists every key)",
                )
            } else {
                ConfigError::new(
                    &key,
                    format!("is not a known section: keys belong under {SECTIONS}"),
                )
            }
        }
        complaint => {
            let key = if path.is_empty() { "(file)" } else { &path };
            ConfigError::new(key, complaint.in_words())
        }
    }
}

/// What a `config` error says, sorted. The `config` crate carries serde's complaints only
/// as text (its error implements serde's `custom`, so `invalid_type` and `unknown_field`
/// arrive formatted by serde's default methods); this is the one place that reads that
/// text, and `tests::serde_wording_is_read_back` builds it with serde's own methods, so
/// that a serde that words it otherwise fails a test rather than an administrator.
#[derive(Debug, PartialEq, Eq)]
enum Complaint {
    /// A key the settings do not have.
    UnknownField(String),
    /// A value of the wrong type: what it was, and what the key takes.
    WrongType {
        unexpected: String,
        expected: String,
    },
    /// Anything else, in its own words.
    Other(String),
}

impl Complaint {
    fn of(error: &config::ConfigError) -> Complaint {
        match error {
            config::ConfigError::At { error, .. } => Complaint::of(error),
            config::ConfigError::Type {
                unexpected,
                expected,
                ..
            } => Complaint::WrongType {
                unexpected: unexpected.to_string(),
                expected: expected.to_string(),
            },
            other => Complaint::read(&other.to_string()),
        }
    }

    /// The complaint for an administrator: a wrong type as "must be ..., not ...".
    fn in_words(self) -> String {
        match self {
            Complaint::WrongType {
                unexpected,
                expected,
            } => must_be(&expected, &kind_of(&unexpected)),
            Complaint::UnknownField(name) => format!("unknown field `{name}`"),
            Complaint::Other(message) => message,
        }
    }

    /// Reads serde's wording: "unknown field `x`, expected one of ..." and
    /// "invalid type: integer `5`, expected a size ...".
    fn read(text: &str) -> Complaint {
        if let Some(rest) = text.strip_prefix("unknown field `") {
            if let Some((name, _)) = rest.split_once('`') {
                return Complaint::UnknownField(name.to_string());
            }
        }
        match text
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.split_once(", expected "))
        {
            Some((unexpected, expected)) => Complaint::WrongType {
                unexpected: unexpected.to_string(),
                expected: expected.to_string(),
            },
            None => Complaint::Other(text.to_string()),
        }
    }
}

/// The message of a `config` error that names no key of the settings (the environment's
/// own errors), in words for an administrator.
fn message(error: &config::ConfigError) -> String {
    Complaint::of(error).in_words()
}

/// A value of the wrong type, as an error may show it: numbers and booleans as written
/// (`integer `5``), a string only as "a string", since a string under the wrong key may be
/// a secret.
fn kind_of(unexpected: &str) -> String {
    if unexpected.starts_with("string") {
        "a string".to_string()
    } else {
        unexpected.to_string()
    }
}

fn must_be(expected: &str, unexpected: &str) -> String {
    let expected = if expected.contains("integer") {
        "a whole number"
    } else if expected.starts_with("struct ") {
        "a section of keys ([section] in the file)"
    } else {
        expected
    };
    format!("must be {expected}, not {unexpected}")
}

/// Where a secret came from, for errors about its value.
pub(super) enum SecretSource {
    /// Written in the file or the environment under its own key.
    Inline,
    /// Read from the `<key>_file` path.
    File,
    /// Read from `$CREDENTIALS_DIRECTORY/<section>.<key>`.
    Credentials,
}

impl SecretSource {
    /// The key an error about the secret names.
    pub(super) fn key(&self, section: &str, key: &str) -> String {
        match self {
            SecretSource::File => format!("{section}.{key}_file"),
            SecretSource::Inline | SecretSource::Credentials => format!("{section}.{key}"),
        }
    }
}

/// Where each secret that is set came from.
#[derive(Default)]
pub(super) struct SecretSources(Vec<(&'static str, &'static str, SecretSource)>);

impl SecretSources {
    /// The key an error about the value of `section.key` names: `<key>_file` when the
    /// secret was read from there.
    pub(super) fn key(&self, section: &str, key: &str) -> String {
        self.0
            .iter()
            .find(|(s, k, _)| (*s, *k) == (section, key))
            .map_or_else(
                || format!("{section}.{key}"),
                |(_, _, source)| source.key(section, key),
            )
    }
}

/// Reads every secret that is not written inline: from its `<key>_file`, else from the
/// credentials directory systemd gives the service (`LoadCredential=`), unless another
/// key already proves the identity (a certificate or private key file). Notes a warning
/// for each secret file other users can read.
pub(super) fn read_secrets(
    settings: &mut Settings,
    credentials: Option<&Path>,
) -> Result<SecretSources, ConfigError> {
    let mut warnings = Vec::new();
    let mut sources = SecretSources::default();
    let (mcas, zia, proxy) = (&mut settings.mcas, &mut settings.zia, &mut settings.proxy);
    let has_certificate = mcas.certificate_file.is_some();
    let has_private_key = zia.private_key_file.is_some();
    let slots = [
        ("mcas", "token", &mut mcas.token, &mcas.token_file, false),
        (
            "mcas",
            "client_secret",
            &mut mcas.client_secret,
            &mcas.client_secret_file,
            has_certificate,
        ),
        (
            "zia",
            "password",
            &mut zia.password,
            &zia.password_file,
            false,
        ),
        ("zia", "api_key", &mut zia.api_key, &zia.api_key_file, false),
        (
            "zia",
            "client_secret",
            &mut zia.client_secret,
            &zia.client_secret_file,
            has_private_key,
        ),
        (
            "proxy",
            "password",
            &mut proxy.password,
            &proxy.password_file,
            false,
        ),
    ];
    for (section, key, inline, file, has_alternative) in slots {
        let credentials = credentials.filter(|_| !has_alternative);
        let source = read_secret(
            section,
            key,
            inline,
            file.as_deref(),
            credentials,
            &mut warnings,
        )?;
        if let Some(source) = source {
            sources.0.push((section, key, source));
        }
    }
    for (key, path) in [
        ("mcas.certificate_file", &settings.mcas.certificate_file),
        ("zia.private_key_file", &settings.zia.private_key_file),
    ] {
        if let Some(path) = path {
            warn_if_shared(key, path, &mut warnings);
        }
    }
    if settings.file_found && file_holds_secret(&settings.path) {
        warn_if_shared(
            &settings.path.display().to_string(),
            &settings.path,
            &mut warnings,
        );
    }
    settings.warnings = warnings;
    Ok(sources)
}

fn read_secret(
    section: &str,
    key: &str,
    inline: &mut Option<Secret>,
    file: Option<&Path>,
    credentials: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Option<SecretSource>, ConfigError> {
    let file_key = format!("{section}.{key}_file");
    match (inline.is_some(), file) {
        (true, Some(_)) => Err(ConfigError::new(
            &format!("{section}.{key}"),
            format!("and {file_key} are both set: keep one of the two"),
        )),
        (true, None) => Ok(Some(SecretSource::Inline)),
        (false, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    &file_key,
                    format!(
                        "cannot read {}: {e}; point it at a readable file holding the secret",
                        path.display()
                    ),
                )
            })?;
            warn_if_shared(&file_key, path, warnings);
            *inline = Some(Secret::new(without_line_end(text)));
            Ok(Some(SecretSource::File))
        }
        (false, None) => {
            let Some(dir) = credentials else {
                return Ok(None);
            };
            let path = dir.join(format!("{section}.{key}"));
            if !path.exists() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    &format!("{section}.{key}"),
                    format!("cannot read the credential {}: {e}", path.display()),
                )
            })?;
            *inline = Some(Secret::new(without_line_end(text)));
            Ok(Some(SecretSource::Credentials))
        }
    }
}

/// The secret without the line end an editor or `echo` leaves after it.
fn without_line_end(mut text: String) -> String {
    while text.ends_with(['\n', '\r']) {
        text.pop();
    }
    text
}

/// A warning when the file at `path`, which holds a secret, can be read by other users.
fn warn_if_shared(key: &str, path: &Path, warnings: &mut Vec<String>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    // Group-readable is how the packaged file (`root:nss-agent 0640`) lets the daemon's
    // user read it: only a group other than the daemon's shares the secret.
    let group_shares = mode & 0o040 != 0 && !is_the_daemons_group(meta.gid());
    if mode & 0o004 != 0 || group_shares {
        warnings.push(format!(
            "{key}: {} holds a secret and is readable by other users (mode {mode:04o}): run `{}`",
            path.display(),
            private_mode_advice(path, daemons_group_exists())
        ));
    }
}

/// The command that makes a secret file private, and still readable by the daemon: where
/// the packages made its group, root-owned and readable through that group (the packaged
/// layout: `chmod 600` alone would lock the daemon out); else for its owner only.
pub(super) fn private_mode_advice(path: &Path, daemons_group: bool) -> String {
    let path = path.display();
    if daemons_group {
        format!("chown root:{DAEMON_GROUP} {path} && chmod 0640 {path}")
    } else {
        format!("chmod 600 {path}")
    }
}

/// The group of the daemon's user, as the packages create it.
const DAEMON_GROUP: &str = "nss-agent";

fn daemons_group_exists() -> bool {
    nix::unistd::Group::from_name(DAEMON_GROUP)
        .ok()
        .flatten()
        .is_some()
}

/// Whether `gid` is the group of the daemon's user (`nss-agent`, as the packages create it).
fn is_the_daemons_group(gid: u32) -> bool {
    nix::unistd::Group::from_name(DAEMON_GROUP)
        .ok()
        .flatten()
        .is_some_and(|group| group.gid.as_raw() == gid)
}

/// Whether the configuration file itself writes one of the secrets inline.
fn file_holds_secret(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return false;
    };
    SECRET_KEYS.iter().any(|(section, key)| {
        doc.get(section)
            .and_then(|table| table.get(key))
            .and_then(|value| value.as_str())
            .is_some_and(|value| !value.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::Unexpected;

    #[test]
    fn serde_wording_is_read_back() {
        // Built the way serde builds them for the `config` crate's error: its default
        // `invalid_type` and `unknown_field`, formatted into `custom`.
        let wrong = <config::ConfigError as serde::de::Error>::invalid_type(
            Unexpected::Signed(5),
            &"a size",
        );
        assert_eq!(
            Complaint::of(&wrong),
            Complaint::WrongType {
                unexpected: "integer `5`".into(),
                expected: "a size".into()
            }
        );
        let secret = <config::ConfigError as serde::de::Error>::invalid_type(
            Unexpected::Str("hunter2"),
            &"a boolean",
        );
        assert_eq!(
            must_be(
                "a boolean",
                &kind_of(match &Complaint::of(&secret) {
                    Complaint::WrongType { unexpected, .. } => unexpected,
                    other => panic!("{other:?}"),
                })
            ),
            "must be a boolean, not a string",
            "a string is never quoted: it may be a secret"
        );
        for expected in [&["token", "domain"][..], &["token"], &[]] {
            let unknown =
                <config::ConfigError as serde::de::Error>::unknown_field("tokn", expected);
            assert_eq!(
                Complaint::of(&unknown),
                Complaint::UnknownField("tokn".into()),
                "{unknown}"
            );
        }
        let missing = <config::ConfigError as serde::de::Error>::custom("something else");
        assert_eq!(
            Complaint::of(&missing),
            Complaint::Other("something else".into())
        );
    }
}
