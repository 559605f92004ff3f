//! `nss troubleshoot mcas`, the blob store: MCAS's upload URLs point at a second host
//! (`*.blob.core.windows.net`, `*.blob.core.usgovcloudapi.net` in government clouds)
//! that the firewall must let through as well; "the portal answers but uploads fail" is
//! the classic symptom of a blocked one. The check asks upload_url for a URL (one API
//! call, a read: nothing is uploaded and no done_upload follows, so MCAS makes no report
//! of it), then connects to the URL's host and completes a TLS handshake, through the
//! proxy like every upload, and sends nothing.

use crate::config::McasTarget;
use crate::error_text::one_line;
use crate::mcas::McasClient;
use crate::reach::{self, Route};

/// The file name given to upload_url: nothing is ever put under it.
const FILENAME: &str = "nss-troubleshoot-blob-host-check.gz";

/// The blob domains MCAS's network requirements list, for the firewall.
const BLOB_DOMAINS: [&str; 2] = ["blob.core.windows.net", "blob.core.usgovcloudapi.net"];

/// What to allow in the firewall for `host`: its blob domain as a wildcard, or the host
/// itself when it is in neither.
pub(crate) fn firewall_name(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    BLOB_DOMAINS
        .iter()
        .find(|domain| lower.ends_with(&format!(".{domain}")))
        .map_or_else(|| host.to_string(), |domain| format!("*.{domain}"))
}

/// Checks the blob host of an upload URL of log format `source` and prints the verdict;
/// `Err` with the text of the failure when the host cannot be reached.
pub(crate) async fn check(
    client: &McasClient,
    target: &McasTarget,
    source: &str,
) -> Result<(), String> {
    println!("Checking the blob store an upload URL points at: upload_url (one API call; nothing is uploaded, no done_upload), then a TCP connection and TLS handshake to its host, no data sent...");
    let upload = match client.upload_url(FILENAME, source).await {
        Ok(upload) => upload,
        Err(error) => {
            let text = format!(
                "upload_url failed, so no upload can work: {}",
                one_line(&error)
            );
            println!("Blob host: FAIL: {text}");
            return Err(text);
        }
    };
    // The URL carries a signature: only its host is shown.
    let url =
        url::Url::parse(&upload.url).map_err(|e| format!("the upload URL is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let shown = if port == 443 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    println!(
        "Blob host: {shown} (storage provider {:?})",
        upload.provider
    );
    let answer = reach::tls_handshake(
        &host,
        port,
        target.ca_file.as_deref(),
        "mcas.ca_file",
        target.proxy.as_ref(),
        crate::https::CONNECT_TIMEOUT,
    )
    .await;
    match answer {
        Ok(route) => {
            let how = match route {
                Route::Direct => "direct".to_string(),
                Route::Proxy(url) => format!("through the proxy {url}"),
            };
            println!(
                "Blob host: OK, {shown} is reachable (TCP connection and TLS handshake, {how})."
            );
            Ok(())
        }
        Err(why) => {
            let allow = firewall_name(&host);
            let fix = match &why {
                reach::Unreachable::Proxy(_) => format!(
                    "the proxy must let the appliance reach {allow} on port {port}"
                ),
                reach::Unreachable::Tls(_) => format!(
                    "if a TLS-inspecting proxy is in the way, put its CA certificate in mcas.ca_file; otherwise allow {allow} on port {port} untouched"
                ),
                _ => format!(
                    "allow {allow} on port {port} in the firewall between the appliance and the internet: MCAS's portal answers, but every upload fails at the blob store"
                ),
            };
            let text = format!("{why}; {fix}");
            println!("Blob host: FAIL: {text}");
            Err(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_names() {
        assert_eq!(
            firewall_name("mcasprod7.blob.core.windows.net"),
            "*.blob.core.windows.net"
        );
        assert_eq!(
            firewall_name("GovAcct.Blob.Core.UsGovCloudApi.Net"),
            "*.blob.core.usgovcloudapi.net"
        );
        assert_eq!(
            firewall_name("bucket.s3.amazonaws.com"),
            "bucket.s3.amazonaws.com"
        );
        assert_eq!(firewall_name("127.0.0.1"), "127.0.0.1");
    }
}
