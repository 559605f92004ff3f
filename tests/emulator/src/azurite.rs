//! The blob step against Azurite (Microsoft's Azure Storage emulator): the emulator signs
//! real service SAS URLs with the account key, creates the container at start, and on
//! done_upload fetches the committed blob back to disk.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

use crate::sas::{self, BlobSas};
use crate::AzuriteTarget;

/// A client of one Azurite container.
#[derive(Debug)]
pub(crate) struct AzuriteClient {
    target: AzuriteTarget,
    key: Vec<u8>,
    http: reqwest::Client,
}

impl AzuriteClient {
    /// Builds the client (trusting `ca_pem`, the CA of the certificate Azurite serves)
    /// and creates the container if it does not exist yet.
    pub(crate) async fn connect(target: AzuriteTarget, ca_pem: &[u8]) -> Result<AzuriteClient> {
        let key = B64
            .decode(target.key.trim())
            .context("the Azurite account key is not base64")?;
        let http = crate::client_trusting(ca_pem)
            .context("parsing the CA certificate")?
            .timeout(std::time::Duration::from_secs(300))
            .build()?;
        let client = AzuriteClient { target, key, http };
        client.create_container().await?;
        Ok(client)
    }

    fn base(&self) -> String {
        format!(
            "{}/{}",
            self.target.endpoint.trim_end_matches('/'),
            self.target.container
        )
    }

    async fn create_container(&self) -> Result<()> {
        let expiry = sas::iso8601(SystemTime::now() + std::time::Duration::from_secs(3600));
        let query = sas::account_sas_query(&self.target.account, &self.key, &expiry);
        let url = format!("{}?restype=container&{query}", self.base());
        let resp = self
            .http
            .put(&url)
            .header("x-ms-version", sas::MS_VERSION)
            .header("content-length", "0")
            .send()
            .await
            .with_context(|| format!("creating container at {}", self.target.endpoint))?;
        let status = resp.status();
        // 409 ContainerAlreadyExists: a previous run (or another emulator) made it.
        if status.is_success() || status.as_u16() == 409 {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("Azurite answered {status} to Create Container: {body}");
    }

    /// A service SAS URL for blob `blob_name` of the container: read, create and write,
    /// valid until `expiry`.
    pub(crate) fn blob_url(&self, blob_name: &str, expiry: SystemTime) -> String {
        let expiry = sas::iso8601(expiry);
        let sas = BlobSas {
            account: &self.target.account,
            container: &self.target.container,
            blob: blob_name,
            permissions: "rcw",
            start: "",
            expiry: &expiry,
            version: sas::SAS_VERSION,
        };
        let mut url = url::Url::parse(&self.base()).expect("endpoint was parsed at start");
        url.path_segments_mut()
            .expect("an https URL has a path")
            .push(blob_name);
        url.set_query(Some(&sas.query(&self.key)));
        url.to_string()
    }

    /// Downloads the committed blob at the SAS `url` to `dest`. `Ok(None)` when Azurite
    /// has no such blob (never uploaded, or only uncommitted blocks).
    pub(crate) async fn fetch(&self, url: &str, dest: &Path) -> Result<Option<u64>> {
        let resp = self
            .http
            .get(url)
            .header("x-ms-version", sas::MS_VERSION)
            .send()
            .await
            .context("fetching the blob from Azurite")?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("Azurite answered {status} to Get Blob: {body}");
        }
        let mut file = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(dest)
                .await
                .with_context(|| format!("creating {}", dest.display()))?,
        );
        let mut n = 0u64;
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("reading the blob from Azurite")?
        {
            n += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(Some(n))
    }

    /// The number of committed blocks of the blob at `url` (0 for a blob written whole
    /// with Put Blob).
    pub(crate) async fn committed_block_count(&self, url: &str) -> Result<u32> {
        let url = format!("{url}&comp=blocklist&blocklisttype=committed");
        let resp = self
            .http
            .get(&url)
            .header("x-ms-version", sas::MS_VERSION)
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("Azurite answered {status} to Get Block List: {body}");
        }
        let xml = resp.text().await?;
        Ok(crate::blocklist::count_committed_blocks(&xml))
    }
}
