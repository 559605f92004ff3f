//! The outbound proxy (`[proxy]`), once checked: an HTTP proxy that every HTTPS
//! connection of the agent goes through with CONNECT (MCAS, its blob store, the Entra
//! token endpoint, ZIA and its token endpoint), its optional Basic credentials, and the
//! hosts reached directly.
//!
//! `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` in the environment are never used: a daemon
//! started by systemd and the same command typed in a shell must take the same path.

use super::{ConfigError, Secret, Settings};

/// The checked `[proxy]` settings.
#[derive(Debug, Clone)]
pub struct ProxyTarget {
    /// `http://host:port` (no credentials in it), the port 80 when the setting left it
    /// out, as in any `http://` URL.
    pub url: String,
    /// Basic credentials (`proxy.username`, `proxy.password`), when the proxy asks for them.
    pub credentials: Option<(String, Secret)>,
    /// `proxy.no_proxy`: hosts, `.domains`, IP addresses or CIDR ranges reached directly,
    /// comma-separated.
    pub no_proxy: String,
}

impl ProxyTarget {
    /// The proxy as `nss troubleshoot` and `nss status` name it: the URL and the user,
    /// never the password.
    pub fn describe(&self) -> String {
        let user = match &self.credentials {
            Some((username, _)) => format!(" as {username}"),
            None => String::new(),
        };
        let direct = if self.no_proxy.is_empty() {
            String::new()
        } else {
            format!("; reached directly: {}", self.no_proxy)
        };
        format!("{}{user}{direct}", self.url)
    }

    /// The proxy as reqwest applies it: every URL but those of `no_proxy`.
    pub fn reqwest(&self) -> Result<reqwest::Proxy, String> {
        let mut proxy = reqwest::Proxy::all(&self.url).map_err(|e| format!("proxy.url: {e}"))?;
        if let Some((username, password)) = &self.credentials {
            proxy = proxy.basic_auth(username, password.expose());
        }
        Ok(proxy.no_proxy(reqwest::NoProxy::from_string(&self.no_proxy)))
    }
}

/// The line `nss troubleshoot` prints about the proxy.
pub fn proxy_line(proxy: Option<&ProxyTarget>) -> String {
    match proxy {
        Some(proxy) => format!("Proxy: {} (every connection, with CONNECT)", proxy.describe()),
        None => "Proxy: none (proxy.url is empty: connections are direct; HTTPS_PROXY and NO_PROXY in the environment are not used)".to_string(),
    }
}

impl Settings {
    /// The outbound proxy, `None` when `proxy.url` is empty (every connection direct); an
    /// error naming the key when a value cannot work.
    pub fn proxy_target(&self) -> Result<Option<ProxyTarget>, ConfigError> {
        let proxy = &self.proxy;
        let Some(url) = proxy.url.as_deref() else {
            for (key, set) in [
                ("proxy.username", proxy.username.is_some()),
                ("proxy.password", proxy.password.is_some()),
                ("proxy.no_proxy", !proxy.no_proxy.trim().is_empty()),
            ] {
                if set {
                    return Err(ConfigError::new(
                        key,
                        "is set but proxy.url is empty: set proxy.url = \"http://host:port\", or remove the key",
                    ));
                }
            }
            return Ok(None);
        };
        let bad = |problem: &str| {
            ConfigError::new(
                "proxy.url",
                // The value is not quoted: a secret pasted into the wrong key stays secret.
                format!("{problem}: write it as \"http://host:port\""),
            )
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        if parsed.scheme() != "http" {
            return Err(bad(
                "is not an http:// URL (the agent speaks HTTP to the proxy and opens TLS through it with CONNECT)",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ConfigError::new(
                "proxy.url",
                "holds credentials: put the user in proxy.username and the password in proxy.password or proxy.password_file, so that it stays masked",
            ));
        }
        let host = parsed.host_str().ok_or_else(|| bad("has no host"))?;
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(bad("has a path or a query"));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let credentials = match (&proxy.username, &proxy.password) {
            (Some(username), Some(password)) => Some((username.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "proxy.password",
                    "is not set but proxy.username is: set proxy.password or proxy.password_file (or $CREDENTIALS_DIRECTORY/proxy.password)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "proxy.username",
                    "is not set but proxy.password is: set the user the proxy knows",
                ))
            }
        };
        let no_proxy: Vec<&str> = proxy
            .no_proxy
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if let Some(entry) = no_proxy
            .iter()
            .find(|e| e.contains("://") || e.contains('/') && !is_cidr(e))
        {
            return Err(ConfigError::new(
                "proxy.no_proxy",
                format!("{entry:?} is not a host, a .domain, an IP address or a CIDR range: list them comma-separated, e.g. \"localhost, .corp.example.com, 10.0.0.0/8\""),
            ));
        }
        Ok(Some(ProxyTarget {
            url: format!("http://{}", host_port(host, port)),
            credentials,
            no_proxy: no_proxy.join(","),
        }))
    }
}

fn is_cidr(entry: &str) -> bool {
    entry.split_once('/').is_some_and(|(net, bits)| {
        net.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    })
}

/// `host:port`, an IPv6 host in brackets.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, no_proxy: &str) -> Result<Option<ProxyTarget>, ConfigError> {
        let mut settings = Settings::default();
        settings.proxy.url = Some(url.to_string());
        settings.proxy.no_proxy = no_proxy.to_string();
        settings.proxy_target()
    }

    #[test]
    fn proxy_urls() {
        let ok = target(
            "http://proxy.corp.example.com:3128",
            "localhost, 10.0.0.0/8",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.url, "http://proxy.corp.example.com:3128");
        assert_eq!(ok.no_proxy, "localhost,10.0.0.0/8");
        assert_eq!(
            target("http://proxy", "").unwrap().unwrap().url,
            "http://proxy:80"
        );
        for bad in [
            "https://proxy:3128",
            "http://u:p@proxy:3128",
            "proxy:3128",
            "http://proxy:3128/x",
        ] {
            assert_eq!(target(bad, "").unwrap_err().key, "proxy.url", "{bad}");
        }
        assert_eq!(
            target("http://proxy:3128", "http://x").unwrap_err().key,
            "proxy.no_proxy"
        );
    }
}
