//! The HTTPS client every remote call goes through: MCAS, its blob store, the Entra token
//! endpoint, ZIA and its token endpoint, directly or through the configured proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Certificate, Client};

use crate::config::{ConfigError, ProxyTarget};

/// How long a TCP and TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the client: rustls, the system's trust anchors plus those in `ca_file` (the key
/// `ca_key` names it in errors), HTTPS only (a blob URL carries a signature that must not
/// cross the network in clear), certificate verification always on, and no redirect
/// followed (a redirected POST becomes a GET, and the token must not go to another host):
/// a 3xx is an error naming where it pointed ([`super::body::redirected`]).
///
/// With `proxy`, every connection but those to its `no_proxy` hosts is tunnelled through
/// it with CONNECT (TLS end to end: the proxy sees host names, never a header or a body).
/// Without, every connection is direct: `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` in the
/// environment are not read, so that the daemon under systemd and the same command in a
/// root shell take the same path.
pub fn client(
    ca_file: Option<&Path>,
    ca_key: &str,
    proxy: Option<&ProxyTarget>,
) -> Result<Client, ConfigError> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(Arc::new(SystemResolver))
        .user_agent(concat!("nss-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    builder = match proxy {
        Some(proxy) => builder.proxy(
            proxy
                .reqwest()
                .map_err(|problem| ConfigError::new("proxy.url", problem))?,
        ),
        None => builder.no_proxy(),
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError::new(ca_key, format!("cannot read {}: {e}", path.display()))
        })?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            ConfigError::new(
                ca_key,
                format!("{} is not a PEM bundle: {e}", path.display()),
            )
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(ca_key, format!("cannot set up HTTPS: {e}")))
}

/// A request that failed at the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFailure {
    /// The proxy answered 407: trying again with the same credentials cannot help.
    pub credentials_refused: bool,
    /// What happened, naming the key to fix.
    pub message: String,
}

/// How `error` (a failed request) failed at the proxy; `None` when it did not.
///
/// Told by the words of the tunnel's error: hyper-util, which opens the tunnel for
/// reqwest, does not export its error type.
pub fn proxy_failure(error: &(dyn std::error::Error + 'static)) -> Option<ProxyFailure> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if let Some(what) = text.strip_prefix("tunnel error: ") {
            let refused = what == "proxy authorization required";
            let message = match what {
                "proxy authorization required" => "the proxy refused the credentials (HTTP 407 Proxy Authentication Required): check proxy.username and proxy.password (or proxy.password_file)".to_string(),
                "failed to create underlying connection" => "cannot connect to the proxy: check proxy.url and that the proxy runs".to_string(),
                "unsuccessful" => "the proxy refused to open a tunnel to the host (CONNECT answered other than 200): check the proxy's rules for it, or list the host in proxy.no_proxy".to_string(),
                other => format!("the proxy's tunnel failed ({other}): check proxy.url"),
            };
            return Some(ProxyFailure {
                credentials_refused: refused,
                message,
            });
        }
        cause = error.source();
    }
    None
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
