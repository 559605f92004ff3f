//! The remote services the settings point at, once their keys are known to be complete:
//! the MCAS tenant (and how the agent proves itself to it) and the tenant's ZIA.

use std::path::PathBuf;

use super::Secret;

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
