//! Whether a host is reachable over HTTPS without asking it anything: a TCP connection
//! (through the configured proxy with CONNECT, unless `proxy.no_proxy` lists the host)
//! and a completed TLS handshake whose certificate the agent trusts, then closed. Not a
//! byte of HTTP is sent to the host: `nss troubleshoot mcas` checks the blob host this
//! way without writing into the blob an upload URL names.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::proxy::host_port;
use crate::config::ProxyTarget;

/// The longest answer head to a CONNECT that is read.
const HEAD_LIMIT: usize = 8 << 10;

/// Why a host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The name does not resolve.
    Name(String),
    /// The connection was refused, reset or timed out: a firewall or a route.
    Connect(String),
    /// The proxy refused: the credentials (407), or the tunnel (another status).
    Proxy(String),
    /// The TLS handshake failed: a certificate not trusted, or a connection cut mid-way.
    Tls(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Name(text)
            | Unreachable::Connect(text)
            | Unreachable::Proxy(text)
            | Unreachable::Tls(text) => f.write_str(text),
        }
    }
}

/// How the host was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through the proxy of this URL.
    Proxy(String),
}

/// Connects to `host:port` and completes a TLS handshake, trusting the system's anchors and
/// those in `ca_file` (the key `ca_key` names it in errors); within `timeout` in all.
pub async fn tls_handshake(
    host: &str,
    port: u16,
    ca_file: Option<&Path>,
    ca_key: &str,
    proxy: Option<&ProxyTarget>,
    timeout: Duration,
) -> Result<Route, Unreachable> {
    let config = crate::https::tls_config(ca_file)
        .map_err(|problem| Unreachable::Tls(format!("{ca_key}: {problem}")))?;
    let server_name = server_name(host)?;
    let attempt = async {
        let (stream, path) = match proxy.filter(|p| !bypassed(&p.no_proxy, host)) {
            Some(proxy) => (
                tunnel(proxy, host, port).await?,
                Route::Proxy(proxy.url.clone()),
            ),
            None => (connect(host, port).await?, Route::Direct),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut tls = connector.connect(server_name, stream).await.map_err(|e| {
            Unreachable::Tls(format!(
                "the TLS handshake with {} failed: {e}",
                host_port(host, port)
            ))
        })?;
        // Closed at once: the handshake was all there was to know.
        let _ = tls.shutdown().await;
        Ok(path)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Unreachable::Connect(format!(
            "no answer from {} within {} s",
            host_port(host, port),
            timeout.as_secs()
        ))),
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, Unreachable> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_string())
        .map_err(|e| Unreachable::Name(format!("{host} is not a host name: {e}")))
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, Unreachable> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| Unreachable::Name(format!("the name {bare} does not resolve: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Unreachable::Connect(match last {
        Some(e) => format!("cannot connect to {}: {e}", host_port(host, port)),
        None => format!("the name {bare} resolves to no address"),
    }))
}

/// A CONNECT tunnel to `host:port` through `proxy`.
async fn tunnel(proxy: &ProxyTarget, host: &str, port: u16) -> Result<TcpStream, Unreachable> {
    let proxy_at = proxy.url.trim_start_matches("http://");
    let (proxy_host, proxy_port) = proxy_at
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .unwrap_or((proxy_at, 80));
    let mut stream = connect(proxy_host, proxy_port).await.map_err(|e| {
        Unreachable::Proxy(format!(
            "cannot connect to the proxy ({e}): check proxy.url and that the proxy runs"
        ))
    })?;
    let target = host_port(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((username, password)) = &proxy.credentials {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose()));
        request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
    }
    request.push_str("\r\n");
    let cut =
        |e: std::io::Error| Unreachable::Proxy(format!("the proxy closed the connection: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(cut)?;
    // Byte by byte up to the blank line: nothing of the tunnel's own bytes is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HEAD_LIMIT {
            return Err(Unreachable::Proxy(
                "the proxy's answer to CONNECT is too long".to_string(),
            ));
        }
        let byte = stream.read_u8().await.map_err(cut)?;
        head.push(byte);
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(stream),
        Some(407) => Err(Unreachable::Proxy("the proxy refused the credentials (HTTP 407 Proxy Authentication Required): check proxy.username and proxy.password (or proxy.password_file)".to_string())),
        Some(code) => Err(Unreachable::Proxy(format!("the proxy refused to open a tunnel to {target} (CONNECT answered {code}): check the proxy's rules for it, or list the host in proxy.no_proxy"))),
        None => Err(Unreachable::Proxy("the proxy's answer to CONNECT is not HTTP: check proxy.url".to_string())),
    }
}

/// Whether `no_proxy` (comma-separated, as reqwest reads it) sends `host` direct: `*`,
/// an IP address or CIDR range, or a domain matching itself and its subdomains (a
/// leading dot changes nothing).
pub fn bypassed(no_proxy: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_range(ip, net, bits),
                    _ => false,
                };
            }
            if let Ok(entry_ip) = entry
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                return ip == Some(entry_ip);
            }
            let domain = entry.trim_start_matches('.').to_ascii_lowercase();
            host == domain || host.ends_with(&format!(".{domain}"))
        })
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries() {
        let list = "localhost, .corp.example.com, blob.core.windows.net, 10.0.0.0/8, ::1";
        for (host, direct) in [
            ("localhost", true),
            ("a.corp.example.com", true),
            ("corp.example.com", true),
            ("xcorp.example.com", false),
            ("acct.blob.core.windows.net", true),
            ("10.2.3.4", true),
            ("11.2.3.4", false),
            ("[::1]", true),
            ("example.com", false),
        ] {
            assert_eq!(bypassed(list, host), direct, "{host}");
        }
        assert!(bypassed("*", "anything"));
        assert!(!bypassed("", "anything"));
    }
}
