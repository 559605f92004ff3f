//! `nss troubleshoot mcas`: the documented check of the token and the unsanctioned-apps
//! list (`curl "https://<MCAS URL>/api/discovery_block_scripts/?format=120&type=banned"
//! -H "Authorization: Token <Token>"`), done and explained, with one verdict and the next
//! step.

use super::Unavailable;
use crate::config::Settings;
use crate::upload::error::describe;
use crate::upload::McasClient;

/// How many of the returned domains are shown.
const SHOWN: usize = 10;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// URLs came back: the token works and apps are marked unsanctioned.
    Ok { urls: usize },
    /// The token works, but no app is marked unsanctioned.
    Empty,
    /// MCAS refused or could not be reached; the text says why and what to do.
    Failed(String),
}

/// Runs the check and prints it. Exit 0 only when URLs came back; 69 when MCAS refused or
/// could not be reached; 1 for an empty list.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let target = settings.mcas_target()?;
    let client = McasClient::from_settings(&target, &settings.upload, Default::default())?;
    println!("Checking the MCAS API token and the unsanctioned-apps list, as:");
    println!(
        "  curl \"{}\" -H \"Authorization: Token {}\"",
        client.block_script_url("banned"),
        target.token.masked()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(client.block_script_answer("banned"));
    let verdict = match answer {
        Ok(answer) => {
            let body = String::from_utf8_lossy(&answer.body);
            let lines: Vec<&str> = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            println!("HTTP status: {}", answer.status);
            match answer.status {
                200..=299 => {
                    println!("URLs returned: {}", lines.len());
                    for line in lines.iter().take(SHOWN) {
                        println!("  {line}");
                    }
                    if lines.len() > SHOWN {
                        println!("  ... and {} more", lines.len() - SHOWN);
                    }
                    if lines.is_empty() {
                        Verdict::Empty
                    } else {
                        Verdict::Ok { urls: lines.len() }
                    }
                }
                401 | 403 => Verdict::Failed(format!(
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
            }
        }
        Err(error) => Verdict::Failed(transport_verdict(&target.domain, &error)),
    };
    match verdict {
        Verdict::Ok { urls } => {
            println!("Verdict: OK. The token is valid and MCAS lists {urls} unsanctioned domains; they are synced into the custom URL category \"{}\".", settings.sync.category);
            Ok(())
        }
        Verdict::Empty => {
            println!("Verdict: the token is valid, but no app is marked unsanctioned, so there is nothing to sync.");
            println!("Next step: mark at least one app as Unsanctioned in the MCAS portal (Cloud Discovery > Discovered apps).");
            Err(anyhow::anyhow!("the unsanctioned-apps list is empty"))
        }
        Verdict::Failed(text) => {
            println!("Verdict: {text}");
            Err(
                Unavailable("the MCAS check failed (the verdict above says why)".to_string())
                    .into(),
            )
        }
    }
}

/// Why the request did not get an answer, and what to do, from the error's causes.
fn transport_verdict(domain: &str, error: &reqwest::Error) -> String {
    let cause = describe(error);
    let lower = cause.to_lowercase();
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    if error.is_timeout() {
        format!("no answer from {domain} in time ({cause}): check the appliance's route and firewall to MCAS on port 443 (`nss test-firewall`)")
    } else if lower.contains("dns")
        || lower.contains("lookup")
        || lower.contains("name or service not known")
    {
        format!("the name {host} does not resolve ({cause}): check the domain's spelling and the appliance's DNS servers")
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!("TLS to {domain} failed ({cause}): if a TLS-inspecting proxy is in the way, put its CA certificate in mcas.ca_file; otherwise check the appliance's clock and CA bundle")
    } else if lower.contains("refused") {
        format!("{domain} refused the connection ({cause}): check the domain and port, and the firewall between the appliance and MCAS")
    } else {
        format!("cannot connect to {domain} ({cause}): check the appliance's network path to MCAS on port 443")
    }
}
