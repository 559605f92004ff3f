//! `nss configure-zia` and `nss disable-zia`: enter or forget how the agent reaches the
//! tenant's ZIA API, where the unsanctioned-apps category is pushed; verified by a login
//! and a quota read, with one verdict.

use std::io::Read;
use std::path::Path;

use super::prompt::Input;
use super::troubleshoot_zia::{self, ZiaVerdict};
use super::{ConfigureZiaArgs, Unavailable};
use crate::config::edit::ConfigFile;
use crate::config::{check_https, check_https_base, ConfigError, Secret, Settings, ZiaAuth};

const AUTH_PROMPT: &str = "auth (api_key: API admin and key; oneapi: ZIdentity API client)";
const BASE_URL_PROMPT: &str =
    "base_url (ZIA API: the cloud name, e.g. zscalertwo, or a URL like https://zsapi.zscalertwo.net)";
const USERNAME_PROMPT: &str = "username (the API admin's login name)";
const PASSWORD_PROMPT: &str = "password (the API admin's password)";
const API_KEY_PROMPT: &str = "api_key (Administration > Cloud Service API Security: 12 characters)";
const TOKEN_URL_PROMPT: &str =
    "token_url (ZIdentity token endpoint, e.g. https://<vanity>.zslogin.net/oauth2/v1/token)";
const CLIENT_ID_PROMPT: &str = "client_id (the ZIdentity API client's id)";
const CLIENT_SECRET_PROMPT: &str = "client_secret (the ZIdentity API client's secret)";

/// The keys of `[zia]` that disable-zia forgets (ca_file stays: it is about the network).
const KEYS: [&str; 11] = [
    "base_url",
    "auth",
    "username",
    "password",
    "password_file",
    "api_key",
    "api_key_file",
    "token_url",
    "client_id",
    "client_secret",
    "client_secret_file",
];

/// The ZIA clouds of the API key login, whose API host is `zsapi.<cloud>.net`.
const CLOUDS: [&str; 8] = [
    "zscaler",
    "zscalerone",
    "zscalertwo",
    "zscalerthree",
    "zscloud",
    "zscalerbeta",
    "zscalergov",
    "zscalerten",
];

/// A base URL from what was typed: a cloud name becomes its API host.
fn base_url(auth: ZiaAuth, given: &str) -> Result<String, String> {
    let given = given.trim().trim_end_matches('/');
    let name = given.to_ascii_lowercase();
    let url = if CLOUDS.contains(&name.as_str()) {
        match (auth, name.as_str()) {
            (ZiaAuth::ApiKey, cloud) => format!("https://zsapi.{cloud}.net"),
            (ZiaAuth::OneApi, "zscaler") => "https://api.zsapi.net".to_string(),
            (ZiaAuth::OneApi, cloud) => format!("https://api.{cloud}.zsapi.net"),
        }
    } else {
        given.to_string()
    };
    check_https_base("zia.base_url", &url).map_err(|e| e.problem)?;
    Ok(url)
}

fn non_empty(key: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |text| {
        let text = text.trim();
        if text.is_empty() {
            Err(format!("{key} is empty"))
        } else {
            Ok(text.to_string())
        }
    }
}

fn api_key(text: &str) -> Result<Secret, String> {
    let text = text.trim();
    if text.chars().count() != 12 || !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "is {} characters: the cloud service API key has 12 letters and digits (Administration > Cloud Service API Security)",
            text.chars().count()
        ));
    }
    Ok(Secret::new(text))
}

fn secret(text: &str) -> Result<Secret, String> {
    if text.trim().is_empty() {
        Err("is empty".to_string())
    } else {
        Ok(Secret::new(text.trim()))
    }
}

/// A secret from a file or standard input, for the flags.
fn read_secret(key: &str, file: Option<&Path>, stdin: bool) -> Result<Option<Secret>, ConfigError> {
    let text = match (file, stdin) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ConfigError::new(key, format!("cannot read standard input: {e}")))?;
            text
        }
        (None, false) => return Ok(None),
    };
    secret(&text)
        .map(Some)
        .map_err(|p| ConfigError::new(key, p))
}

/// Where each value of `[zia]` comes from: its flag; else, when no flag is given at all,
/// the administrator's answer to its prompt (the current value offered); else the value
/// the file holds.
struct Answers<'a> {
    input: &'a mut Input,
    interactive: bool,
}

impl Answers<'_> {
    /// The value of `zia.<key>`: `flag` checked by `accept`, or asked, or the file's as it
    /// is; missing, an error saying to give it with `how`.
    fn value(
        &mut self,
        file: &ConfigFile,
        key: &'static str,
        flag: Option<&str>,
        prompt: &str,
        accept: impl Fn(&str) -> Result<String, String>,
        how: &str,
    ) -> Result<String, ConfigError> {
        let full = format!("zia.{key}");
        let current = file.string("zia", key);
        match (flag, self.interactive) {
            (Some(given), _) => accept(given).map_err(|p| ConfigError::new(&full, p)),
            (None, true) => self
                .input
                .ask_value(prompt, &full, current.as_deref(), accept),
            (None, false) => current
                .ok_or_else(|| ConfigError::new(&full, format!("is not set: give it with {how}"))),
        }
    }

    /// The secret `zia.<key>`: `from_flags` (read from a file or standard input), or asked
    /// with echo off, or the file's; missing, an error saying to give it with `how`.
    #[allow(clippy::too_many_arguments)]
    fn secret(
        &mut self,
        file: &ConfigFile,
        key: &'static str,
        from_flags: Option<Secret>,
        prompt: &str,
        accept: impl Fn(&str) -> Result<Secret, String>,
        empty: &str,
        how: &str,
    ) -> Result<Secret, ConfigError> {
        let full = format!("zia.{key}");
        let current = file.current_secret("zia", key);
        match (from_flags, self.interactive) {
            (Some(given), _) => Ok(given),
            (None, true) => self
                .input
                .ask_secret(prompt, &full, current.as_ref(), accept, empty),
            (None, false) => current
                .ok_or_else(|| ConfigError::new(&full, format!("is not set: give it with {how}"))),
        }
    }
}

/// Asks for (or takes from the flags) how to reach ZIA, writes it into the file at `path`,
/// and checks it with a login and a quota read unless `--no-verify`. Exit 78 when a value
/// is missing or malformed (nothing is written); 69 when ZIA refused or could not be
/// reached (the configuration is saved all the same).
pub fn configure(path: &Path, args: &ConfigureZiaArgs) -> anyhow::Result<()> {
    let mut file = ConfigFile::open(path)?;
    let current_auth = file
        .string("zia", "auth")
        .and_then(|a| ZiaAuth::try_from(a).ok())
        .unwrap_or_default();
    let interactive = args.gives_no_value();
    let mut input = Input::stdin();
    let auth = match (args.auth, interactive) {
        (Some(auth), _) => auth,
        (None, true) => {
            input.ask_value(AUTH_PROMPT, "zia.auth", Some(current_auth.as_str()), |a| {
                ZiaAuth::try_from(a.to_string())
            })?
        }
        (None, false) => current_auth,
    };
    let mut answers = Answers {
        input: &mut input,
        interactive,
    };
    let url = answers.value(
        &file,
        "base_url",
        args.base_url.as_deref(),
        BASE_URL_PROMPT,
        |u| base_url(auth, u),
        "--base-url (a cloud name such as zscalertwo, or https://zsapi.<cloud>.net)",
    )?;
    file.set_string("zia", "base_url", &url)?;
    file.set_string("zia", "auth", auth.as_str())?;
    match auth {
        ZiaAuth::ApiKey => {
            let username = answers.value(
                &file,
                "username",
                args.username.as_deref(),
                USERNAME_PROMPT,
                non_empty("zia.username"),
                "--username",
            )?;
            let password = answers.secret(
                &file,
                "password",
                read_secret(
                    "zia.password",
                    args.password_file.as_deref(),
                    args.password_stdin,
                )?,
                PASSWORD_PROMPT,
                secret,
                "the password is empty",
                "--password-file F or --password-stdin",
            )?;
            let from_file = match args.api_key_file.as_deref() {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        ConfigError::new(
                            "zia.api_key",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    Some(api_key(&text).map_err(|p| ConfigError::new("zia.api_key", p))?)
                }
                None => None,
            };
            let key = answers.secret(
                &file,
                "api_key",
                from_file,
                API_KEY_PROMPT,
                api_key,
                "the API key is empty",
                "--api-key-file F",
            )?;
            file.set_string("zia", "username", &username)?;
            file.set_secret("zia", "password", &password)?;
            file.set_secret("zia", "api_key", &key)?;
            for key in [
                "token_url",
                "client_id",
                "client_secret",
                "client_secret_file",
                "private_key_file",
            ] {
                file.remove("zia", key);
            }
        }
        ZiaAuth::OneApi => {
            let token_url = answers.value(
                &file,
                "token_url",
                args.token_url.as_deref(),
                TOKEN_URL_PROMPT,
                |u| {
                    check_https("zia.token_url", u.trim())
                        .map(|_| u.trim().to_string())
                        .map_err(|e| e.problem)
                },
                "--token-url https://<vanity>.zslogin.net/oauth2/v1/token",
            )?;
            check_https("zia.token_url", &token_url)?;
            let client_id = answers.value(
                &file,
                "client_id",
                args.client_id.as_deref(),
                CLIENT_ID_PROMPT,
                non_empty("zia.client_id"),
                "--client-id",
            )?;
            file.set_string("zia", "token_url", &token_url)?;
            file.set_string("zia", "client_id", &client_id)?;
            if let Some(key_file) = &args.private_key_file {
                if !key_file.is_absolute() {
                    return Err(ConfigError::new(
                        "zia.private_key_file",
                        "is a relative path: write an absolute path",
                    )
                    .into());
                }
                file.set_string("zia", "private_key_file", &key_file.display().to_string())?;
                file.remove("zia", "client_secret");
                file.remove("zia", "client_secret_file");
            } else {
                let client_secret = match read_secret("zia.client_secret", args.client_secret_file.as_deref(), args.client_secret_stdin)? {
                    Some(s) => s,
                    None if interactive && file.string("zia", "private_key_file").is_none() => input.ask_secret(CLIENT_SECRET_PROMPT, "zia.client_secret", file.current_secret("zia", "client_secret").as_ref(), secret, "the client secret is empty")?,
                    None => match file.current_secret("zia", "client_secret") {
                        Some(s) => s,
                        None if file.string("zia", "private_key_file").is_some() => Secret::new(""),
                        None => return Err(ConfigError::new("zia.client_secret", "is not set: give it with --client-secret-file F, --client-secret-stdin or --private-key-file F").into()),
                    },
                };
                if !client_secret.expose().is_empty() {
                    file.set_secret("zia", "client_secret", &client_secret)?;
                    file.remove("zia", "private_key_file");
                }
            }
            for key in [
                "username",
                "password",
                "password_file",
                "api_key",
                "api_key_file",
            ] {
                file.remove("zia", key);
            }
        }
    }
    file.save()?;
    println!(
        "Saved the ZIA API ({}, {url}) in {}.",
        auth.as_str(),
        path.display()
    );
    crate::config::check_daemon_reads(&Settings::load(path)?)?;
    if args.no_verify {
        println!("Not checked (--no-verify). Run `sudo nss restart` to apply.");
        return Ok(());
    }
    let settings = Settings::load(path)?;
    let verdict = troubleshoot_zia::verify(&settings)?;
    println!("{}", verdict.text());
    println!("Run `sudo nss restart` to apply.");
    match verdict {
        ZiaVerdict::Ok { .. } => Ok(()),
        _ => Err(Unavailable("ZIA did not accept the login or could not be reached (the verdict above says why); the configuration is saved".to_string()).into()),
    }
}

/// Forgets the ZIA API: the category then stays on the appliance only.
pub fn disable(path: &Path) -> anyhow::Result<()> {
    let mut file = ConfigFile::open(path)?;
    let mut removed = false;
    for key in KEYS.iter().chain(["private_key_file"].iter()) {
        removed |= file.remove("zia", key);
    }
    if removed {
        file.save()?;
        println!(
            "Removed the ZIA API and its credentials from {}: the category stays on the appliance only (its content in ZIA is left as it is). Run `sudo nss restart` to apply.",
            path.display()
        );
    } else {
        println!("No ZIA API is configured in {}.", path.display());
    }
    Ok(())
}
