//! The emulator's TLS identity: a CA and a server certificate for `localhost` and
//! `127.0.0.1` signed by it, kept as PEM files in a directory so that clients (and
//! Azurite) can use the same ones.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File name of the CA certificate (what clients trust).
pub const CA_FILE: &str = "ca.pem";
/// File name of the server certificate.
pub const CERT_FILE: &str = "server.pem";
/// File name of the server's private key (PKCS#8 PEM).
pub const KEY_FILE: &str = "server.key";

/// Makes sure `dir` holds `ca.pem`, `server.pem` and `server.key`: keeps them if all
/// three exist, else generates a new set. Returns whether it generated one.
///
/// Several emulators (parallel tests) may share a directory, so generation happens under
/// a lock file and files are written whole (temporary name, then rename).
pub fn ensure_certs(dir: &Path) -> Result<bool> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if complete(dir) {
        return Ok(false);
    }
    let _lock = DirLock::acquire(dir)?;
    if complete(dir) {
        return Ok(false);
    }
    write_new_certs(dir)?;
    Ok(true)
}

fn complete(dir: &Path) -> bool {
    [CA_FILE, CERT_FILE, KEY_FILE]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// Generates a new CA and server certificate and writes the three files.
fn write_new_certs(dir: &Path) -> Result<()> {
    let (not_before, not_after) = (
        rcgen::date_time_ymd(2020, 1, 1),
        rcgen::date_time_ymd(2049, 12, 31),
    );

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcas-emulator test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "mcas-emulator");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let server_cert = params.signed_by(&server_key, &issuer)?;

    write_atomic(
        &dir.join(KEY_FILE),
        server_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_atomic(&dir.join(CERT_FILE), server_cert.pem().as_bytes(), false)?;
    // The CA last: its presence completes the set for readers not holding the lock.
    write_atomic(&dir.join(CA_FILE), ca_cert.pem().as_bytes(), false)?;
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// An exclusive lock on a directory, as a file created with `create_new`.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(".certs.lock");
        let started = SystemTime::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(DirLock(path)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    // A generator that died leaves its lock behind; generating takes
                    // milliseconds, so an old lock is a stale one.
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(10));
                    if stale {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if started.elapsed().unwrap_or_default() > Duration::from_secs(30) {
                        bail!("timed out waiting for {}", path.display());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The rustls server configuration from `dir`'s certificate and key (ring provider,
/// ALPN h2 and http/1.1).
pub(crate) fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client builder that trusts only the CA in `ca_pem` (the emulators' own), with ring as
/// the agent's client has: reqwest is built without a crypto provider, so ring is made the
/// process's (once; a provider already set stays).
pub fn client_trusting(ca_pem: &[u8]) -> reqwest::Result<reqwest::ClientBuilder> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem)?;
    Ok(reqwest::Client::builder().tls_certs_only([ca]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_certs(dir.path()).unwrap());
        let ca = fs::read(dir.path().join(CA_FILE)).unwrap();
        assert!(!ensure_certs(dir.path()).unwrap());
        assert_eq!(ca, fs::read(dir.path().join(CA_FILE)).unwrap());
        server_config(dir.path()).unwrap();
        assert!(!dir.path().join(".certs.lock").exists());
    }
}
