//! The HTTPS client every remote call goes through: MCAS, its blob store, the Entra token
//! endpoint, ZIA and its token endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Certificate, Client};

/// How long a TCP and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the client: rustls, the system's trust anchors plus those in `ca_file`, HTTPS
/// only (a blob URL carries a signature that must not cross the network in clear),
/// certificate verification always on, and no redirect followed (a redirected POST becomes
/// a GET, and the token must not go to another host): a 3xx is an error naming where it
/// pointed ([`super::body::redirected`]).
pub fn client(ca_file: Option<&Path>) -> Result<Client, String> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(Arc::new(SystemResolver))
        .user_agent(concat!("nss-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
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

/// A host name the system's resolver could not turn into an address: among an error's
/// causes, it tells "the name does not resolve" apart from other connection failures by
/// its type, whatever words the resolver used.
#[derive(Debug, thiserror::Error)]
#[error("the name {host} does not resolve: {source}")]
pub struct NameNotResolved {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

/// The system's resolver (getaddrinfo, as reqwest's default), answering with
/// [`NameNotResolved`] when it fails.
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|addrs| addrs.collect::<Vec<SocketAddr>>());
            match found {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(source) => Err(Box::new(NameNotResolved { host, source }) as _),
            }
        })
    }
}
