//! `nss configure-mcas` and `nss disable-mcas`: enter or forget how the agent reaches the
//! MCAS tenant (an API token or an Entra application, and the domain), the way the NSS
//! appliance asks for them, editing the configuration file in place.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::prompt::Input;
use super::troubleshoot::{self, Verdict};
use super::{ConfigureMcasArgs, Unavailable};
use crate::config::edit::ConfigFile;
use crate::config::{
    check_certificate_file, check_domain, check_entra_id, check_token_shape, ConfigError,
    EntraSecret, McasAuth, Secret, Settings,
};
use crate::mcas::{data_source, McasClient};

const TOKEN_PROMPT: &str = "token (Authentication token for uploading to MCAS)";
const TENANT_PROMPT: &str = "tenant_id (Directory (tenant) ID or domain of the Entra application)";
const CLIENT_ID_PROMPT: &str = "client_id (Application (client) ID of the Entra application)";
const CLIENT_SECRET_PROMPT: &str = "client_secret (Client secret of the Entra application)";
const DOMAIN_PROMPT: &str = "domain (MCAS domain like mycompany.portal.cloudappsecurity.com)";
const RESTART_HINT: &str = "Run `sudo nss restart` to apply.";

/// The keys of `[mcas]` that say how the agent authenticates, which disable-mcas forgets.
const CREDENTIAL_KEYS: [&str; 9] = [
    "auth",
    "token",
    "token_file",
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_file",
    "certificate_file",
    "domain",
];

/// What the administrator entered: how the agent proves itself to MCAS.
enum Credential {
    Token(Secret),
    Entra {
        tenant_id: String,
        client_id: String,
        secret: EntraSecret,
    },
}

/// What the file holds now, shown in the prompts and kept when nothing new is given.
struct Current {
    auth: McasAuth,
    token: Option<Secret>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    entra_secret: Option<EntraSecret>,
    domain: Option<String>,
}

impl Current {
    fn read(file: &ConfigFile) -> Current {
        let entra_secret = match (
            file.current_secret("mcas", "client_secret"),
            file.string("mcas", "certificate_file"),
        ) {
            (Some(secret), _) => Some(EntraSecret::ClientSecret(secret)),
            (None, Some(path)) => Some(EntraSecret::Certificate(PathBuf::from(path))),
            (None, None) => None,
        };
        Current {
            auth: file
                .string("mcas", "auth")
                .and_then(|a| McasAuth::try_from(a).ok())
                .unwrap_or_default(),
            token: file.current_secret("mcas", "token"),
            tenant_id: file.string("mcas", "tenant_id"),
            client_id: file.string("mcas", "client_id"),
            entra_secret,
            domain: file.string("mcas", "domain"),
        }
    }
}

/// Asks for (or takes from the flags) the credential and domain, writes them into the file
/// at `path`, and checks them against MCAS unless `--no-verify`.
///
/// Exit codes: 0 when saved and the token is valid (also when no app is marked
/// unsanctioned yet); 78 when a value is missing or malformed (nothing is written); 69 when
/// MCAS refused the token or could not be reached (the configuration is saved all the same).
pub fn configure(path: &Path, args: &ConfigureMcasArgs) -> anyhow::Result<()> {
    let mut file = ConfigFile::open(path)?;
    let current = Current::read(&file);
    // `--auth` alone still asks: `--auth entra` is how the Entra application is entered
    // at prompts, since the guide's first prompt is the token's.
    let interactive = args.token_file.is_none()
        && !args.token_stdin
        && args.tenant_id.is_none()
        && args.client_id.is_none()
        && args.client_secret_file.is_none()
        && !args.client_secret_stdin
        && args.certificate_file.is_none()
        && args.domain.is_none()
        && args.data_source.is_none();
    let (credential, domain) = if interactive {
        let mut input = Input::stdin();
        let credential = match args.auth {
            None => ask_token_or_keep_entra(&mut input, &current)?,
            Some(McasAuth::Token) => {
                Credential::Token(ask_token(&mut input, current.token.as_ref())?)
            }
            Some(McasAuth::Entra) => ask_entra(&mut input, &current)?,
        };
        let domain = ask_domain(&mut input, current.domain.as_deref())?;
        (credential, domain)
    } else {
        let credential = credential_from_flags(args, current.auth, &current)?;
        let given = args.domain.clone().or(current.domain).ok_or_else(|| {
            ConfigError::new(
                "mcas.domain",
                "is not set: give it with --domain, e.g. --domain mycompany.us3.portal.cloudappsecurity.com",
            )
        })?;
        let (domain, note) =
            normalize_domain(&given).map_err(|p| ConfigError::new("mcas.domain", p))?;
        if let Some(note) = note {
            println!("{note}");
        }
        (credential, domain)
    };
    if let Some(data_source) = &args.data_source {
        if data_source.trim().is_empty() {
            return Err(ConfigError::new(
                "mcas.data_source",
                "is empty: give the data source's name in the MCAS portal, e.g. --data-source NSS",
            )
            .into());
        }
        file.set_string("mcas", "data_source", data_source.trim())?;
    }

    file.set_string("mcas", "domain", &domain)?;
    let saved = store(&mut file, &credential)?;
    file.save()?;
    println!("Saved {saved} and domain {domain} in {}.", path.display());
    crate::config::check_daemon_reads(&Settings::load(path)?)?;

    let outcome = if args.no_verify {
        let what = match credential {
            Credential::Token(_) => "The token was",
            Credential::Entra { .. } => "The credentials were",
        };
        println!("{what} not checked against MCAS (--no-verify).");
        Ok(())
    } else {
        verify(path)
    };
    println!("{RESTART_HINT}");
    outcome
}

/// Writes the credential into the file; returns what was saved, secrets masked.
fn store(file: &mut ConfigFile, credential: &Credential) -> Result<String, ConfigError> {
    match credential {
        Credential::Token(token) => {
            // A file without `auth` uses a token already: the key is not added.
            if file.string("mcas", "auth").is_some() {
                file.set_string("mcas", "auth", McasAuth::Token.as_str())?;
            }
            file.set_secret("mcas", "token", token)?;
            Ok(format!("the MCAS token ({})", token.masked()))
        }
        Credential::Entra {
            tenant_id,
            client_id,
            secret,
        } => {
            file.set_string("mcas", "auth", McasAuth::Entra.as_str())?;
            file.set_string("mcas", "tenant_id", tenant_id)?;
            file.set_string("mcas", "client_id", client_id)?;
            // Exactly one of the secret's keys may be set.
            let shown = match secret {
                EntraSecret::ClientSecret(secret) => {
                    file.remove("mcas", "certificate_file");
                    file.set_secret("mcas", "client_secret", secret)?;
                    format!("client secret {}", secret.masked())
                }
                EntraSecret::Certificate(path) => {
                    file.remove("mcas", "client_secret");
                    file.remove("mcas", "client_secret_file");
                    file.set_string("mcas", "certificate_file", &path.display().to_string())?;
                    format!("certificate {}", path.display())
                }
            };
            Ok(format!(
                "the MCAS Entra application {client_id} (tenant {tenant_id}, {shown})"
            ))
        }
    }
}

/// The credential the flags give, completed from the file.
fn credential_from_flags(
    args: &ConfigureMcasArgs,
    current_auth: McasAuth,
    current: &Current,
) -> Result<Credential, ConfigError> {
    let entra_flags = args.tenant_id.is_some()
        || args.client_id.is_some()
        || args.client_secret_file.is_some()
        || args.client_secret_stdin
        || args.certificate_file.is_some();
    let token_flags = args.token_file.is_some() || args.token_stdin;
    let auth = match args.auth {
        Some(auth) => auth,
        None if entra_flags => McasAuth::Entra,
        None if token_flags => McasAuth::Token,
        None => current_auth,
    };
    match auth {
        McasAuth::Token if entra_flags => Err(ConfigError::new(
            "mcas.auth",
            "is \"token\", but Entra flags were given: add --auth entra, or leave out --tenant-id, --client-id, --client-secret-* and --certificate-file",
        )),
        McasAuth::Token => token_from_flags(args, current.token.clone()).map(Credential::Token),
        McasAuth::Entra if token_flags => Err(ConfigError::new(
            "mcas.auth",
            "is \"entra\", but a token was given: use --client-secret-file, --client-secret-stdin or --certificate-file",
        )),
        McasAuth::Entra => entra_from_flags(args, current),
    }
}

fn token_from_flags(
    args: &ConfigureMcasArgs,
    current: Option<Secret>,
) -> Result<Secret, ConfigError> {
    let token = match (&args.token_file, args.token_stdin) {
        (Some(token_file), _) => Some(Secret::new(
            read_file("mcas.token", "--token-file", token_file)?.trim(),
        )),
        (None, true) => Some(Secret::new(read_stdin("mcas.token")?.trim())),
        (None, false) => current,
    };
    let token = token.ok_or_else(|| {
        ConfigError::new(
            "mcas.token",
            "is not set: give it with --token-file F or --token-stdin",
        )
    })?;
    check_token_shape(token.expose()).map_err(|p| ConfigError::new("mcas.token", p))?;
    Ok(token)
}

fn entra_from_flags(
    args: &ConfigureMcasArgs,
    current: &Current,
) -> Result<Credential, ConfigError> {
    let id = |key: &str, flag: &str, given: &Option<String>, current: &Option<String>| {
        let value = given
            .as_deref()
            .map(str::trim)
            .map(str::to_string)
            .or_else(|| current.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConfigError::new(key, format!("is not set: give it with {flag}")))?;
        check_entra_id(&value).map_err(|p| ConfigError::new(key, p))?;
        Ok::<String, ConfigError>(value)
    };
    let tenant_id = id(
        "mcas.tenant_id",
        "--tenant-id",
        &args.tenant_id,
        &current.tenant_id,
    )?;
    let client_id = id(
        "mcas.client_id",
        "--client-id",
        &args.client_id,
        &current.client_id,
    )?;
    let secret = if let Some(file) = &args.client_secret_file {
        Some(EntraSecret::ClientSecret(Secret::new(without_line_end(
            read_file("mcas.client_secret", "--client-secret-file", file)?,
        ))))
    } else if args.client_secret_stdin {
        Some(EntraSecret::ClientSecret(Secret::new(without_line_end(
            read_stdin("mcas.client_secret")?,
        ))))
    } else if let Some(file) = &args.certificate_file {
        let path = std::path::absolute(file).map_err(|e| {
            ConfigError::new("mcas.certificate_file", format!("{}: {e}", file.display()))
        })?;
        check_certificate_file(&path).map_err(|p| ConfigError::new("mcas.certificate_file", p))?;
        Some(EntraSecret::Certificate(path))
    } else {
        current.entra_secret.clone()
    };
    let secret = secret.ok_or_else(|| {
        ConfigError::new(
            "mcas.client_secret",
            "is not set: give it with --client-secret-file F, --client-secret-stdin or --certificate-file F",
        )
    })?;
    if let EntraSecret::ClientSecret(secret) = &secret {
        if secret.expose().trim().is_empty() {
            return Err(ConfigError::new(
                "mcas.client_secret",
                "is empty: give the client secret's value from the app registration",
            ));
        }
    }
    Ok(Credential::Entra {
        tenant_id,
        client_id,
        secret,
    })
}

fn read_file(key: &str, flag: &str, path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {flag} {}: {e}", path.display())))
}

fn read_stdin(key: &str) -> Result<String, ConfigError> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| ConfigError::new(key, format!("cannot read standard input: {e}")))?;
    Ok(text)
}

/// The secret without the line end `echo` or an editor leaves after it.
fn without_line_end(text: String) -> String {
    text.trim_end_matches(['\n', '\r']).to_string()
}

/// Removes every credential key and the domain from the file at `path`, leaving every
/// other key and comment as it is.
pub fn disable(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        println!(
            "{} does not exist: MCAS is not configured, nothing to forget.",
            path.display()
        );
        return Ok(());
    }
    let mut file = ConfigFile::open(path)?;
    // Files the keys point at may be shared with other tools or managed elsewhere: they
    // are not ours to delete, but the administrator should know the secret is still there.
    let kept: Vec<(&str, String)> = [
        ("token file", "token_file"),
        ("client secret file", "client_secret_file"),
        ("certificate file", "certificate_file"),
    ]
    .into_iter()
    .filter_map(|(what, key)| Some((what, file.string("mcas", key)?)))
    .collect();
    let mut removed = false;
    for key in CREDENTIAL_KEYS {
        removed |= file.remove("mcas", key);
    }
    if !removed {
        println!(
            "{} holds no MCAS credentials or domain: nothing to forget.",
            path.display()
        );
        return Ok(());
    }
    file.save()?;
    println!(
        "Removed the MCAS credentials and domain from {}; the agent will not upload until `sudo nss configure-mcas` is run again.",
        path.display()
    );
    for (what, path) in kept {
        println!("The {what} {path} was left in place: delete it if nothing else uses it.");
    }
    println!("{RESTART_HINT}");
    Ok(())
}

/// Checks the saved configuration's credentials with one block-script call and prints the
/// verdict. Refused and unreachable verdicts are errors (exit 69) so that scripts notice.
fn verify(path: &Path) -> anyhow::Result<()> {
    // Loaded from the saved file, so the check uses exactly what the daemon will use
    // (mcas.ca_file, upload.timeout, environment overrides).
    let settings = Settings::load(path)?;
    let target = settings.mcas_target()?;
    let client = McasClient::from_settings(&target, &settings.upload, Default::default())?;
    println!("Checking the token against MCAS at {}...", target.domain);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let check = runtime.block_on(troubleshoot::check(&client, &target));
    let saved_anyway = "The configuration is saved all the same, so that the agent starts uploading once the cause is fixed; `sudo nss troubleshoot mcas` checks again.";
    match check.verdict {
        Verdict::Valid | Verdict::Empty => {
            if check.verdict == Verdict::Valid {
                println!(
                    "Verdict: valid. MCAS accepted the token and lists {} unsanctioned domains.",
                    check.urls.len()
                );
            } else {
                println!("Verdict: valid, but no app is marked unsanctioned: mark at least one app as Unsanctioned in the MCAS portal (Cloud Discovery > Discovered apps) so that the URL category sync has something to block.");
            }
            let data_source = runtime.block_on(troubleshoot::data_source_check(&client, &target));
            if let data_source::Verdict::Missing(_) = data_source {
                println!("{saved_anyway}");
                return Err(Unavailable(format!(
                    "MCAS has no data source \"{}\" (the verdict above says what to do)",
                    target.data_source
                ))
                .into());
            }
            Ok(())
        }
        Verdict::Refused(text) => {
            println!("Verdict: refused. {text}");
            println!("{saved_anyway}");
            Err(Unavailable("MCAS refused the token (the verdict above says why)".into()).into())
        }
        // MCAS answered but could not confirm the token (wrong host, throttled, server
        // error): for the administrator this is the same as not reaching it.
        Verdict::Failed(text) | Verdict::Unreachable(text) => {
            println!("Verdict: unreachable: {text}");
            println!("{saved_anyway}");
            Err(
                Unavailable("MCAS could not check the token (the verdict above says why)".into())
                    .into(),
            )
        }
    }
}

/// Strips a leading `https://` or `http://` and trailing `/` that people paste along with
/// the host, then checks what is left. Returns the domain and a note when something was
/// stripped.
fn normalize_domain(input: &str) -> Result<(String, Option<String>), String> {
    let trimmed = input.trim();
    let mut domain = trimmed;
    let mut stripped = Vec::new();
    for scheme in ["https://", "http://"] {
        if domain.len() >= scheme.len() && domain[..scheme.len()].eq_ignore_ascii_case(scheme) {
            domain = &domain[scheme.len()..];
            stripped.push(format!("the leading \"{}\"", &trimmed[..scheme.len()]));
            break;
        }
    }
    if domain.ends_with('/') {
        domain = domain.trim_end_matches('/');
        stripped.push("the trailing \"/\"".to_string());
    }
    check_domain(domain)?;
    let note = (!stripped.is_empty()).then(|| {
        format!(
            "Note: removed {} (MCAS is always reached over HTTPS): the domain is {domain}",
            stripped.join(" and ")
        )
    });
    Ok((domain.to_string(), note))
}

/// The guide's first prompt: the token, with the echo off. When the file holds an Entra
/// application and Enter is pressed at the empty prompt, the application is kept (it is
/// changed with `--auth entra`); a token typed here replaces it.
fn ask_token_or_keep_entra(
    input: &mut Input,
    current: &Current,
) -> Result<Credential, ConfigError> {
    if current.auth != McasAuth::Entra {
        return ask_token(input, current.token.as_ref()).map(Credential::Token);
    }
    let kept = || -> Option<Credential> {
        Some(Credential::Entra {
            tenant_id: current.tenant_id.clone()?,
            client_id: current.client_id.clone()?,
            secret: current.entra_secret.clone()?,
        })
    };
    let Some(entra) = kept() else {
        return ask_token(input, None).map(Credential::Token);
    };
    match input.ask(&format!("{TOKEN_PROMPT} []: "), false)? {
        Some(answer) if !answer.trim().is_empty() => {
            let answer = answer.trim();
            match check_token_shape(answer) {
                Ok(()) => Ok(Credential::Token(Secret::new(answer))),
                Err(problem) => {
                    println!("{problem}");
                    ask_token(input, None).map(Credential::Token)
                }
            }
        }
        _ => {
            if let Credential::Entra { client_id, .. } = &entra {
                println!("Keeping the Entra application {client_id} (`sudo nss configure-mcas --auth entra` changes it).");
            }
            Ok(entra)
        }
    }
}

/// Asks for the token until a well-shaped one is entered or Enter keeps the current one.
fn ask_token(input: &mut Input, current: Option<&Secret>) -> Result<Secret, ConfigError> {
    input.ask_secret(
        TOKEN_PROMPT,
        "mcas.token",
        current,
        |answer| check_token_shape(answer).map(|()| Secret::new(answer)),
        "The token is empty: paste the API token generated in the MCAS portal (for an Entra application instead: `sudo nss configure-mcas --auth entra`).",
    )
}

/// Asks for the Entra application's tenant, client id and secret.
fn ask_entra(input: &mut Input, current: &Current) -> Result<Credential, ConfigError> {
    let id = |answer: &str| check_entra_id(answer).map(|()| answer.to_string());
    let tenant_id = input.ask_value(
        TENANT_PROMPT,
        "mcas.tenant_id",
        current.tenant_id.as_deref(),
        id,
    )?;
    let client_id = input.ask_value(
        CLIENT_ID_PROMPT,
        "mcas.client_id",
        current.client_id.as_deref(),
        id,
    )?;
    let secret = match &current.entra_secret {
        // A certificate is kept on Enter; typing a secret replaces it.
        Some(EntraSecret::Certificate(path)) => {
            let prompt = format!("{CLIENT_SECRET_PROMPT} [certificate {}]: ", path.display());
            match input.ask(&prompt, false)?.map(|a| a.trim().to_string()) {
                Some(answer) if !answer.is_empty() => {
                    EntraSecret::ClientSecret(Secret::new(answer))
                }
                _ => EntraSecret::Certificate(path.clone()),
            }
        }
        Some(EntraSecret::ClientSecret(secret)) => {
            EntraSecret::ClientSecret(ask_client_secret(input, Some(secret))?)
        }
        None => EntraSecret::ClientSecret(ask_client_secret(input, None)?),
    };
    Ok(Credential::Entra {
        tenant_id,
        client_id,
        secret,
    })
}

fn ask_client_secret(input: &mut Input, current: Option<&Secret>) -> Result<Secret, ConfigError> {
    input.ask_secret(
        CLIENT_SECRET_PROMPT,
        "mcas.client_secret",
        current,
        |answer| Ok(Secret::new(answer)),
        "The client secret is empty: paste the secret's value from the app registration (Certificates & secrets).",
    )
}

/// Asks for the domain until a valid one is entered or Enter keeps a valid current one.
fn ask_domain(input: &mut Input, current: Option<&str>) -> Result<String, ConfigError> {
    input.ask_value(DOMAIN_PROMPT, "mcas.domain", current, |answer| {
        let (domain, note) = normalize_domain(answer)?;
        if let Some(note) = note {
            println!("{note}");
        }
        Ok(domain)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_scheme_and_slash_with_a_note() {
        let (domain, note) =
            normalize_domain("https://tenant.us3.portal.cloudappsecurity.com/").unwrap();
        assert_eq!(domain, "tenant.us3.portal.cloudappsecurity.com");
        assert!(note.unwrap().contains("https://"));
        let (domain, note) = normalize_domain("tenant.portal.cloudappsecurity.com").unwrap();
        assert_eq!(domain, "tenant.portal.cloudappsecurity.com");
        assert!(note.is_none());
        assert!(normalize_domain("https://x/y").is_err());
        assert!(normalize_domain("x .com").is_err());
        assert!(normalize_domain("").is_err());
        assert!(normalize_domain("https://").is_err());
    }
}
