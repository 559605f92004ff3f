//! The HTTPS client every remote call goes through: MCAS, its blob store, the Entra token
//! endpoint, ZIA and its token endpoint, directly or through the configured proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Client;

use crate::config::{ConfigError, ProxyTarget};

/// How long a TCP and TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the client: rustls with the settings of [`tls_config`] (the key `ca_key` names
/// `ca_file` in errors), HTTPS only (a blob URL carries a signature that must not cross
/// the network in clear), certificate verification always on, and no redirect followed (a
/// redirected POST becomes a GET, and the token must not go to another host): a 3xx is an
/// error naming where it pointed ([`super::body::redirected`]).
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
    let tls = tls_config(ca_file).map_err(|problem| ConfigError::new(ca_key, problem))?;
    let mut builder = Client::builder()
        .tls_backend_preconfigured(tls)
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
    builder
        .build()
        .map_err(|e| ConfigError::new(ca_key, format!("cannot set up HTTPS: {e}")))
}

/// The TLS settings of every connection the agent opens, its requests' and
/// [`crate::reach`]'s handshakes alike: rustls with ring (the one crypto stack linked),
/// the system's trust anchors plus the certificates of `ca_file`, and ALPN offering
/// HTTP/2, then HTTP/1.1 (the connection is preconfigured, so reqwest does not add it).
/// The error names the file and what is wrong with it.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // The system store is the operating system's, used as it is: what cannot be read is
    // logged and left out. An administrator's own file must be usable whole.
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::warn!(%error, "a part of the system's trust store cannot be read");
    }
    let (_, unusable) = roots.add_parsable_certificates(system.certs);
    if unusable > 0 {
        tracing::warn!(
            unusable,
            "the system's trust store holds certificates that cannot be trust anchors"
        );
    }
    if roots.is_empty() && ca_file.is_none() {
        tracing::warn!("no trust anchor: the system's trust store is empty (install ca-certificates) and no CA file is set");
    }
    if let Some(path) = ca_file {
        for cert in crate::config::ca_certificates(path)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "{} holds a certificate that cannot be a trust anchor: {e}",
                    path.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_take_the_ca_file_and_offer_both_protocols() {
        let dir = tempfile::tempdir().unwrap();
        mcas_emulator::ensure_certs(dir.path()).unwrap();
        tls_config(None).unwrap();
        let with_file = tls_config(Some(&dir.path().join(mcas_emulator::CA_FILE))).unwrap();
        assert_eq!(
            with_file.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(
            format!("{:?}", with_file.crypto_provider().cipher_suites),
            format!(
                "{:?}",
                rustls::crypto::ring::default_provider().cipher_suites
            ),
            "ring, the one crypto stack linked"
        );
    }

    #[test]
    fn a_ca_file_without_a_usable_certificate_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "this is not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (path, says) in [
            (&missing, "cannot read"),
            (&text, "holds no PEM certificate"),
            (&broken, "is not a PEM bundle"),
        ] {
            let problem = tls_config(Some(path)).unwrap_err();
            assert!(
                problem.contains(&path.display().to_string()) && problem.contains(says),
                "{problem}"
            );
        }
    }
}
