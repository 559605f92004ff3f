//! The HTTPS client every MCAS and blob request goes through.

use std::path::Path;
use std::time::Duration;

use reqwest::{Certificate, Client};

/// How long a TCP and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the client: rustls, the system's trust anchors plus those in `ca_file`, HTTPS
/// only (a blob URL carries a signature that must not cross the network in clear), and
/// certificate verification always on.
pub fn client(ca_file: Option<&Path>) -> Result<Client, String> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("nss-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} is not a PEM bundle: {e}", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {e}"))
}
