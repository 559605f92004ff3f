//! The MCAS domain: a host name or IP address, optionally with a port, never a URL.

use std::net::{Ipv4Addr, Ipv6Addr};

const EXAMPLE: &str = "mycompany.us3.portal.cloudappsecurity.com";

/// Checks that `domain` is `host` or `host:port` (an IPv6 address in brackets), with no
/// scheme, path or white space, and returns it unchanged.
pub fn check_domain(domain: &str) -> Result<&str, String> {
    if domain.trim().is_empty() {
        return Err(format!(
            "the domain is empty: set it to your tenant's MCAS host, e.g. {EXAMPLE}"
        ));
    }
    if domain.chars().any(char::is_whitespace) {
        return Err(format!(
            "contains white space: write the host name alone, e.g. {EXAMPLE}"
        ));
    }
    if domain.contains("://") {
        return Err(format!(
            "has a scheme: write the host name without https://, e.g. {EXAMPLE}"
        ));
    }
    if domain.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "has a path or other URL parts: write the host name alone, e.g. {EXAMPLE}"
        ));
    }
    let (host, port) = split_port(domain)?;
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(
                    "has a port that is not a number from 1 to 65535 after the last ':'"
                        .to_string(),
                )
            }
        }
    }
    if !(is_ip(host) || is_host_name(host)) {
        return Err(format!(
            "is not a host name or IP address: use letters, digits, dots and hyphens, e.g. {EXAMPLE}"
        ));
    }
    Ok(domain)
}

fn split_port(domain: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = domain.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "opens a bracket it does not close".to_string())?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("has text after the IPv6 address".to_string()),
            },
        };
    }
    match domain.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(port))),
        Some(_) => Err(
            "has more than one ':': write an IPv6 address in brackets, e.g. [::1]:443".to_string(),
        ),
        None => Ok((domain, None)),
    }
}

fn is_ip(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok()
}

fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hosts_and_ports() {
        for ok in [
            "mycompany.us3.portal.cloudappsecurity.com",
            "mycompany.portal.cloudappsecurity.com",
            "tenant.us1.portal.cloudappsecuritygov.com",
            "localhost:8443",
            "127.0.0.1:443",
            "[::1]:8443",
            "[::1]",
        ] {
            assert_eq!(check_domain(ok), Ok(ok));
        }
    }

    #[test]
    fn refuses_urls_and_junk() {
        for (bad, says) in [
            ("https://x.portal.cloudappsecurity.com", "scheme"),
            ("x.portal.cloudappsecurity.com/api", "path"),
            ("x.portal. cloudappsecurity.com", "white space"),
            ("", "empty"),
            ("   ", "empty"),
            ("x.com:0", "port"),
            ("x.com:99999", "port"),
            ("under_score.com", "host name"),
            ("-x.com", "host name"),
            ("::1", "brackets"),
        ] {
            let err = check_domain(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
