//! `nss troubleshoot zia`: the ZIA login, quota and category check, explained, with one
//! verdict and the next step; shared with `nss configure-zia`'s verification.

use super::Unavailable;
use crate::config::{ConfigError, Settings, ZiaLogin, ZiaTarget};
use crate::error_text::one_line;
use crate::zia::{CheckReport, ZiaClient, ZiaError};

/// What the check found, in the words of the verdict.
#[derive(Debug)]
pub(crate) enum ZiaVerdict {
    /// Logged in and read the quota (and the category, if it exists yet).
    Ok {
        report: CheckReport,
        category: String,
    },
    /// ZIA refused the credentials or the permissions; the text says what to do.
    Refused(String),
    /// No usable answer (network, TLS, 5xx, read-only mode); the text names the cause.
    Unreachable(String),
}

impl ZiaVerdict {
    /// The verdict line for a person.
    pub(crate) fn text(&self) -> String {
        match self {
            ZiaVerdict::Ok { report, category } => {
                let found = match &report.category {
                    // The name as ZIA holds it: it may differ from ours in case.
                    Some(c) => format!(
                        "the category \"{}\" is {} with {} URLs",
                        c.name, c.id, c.url_count
                    ),
                    None => format!(
                        "the category \"{category}\" does not exist yet: the first push after a successful sync creates it"
                    ),
                };
                let twice = match &report.defender_category {
                    Some(other) => format!(
                        "\nWarning: {}.",
                        crate::category_sync::publish::defender_note(
                            &other.name,
                            &other.id,
                            other.url_count
                        )
                    ),
                    None => String::new(),
                };
                format!(
                    "Verdict: OK. ZIA accepted the login; custom URL quota: {} provisioned, {} remaining; {found}; activation state {}.{twice}",
                    report.urls_provisioned,
                    report.quota_remaining,
                    report.activation.as_str()
                )
            }
            ZiaVerdict::Refused(text) | ZiaVerdict::Unreachable(text) => format!("Verdict: {text}"),
        }
    }
}

/// The verdict for an error of the check.
fn verdict(target: &ZiaTarget, error: &ZiaError) -> ZiaVerdict {
    let cause = one_line(error);
    let who = match &target.login {
        ZiaLogin::ApiKey { username, .. } => format!("the API admin {username}"),
        ZiaLogin::OneApi { client_id, .. } => format!("the OneAPI client {client_id}"),
    };
    match error {
        ZiaError::LoginRefused { .. } => ZiaVerdict::Refused(format!(
            "ZIA refused the login of {who} ({cause}): check the username, password and API key (Administration > Cloud Service API Security), or the OneAPI client's id and secret in ZIdentity; then `sudo nss configure-zia`"
        )),
        ZiaError::Unauthorized { .. } | ZiaError::Rejected { status: 403, .. } => ZiaVerdict::Refused(format!(
            "ZIA refused {who} the URL categories ({cause}): give it a role with URL category and activation permissions"
        )),
        ZiaError::Rejected { .. } | ZiaError::BadAnswer { .. } | ZiaError::Oversized { .. } => {
            ZiaVerdict::Refused(format!("ZIA refused the check ({cause}): check zia.base_url ({})", target.base_url))
        }
        _ => ZiaVerdict::Unreachable(format!(
            "cannot check ZIA at {} ({cause}): check the appliance's network path to ZIA on port 443, and zia.ca_file for a TLS-inspecting proxy",
            target.base_url
        )),
    }
}

/// Logs in, reads the quota and looks for the category: one verdict. A configuration
/// without `[zia]` is a configuration error naming the key.
pub(crate) fn verify(settings: &Settings) -> anyhow::Result<ZiaVerdict> {
    let target = settings.zia_target()?.ok_or_else(|| {
        ConfigError::new(
            "zia.base_url",
            "is not set: run `sudo nss configure-zia` to say how the agent reaches the tenant's ZIA",
        )
    })?;
    let client = ZiaClient::new(&target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let category = settings.sync.category.clone();
    Ok(match runtime.block_on(client.check(&category)) {
        Ok(report) => ZiaVerdict::Ok { report, category },
        Err(error) => verdict(&target, &error),
    })
}

/// Runs the check and prints it: exit 0 when ZIA accepted the login, 69 otherwise.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    if let Some(target) = settings.zia_target()? {
        let login = match &target.login {
            ZiaLogin::ApiKey { username, .. } => format!("API key login as {username}"),
            ZiaLogin::OneApi {
                token_url,
                client_id,
                ..
            } => {
                format!("OneAPI client {client_id} at {token_url}")
            }
        };
        println!("Checking the ZIA API at {} ({login}):", target.base_url);
        println!("{}", crate::config::proxy_line(target.proxy.as_ref()));
        println!("  login, GET /urlCategories/urlQuota, GET /urlCategories?customOnly=true, GET /status, logout");
    }
    let verdict = verify(settings)?;
    println!("{}", verdict.text());
    match verdict {
        ZiaVerdict::Ok { .. } => Ok(()),
        _ => {
            Err(Unavailable("the ZIA check failed (the verdict above says why)".to_string()).into())
        }
    }
}
