//! The remote services the settings point at, once their keys are known to be complete:
//! the MCAS tenant (and how the agent proves itself to it) and the tenant's ZIA.

use std::path::PathBuf;

use super::values::{McasAuth, ZiaAuth};
use super::{ConfigError, ProxyTarget, Secret, Settings};

/// The MCAS target once the domain and a credential are known to be present.
#[derive(Debug, Clone)]
pub struct McasTarget {
    /// The tenant's portal host (`host` or `host:port`), without a scheme.
    pub domain: String,
    /// How every API call is authorised.
    pub credential: McasCredential,
    /// The data source's name (done_upload's `inputStreamName`).
    pub data_source: String,
    /// The log format passed to upload_url (`ZSCALER_QRADAR`, ...).
    pub source: String,
    /// Extra PEM trust anchors for every MCAS connection, the Entra token endpoint included.
    pub ca_file: Option<PathBuf>,
    /// The outbound proxy of every MCAS connection (the blob store and Entra included).
    pub proxy: Option<ProxyTarget>,
}

/// How the agent proves itself to MCAS (`mcas.auth`).
#[derive(Debug, Clone)]
pub enum McasCredential {
    /// A legacy API token (`mcas.auth = "token"`), sent as `Authorization: Token ...`.
    Token(Secret),
    /// A Microsoft Entra application (`mcas.auth = "entra"`): client credentials exchanged
    /// for a bearer token at the authority.
    Entra(EntraApp),
}

impl McasCredential {
    /// What `nss status` and the prompts show: the token masked, or the application's id.
    pub fn masked(&self) -> String {
        match self {
            McasCredential::Token(token) => token.masked(),
            McasCredential::Entra(app) => format!("entra app {}", app.client_id),
        }
    }

    /// The `mcas.auth` value this credential comes from.
    pub fn kind(&self) -> &'static str {
        match self {
            McasCredential::Token(_) => "token",
            McasCredential::Entra(_) => "entra",
        }
    }
}

/// A Microsoft Entra application registered with `Discovery.manage` and `Discovery.read`.
#[derive(Debug, Clone)]
pub struct EntraApp {
    /// `https://login.microsoftonline.com` (or `.us` for GCC High and DoD), no trailing `/`.
    pub authority: String,
    /// The directory (tenant) id or a verified domain, e.g. `contoso.onmicrosoft.com`.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// What proves the application's identity.
    pub secret: EntraSecret,
}

/// How an Entra application proves itself at the token endpoint.
#[derive(Debug, Clone)]
pub enum EntraSecret {
    /// A client secret (`mcas.client_secret` or `client_secret_file`).
    ClientSecret(Secret),
    /// A PEM file with the certificate and its private key (`mcas.certificate_file`): the
    /// agent signs a client assertion; no secret is stored.
    Certificate(PathBuf),
}

/// The tenant's ZIA API, once `zia.base_url` and the credentials of `zia.auth` are present.
#[derive(Debug, Clone)]
pub struct ZiaTarget {
    /// `https://zsapi.<cloud>.net` (API key) or `https://api.zsapi.net` (OneAPI), no
    /// trailing `/`; the client adds `/api/v1` or `/zia/api/v1`.
    pub base_url: String,
    /// How the agent logs in.
    pub login: ZiaLogin,
    /// Extra PEM trust anchors for ZIA and its token endpoint.
    pub ca_file: Option<PathBuf>,
    /// The outbound proxy of ZIA and its token endpoint.
    pub proxy: Option<ProxyTarget>,
}

/// How the agent logs in to ZIA (`zia.auth`).
#[derive(Debug, Clone)]
pub enum ZiaLogin {
    /// `zia.auth = "api_key"`: an API admin's username and password with the tenant's
    /// 12-character cloud service API key, for a JSESSIONID session.
    ApiKey {
        username: String,
        password: Secret,
        api_key: Secret,
    },
    /// `zia.auth = "oneapi"`: ZIdentity OAuth2 client credentials for a bearer token.
    OneApi {
        /// `https://<vanity>.zslogin.net/oauth2/v1/token`.
        token_url: String,
        client_id: String,
        secret: OneApiSecret,
    },
}

/// How a OneAPI client proves itself at the token endpoint.
#[derive(Debug, Clone)]
pub enum OneApiSecret {
    /// `zia.client_secret` or `client_secret_file`.
    ClientSecret(Secret),
    /// `zia.private_key_file`: a PEM RSA key that signs an RS256 client assertion.
    PrivateKey(PathBuf),
}

impl Settings {
    /// The MCAS target, or the error an administrator needs when the domain or a
    /// credential of `mcas.auth` is missing.
    pub fn mcas_target(&self) -> Result<McasTarget, ConfigError> {
        let mcas = &self.mcas;
        let domain = mcas.domain.clone().ok_or_else(|| {
            self.missing(
                "mcas.domain",
                "run `sudo nss configure-mcas` to enter the MCAS domain and token",
            )
        })?;
        let credential = match mcas.auth {
            McasAuth::Token => McasCredential::Token(mcas.token.clone().ok_or_else(|| {
                self.missing(
                    "mcas.token",
                    "run `sudo nss configure-mcas` to enter the MCAS API token (or set mcas.token_file)",
                )
            })?),
            McasAuth::Entra => McasCredential::Entra(self.entra_app()?),
        };
        Ok(McasTarget {
            domain,
            credential,
            data_source: mcas.data_source.clone(),
            source: mcas.source.clone(),
            ca_file: mcas.ca_file.clone(),
            proxy: self.proxy_target()?,
        })
    }

    fn entra_app(&self) -> Result<EntraApp, ConfigError> {
        let mcas = &self.mcas;
        let fix = "with mcas.auth = \"entra\" it is required: run `sudo nss configure-mcas` to enter the Entra application";
        let tenant_id = mcas
            .tenant_id
            .clone()
            .ok_or_else(|| self.missing("mcas.tenant_id", fix))?;
        let client_id = mcas
            .client_id
            .clone()
            .ok_or_else(|| self.missing("mcas.client_id", fix))?;
        let secret = match (&mcas.client_secret, &mcas.certificate_file) {
            (Some(secret), _) => EntraSecret::ClientSecret(secret.clone()),
            (None, Some(certificate)) => EntraSecret::Certificate(certificate.clone()),
            (None, None) => return Err(self.missing(
                "mcas.client_secret",
                "with mcas.auth = \"entra\" the application needs a client_secret, a client_secret_file or a certificate_file: run `sudo nss configure-mcas` to enter one",
            )),
        };
        Ok(EntraApp {
            authority: mcas.authority.trim_end_matches('/').to_string(),
            tenant_id,
            client_id,
            secret,
        })
    }

    /// The ZIA target: `None` when `zia.base_url` is empty (the category stays on the
    /// appliance), else the error naming a missing key of `zia.auth`.
    pub fn zia_target(&self) -> Result<Option<ZiaTarget>, ConfigError> {
        let zia = &self.zia;
        let Some(base_url) = &zia.base_url else {
            return Ok(None);
        };
        let fix = |what: &str| {
            format!(
                "with zia.auth = \"{}\" it is required: {what}, or set zia.base_url = \"\" to keep the category on the appliance only",
                zia.auth.as_str()
            )
        };
        let login = match zia.auth {
            ZiaAuth::ApiKey => ZiaLogin::ApiKey {
                username: zia.username.clone().ok_or_else(|| {
                    self.missing("zia.username", &fix("set the API admin's login name"))
                })?,
                password: zia.password.clone().ok_or_else(|| {
                    self.missing("zia.password", &fix("set password or password_file"))
                })?,
                api_key: zia.api_key.clone().ok_or_else(|| {
                    self.missing(
                        "zia.api_key",
                        &fix(
                            "set api_key or api_key_file to the 12-character cloud service API key",
                        ),
                    )
                })?,
            },
            ZiaAuth::OneApi => ZiaLogin::OneApi {
                token_url: zia.token_url.clone().ok_or_else(|| {
                    self.missing(
                        "zia.token_url",
                        &fix("set it to https://<vanity>.zslogin.net/oauth2/v1/token"),
                    )
                })?,
                client_id: zia.client_id.clone().ok_or_else(|| {
                    self.missing("zia.client_id", &fix("set the ZIdentity API client's id"))
                })?,
                secret: match (&zia.client_secret, &zia.private_key_file) {
                    (Some(secret), _) => OneApiSecret::ClientSecret(secret.clone()),
                    (None, Some(key)) => OneApiSecret::PrivateKey(key.clone()),
                    (None, None) => {
                        return Err(self.missing(
                            "zia.client_secret",
                            &fix("set client_secret, client_secret_file or private_key_file"),
                        ))
                    }
                },
            },
        };
        Ok(Some(ZiaTarget {
            base_url: base_url.trim_end_matches('/').to_string(),
            login,
            ca_file: zia.ca_file.clone(),
            proxy: self.proxy_target()?,
        }))
    }

    /// The error for a key that is not set, noting a missing file (the likely cause).
    fn missing(&self, key: &str, fix: &str) -> ConfigError {
        let note = if self.file_found {
            String::new()
        } else {
            format!(
                " (there is no configuration file at {})",
                self.path.display()
            )
        };
        ConfigError::new(key, format!("is not set{note}: {fix}"))
    }
}
