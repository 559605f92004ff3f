//! `nss troubleshoot mcas`: the documented check of the token and the unsanctioned-apps
//! list (`curl "https://<MCAS URL>/api/discovery_block_scripts/?format=120&type=banned"
//! -H "Authorization: Token <Token>"`), done and explained, with one verdict and the next
//! step; then the data source as MCAS lists it, and the blob host of an upload URL
//! (`troubleshoot_blob.rs`).

use super::Unavailable;
use crate::config::{McasTarget, Settings};
use crate::error_text::one_line;
use crate::mcas::client::ENTRA_FORBIDDEN;
use crate::mcas::error::TransportFailure;
use crate::mcas::{data_source, BlockScript, McasClient, SendError};

/// How many of the returned domains are shown.
const SHOWN: usize = 10;

/// What the block-script call found, in the words of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// URLs came back: the token works and apps are marked unsanctioned.
    Valid,
    /// The token works, but no app is marked unsanctioned.
    Empty,
    /// MCAS refused the token (401 or 403); the text says what to do.
    Refused(String),
    /// MCAS answered, but with something else than the list (404, 429, 5xx); the text
    /// says why and what to do.
    Failed(String),
    /// No answer: DNS, connection, TLS or timeout; the text names the cause.
    Unreachable(String),
}

/// The outcome of one block-script call.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// The HTTP status, when MCAS answered at all.
    pub status: Option<u16>,
    /// The domains of a 2xx answer, one a line, blank lines left out.
    pub urls: Vec<String>,
    pub verdict: Verdict,
}

/// Asks MCAS once for the unsanctioned-apps list with `target`'s token, and classifies the
/// answer. Shared by `nss troubleshoot mcas` and `nss configure-mcas`, so that both give
/// the same verdict for the same answer.
pub(crate) async fn check(client: &McasClient, target: &McasTarget) -> Check {
    let answer = match client.block_script_answer(BlockScript::Banned).await {
        Ok(answer) => answer,
        Err(error) => {
            let verdict = match error {
                SendError::Transport(error) => {
                    Verdict::Unreachable(transport_verdict(&target.domain, &error))
                }
                SendError::Entra(error) if error.is_transient() => {
                    Verdict::Unreachable(error.to_string())
                }
                SendError::Entra(error) => Verdict::Refused(error.to_string()),
            };
            return Check {
                status: None,
                urls: Vec::new(),
                verdict,
            };
        }
    };
    if let Err(error) = crate::mcas::body::check(crate::mcas::Step::BlockScript, &answer) {
        return Check {
            status: Some(answer.status),
            urls: Vec::new(),
            verdict: Verdict::Failed(one_line(&error)),
        };
    }
    let body = String::from_utf8_lossy(&answer.body);
    let mut urls = Vec::new();
    let verdict = match answer.status {
        200..=299 => {
            urls = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if urls.is_empty() {
                Verdict::Empty
            } else {
                Verdict::Valid
            }
        }
        403 if client.uses_entra() => Verdict::Refused(ENTRA_FORBIDDEN.to_string()),
        401 if client.uses_entra() => Verdict::Refused(format!(
            "MCAS refused the Entra access token (HTTP 401): check that mcas.tenant_id is the tenant of the MCAS portal {}",
            target.domain
        )),
        401 | 403 => Verdict::Refused(format!(
            "MCAS refused the API token (HTTP {}): a global administrator must generate a new API token in the MCAS portal (Settings > Security extensions > API tokens), then run `sudo nss configure-mcas` and `sudo nss restart`",
            answer.status
        )),
        404 => Verdict::Failed(format!(
            "MCAS answered 404 Not Found at {}: the domain is wrong; set it to the tenant's portal host, e.g. mycompany.us3.portal.cloudappsecurity.com (`sudo nss configure-mcas`)",
            target.domain
        )),
        429 => Verdict::Failed(
            "MCAS throttled the call (HTTP 429): the tenant's 30 API calls a minute are used up, by this appliance or others of the tenant; try again in a minute".to_string(),
        ),
        status => Verdict::Failed(format!(
            "MCAS answered HTTP {status}: {}; if it lasts, check the service status of Microsoft Defender for Cloud Apps",
            body.chars().take(200).collect::<String>().trim()
        )),
    };
    Check {
        status: Some(answer.status),
        urls,
        verdict,
    }
}

/// Runs the check and prints it. Exit 0 only when URLs came back, the data source exists
/// (or its list is not readable) and the blob host of an upload URL is reachable; 69 when
/// MCAS refused or could not be reached, lists no such data source, or the blob host
/// cannot be reached; 1 for an empty list.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let target = settings.mcas_target()?;
    let client = McasClient::from_settings(&target, &settings.upload, Default::default())?;
    println!("Checking the MCAS API token and the unsanctioned-apps list, as:");
    match client.entra_token_url() {
        Some(token_url) => println!(
            "  curl \"{}\" -H \"Authorization: Bearer <a token of {} from {token_url}>\"",
            client.block_script_url(BlockScript::Banned),
            target.credential.masked()
        ),
        None => println!(
            "  curl \"{}\" -H \"Authorization: Token {}\"",
            client.block_script_url(BlockScript::Banned),
            target.credential.masked()
        ),
    }
    println!("{}", crate::config::proxy_line(target.proxy.as_ref()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let check = runtime.block_on(check(&client, &target));
    let verdict = report_block_script(settings, &check);
    if matches!(
        verdict,
        Verdict::Refused(_) | Verdict::Failed(_) | Verdict::Unreachable(_)
    ) {
        return finish(verdict);
    }
    let data_source = runtime.block_on(data_source_check(&client, &target));
    let format = data_source::choose(&target.source, &data_source, None);
    let blob = runtime.block_on(super::troubleshoot_blob::check(
        &client,
        &target,
        &format.name,
    ));
    if let data_source::Verdict::Missing(_) = data_source {
        return Err(Unavailable(format!(
            "MCAS has no data source \"{}\" (the verdict above says what to do)",
            target.data_source
        ))
        .into());
    }
    if blob.is_err() {
        return Err(Unavailable(
            "the blob store of MCAS's upload URLs cannot be reached (the line above says what to allow)"
                .to_string(),
        )
        .into());
    }
    finish(verdict)
}

/// Checks the data source in MCAS's list and prints the verdict: shared with `nss
/// configure-mcas`.
pub(crate) async fn data_source_check(
    client: &McasClient,
    target: &McasTarget,
) -> data_source::Verdict {
    println!(
        "Checking the data source \"{}\" in MCAS's data sources list (GET /api/discovery/streams/)...",
        target.data_source
    );
    let verdict = data_source::check(client, &target.data_source, &target.source).await;
    for line in data_source::describe(&verdict, &target.data_source) {
        println!("{line}");
    }
    let format = data_source::choose(&target.source, &verdict, None);
    println!("Log format: {} ({}).", format.name, format.why);
    verdict
}

/// Prints the block-script check; returns its verdict.
fn report_block_script(settings: &Settings, check: &Check) -> Verdict {
    if let Some(status) = check.status {
        println!("HTTP status: {status}");
        if (200..=299).contains(&status) {
            println!("URLs returned: {}", check.urls.len());
            for line in check.urls.iter().take(SHOWN) {
                println!("  {line}");
            }
            if check.urls.len() > SHOWN {
                println!("  ... and {} more", check.urls.len() - SHOWN);
            }
        }
    }
    match &check.verdict {
        Verdict::Valid => {
            println!("Verdict: OK. The token is valid and MCAS lists {} unsanctioned domains; they are synced into the custom URL category \"{}\".", check.urls.len(), settings.sync.category);
        }
        Verdict::Empty => {
            println!("Verdict: the token is valid, but no app is marked unsanctioned, so there is nothing to sync.");
            println!("Next step: mark at least one app as Unsanctioned in the MCAS portal (Cloud Discovery > Discovered apps).");
        }
        Verdict::Refused(text) | Verdict::Failed(text) | Verdict::Unreachable(text) => {
            println!("Verdict: {text}");
        }
    }
    check.verdict.clone()
}

/// The exit of the command for the block-script verdict.
fn finish(verdict: Verdict) -> anyhow::Result<()> {
    match verdict {
        Verdict::Valid => Ok(()),
        Verdict::Empty => Err(anyhow::anyhow!("the unsanctioned-apps list is empty")),
        Verdict::Refused(_) | Verdict::Failed(_) | Verdict::Unreachable(_) => Err(Unavailable(
            "the MCAS check failed (the verdict above says why)".to_string(),
        )
        .into()),
    }
}

/// Why the request did not get an answer, and what to do, from the error's causes.
fn transport_verdict(domain: &str, error: &reqwest::Error) -> String {
    let cause = one_line(error);
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    if let Some(failure) = crate::https::proxy_failure(error) {
        return format!("{} ({cause})", failure.message);
    }
    match TransportFailure::of(error) {
        TransportFailure::Timeout => format!("no answer from {domain} in time ({cause}): check the appliance's route and firewall to MCAS on port 443"),
        TransportFailure::NameNotResolved => format!("the name {host} does not resolve ({cause}): check the domain's spelling and the appliance's DNS servers"),
        TransportFailure::Tls => format!("TLS to {domain} failed ({cause}): if a TLS-inspecting proxy is in the way, put its CA certificate in mcas.ca_file; otherwise check the appliance's clock and CA bundle"),
        TransportFailure::Refused => format!("{domain} refused the connection ({cause}): check the domain and port, and the firewall between the appliance and MCAS"),
        TransportFailure::Other => format!("cannot connect to {domain} ({cause}): check the appliance's network path to MCAS on port 443"),
    }
}
