//! Google credentials for Google Container Registry, Artifact Registry and GCS state, through
//! Google's own authentication library, [`google_cloud_auth`].
//!
//! [`GoogleCredentials`] answers for `gcr.io`, `*.gcr.io`, `*.pkg.dev` (Artifact Registry's
//! `REGION-docker.pkg.dev`) and hosts named explicitly. The credentials are found as Google's
//! client libraries find them (Application Default Credentials):
//!
//! 1. the JSON file named by `GOOGLE_APPLICATION_CREDENTIALS`, or
//! 2. gcloud's well-known file, `$CLOUDSDK_CONFIG/application_default_credentials.json` or
//!    `$HOME/.config/gcloud/application_default_credentials.json`, or
//! 3. the metadata server (GCE, GKE, Cloud Run; `$GCE_METADATA_HOST` if set).
//!
//! A file is used by its `type`: `service_account` (a key), `authorized_user` (from
//! `gcloud auth application-default login`), `impersonated_service_account`,
//! `external_account` (Workload Identity Federation: an AWS role, as a Lambda function has,
//! an OIDC/SAML token from a file, a URL or an executable, exchanged at Google's STS and
//! optionally for a service account's token) and `external_account_authorized_user`.
//!
//! Registries get Basic credentials `oauth2accesstoken` / access token, except with a
//! service-account key: Google's library makes self-signed JWTs rather than OAuth2 access tokens
//! from keys, and Google documents `_json_key_base64` / the base64 key file as the Basic
//! credentials of GCR and Artifact Registry for keys, so that is what registries get. GCS gets
//! the access token (a self-signed JWT for keys, which Google's APIs accept).
//!
//! Tokens are cached and refreshed before they expire by the library, one fetch at a time per
//! credential; a fetch that takes longer than [`TOKEN_TIMEOUT`] is an error. The file is read
//! when a credential is first needed. Secrets (keys, refresh tokens, access tokens) never
//! appear in `Debug` output, errors or logs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use google_cloud_auth::credentials::{
    AccessTokenCredentials, external_account, external_account_authorized_user, impersonated, mds,
    service_account, user_account,
};

use super::docker_config::Credential;

/// The user name registries expect with a Google OAuth2 access token as password.
pub const USERNAME: &str = "oauth2accesstoken";

/// The user name registries expect with a base64-encoded service-account key as password.
pub const JSON_KEY_USERNAME: &str = "_json_key_base64";

/// The OAuth2 scope asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Longest wait for an access token (the library's own retries included).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why Google credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The host is neither a Google registry host nor one of the configured extra hosts.
    #[error("{host} is not a Google registry host")]
    NotGoogleHost {
        /// The registry host.
        host: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read Google credentials file {}", path.display())]
    ReadKeyFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not a JSON object with a string `type`.
    #[error("invalid Google credentials file {}: {reason}", path.display())]
    ParseKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's values).
        reason: String,
    },
    /// The credentials file has a `type` this client does not support.
    #[error(
        "Google credentials file {} has type `{kind}`; supported: service_account, \
         authorized_user, impersonated_service_account, external_account, \
         external_account_authorized_user",
        path.display()
    )]
    UnsupportedKeyType {
        /// The file.
        path: PathBuf,
        /// Its `type`.
        kind: String,
    },
    /// Google's library refused the credentials (a field missing or malformed).
    #[error("unusable Google credentials from {origin}")]
    Build {
        /// The file, or the metadata server.
        origin: String,
        /// The library's error.
        #[source]
        source: Box<google_cloud_auth::build_errors::Error>,
    },
    /// No access token could be obtained.
    #[error("no Google access token from {origin}")]
    Token {
        /// The file, or the metadata server.
        origin: String,
        /// The library's error.
        #[source]
        source: Box<google_cloud_auth::errors::CredentialsError>,
    },
    /// No access token within [`TOKEN_TIMEOUT`].
    #[error("no Google access token from {origin} within {} s", TOKEN_TIMEOUT.as_secs())]
    TokenTimeout {
        /// The file, or the metadata server.
        origin: String,
    },
}

/// Where credentials come from.
#[derive(Clone)]
enum Source {
    /// A JSON credentials file.
    KeyFile(PathBuf),
    /// The metadata server at this URL, or the library's default (`GCE_METADATA_HOST`).
    Metadata(Option<String>),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::KeyFile(path) => write!(f, "key file {}", path.display()),
            Source::Metadata(Some(url)) => write!(f, "metadata server {url}"),
            Source::Metadata(None) => f.write_str("the metadata server"),
        }
    }
}

/// Credentials built from the source, once.
struct Resolved {
    /// Access tokens, cached and refreshed by the library.
    tokens: AccessTokenCredentials,
    /// The base64 key file, where the source is a service-account key.
    json_key: Option<String>,
}

/// Google credentials, for Google registry hosts (and the extra hosts named) and GCS.
pub struct GoogleCredentials {
    source: Source,
    token_url: Option<String>,
    extra_hosts: Vec<String>,
    resolved: tokio::sync::OnceCell<Resolved>,
}

impl fmt::Debug for GoogleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleCredentials")
            .field("source", &self.source.to_string())
            .field("extra_hosts", &self.extra_hosts)
            .finish_non_exhaustive()
    }
}

impl GoogleCredentials {
    /// Credentials from the environment, as Google's libraries find them (see the module
    /// docs), for Google registry hosts and `extra_hosts`.
    pub fn from_env(extra_hosts: Vec<String>) -> Self {
        let source = application_default_file()
            .map(Source::KeyFile)
            .unwrap_or(Source::Metadata(None));
        Self::new(source, extra_hosts)
    }

    /// Credentials from a JSON credentials file (read when a token is first needed), for
    /// Google registry hosts and `extra_hosts`.
    pub fn with_key_file(path: impl Into<PathBuf>, extra_hosts: Vec<String>) -> Self {
        Self::new(Source::KeyFile(path.into()), extra_hosts)
    }

    /// Credentials from the metadata server at `host` (`host[:port]`, plain HTTP), for Google
    /// registry hosts and `extra_hosts`.
    pub fn with_metadata_host(host: impl Into<String>, extra_hosts: Vec<String>) -> Self {
        let url = format!("http://{}", host.into());
        Self::new(Source::Metadata(Some(url)), extra_hosts)
    }

    /// Uses `url` instead of Google's token endpoint for `authorized_user` refresh tokens
    /// (the file's own `token_uri` otherwise).
    #[must_use]
    pub fn with_token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    fn new(source: Source, extra_hosts: Vec<String>) -> Self {
        GoogleCredentials {
            source,
            token_url: None,
            extra_hosts,
            resolved: tokio::sync::OnceCell::new(),
        }
    }

    /// True for `gcr.io`, `*.gcr.io`, `*.pkg.dev` and the configured extra hosts.
    pub fn handles(&self, host: &str) -> bool {
        let lower = host.to_ascii_lowercase();
        let subdomain_of = |domain: &str| {
            lower
                .strip_suffix(domain)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty())
        };
        lower == "gcr.io"
            || subdomain_of("gcr.io")
            || subdomain_of("pkg.dev")
            || self
                .extra_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Basic credentials for the registry at `host`: `oauth2accesstoken` and an access token,
    /// or `_json_key_base64` and the key file for a service-account key.
    pub async fn credential(&self, host: &str) -> Result<Credential, GoogleError> {
        if !self.handles(host) {
            return Err(GoogleError::NotGoogleHost {
                host: host.to_owned(),
            });
        }
        let resolved = self.resolved().await?;
        if let Some(key) = &resolved.json_key {
            return Ok(Credential::Basic {
                username: JSON_KEY_USERNAME.to_owned(),
                password: key.clone(),
            });
        }
        Ok(Credential::Basic {
            username: USERNAME.to_owned(),
            password: self.fetch_token(resolved).await?,
        })
    }

    /// An access token for Google's APIs (GCS), cached and refreshed by the library.
    pub async fn access_token(&self) -> Result<String, GoogleError> {
        let resolved = self.resolved().await?;
        self.fetch_token(resolved).await
    }

    /// The credentials as Google's client libraries take them (GCS), sharing this value's
    /// token cache.
    pub async fn api_credentials(
        &self,
    ) -> Result<google_cloud_auth::credentials::Credentials, GoogleError> {
        let resolved = self.resolved().await?;
        Ok(google_cloud_auth::credentials::Credentials::from(
            resolved.tokens.clone(),
        ))
    }

    async fn fetch_token(&self, resolved: &Resolved) -> Result<String, GoogleError> {
        let origin = || self.source.to_string();
        match tokio::time::timeout(TOKEN_TIMEOUT, resolved.tokens.access_token()).await {
            Ok(Ok(token)) => Ok(token.token),
            Ok(Err(source)) => Err(GoogleError::Token {
                origin: origin(),
                source: Box::new(source),
            }),
            Err(_) => Err(GoogleError::TokenTimeout { origin: origin() }),
        }
    }

    async fn resolved(&self) -> Result<&Resolved, GoogleError> {
        self.resolved
            // Boxed: Google's builders are large, and this future sits in every registry
            // request's (debug builds' 2 MiB test threads overflowed).
            .get_or_try_init(|| Box::pin(resolve(&self.source, self.token_url.as_deref())))
            .await
    }
}

/// The Application Default Credentials file, if there is one.
fn application_default_file() -> Option<PathBuf> {
    let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = non_empty("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(PathBuf::from(path));
    }
    let gcloud_dir = non_empty("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".config/gcloud")))?;
    let well_known = gcloud_dir.join("application_default_credentials.json");
    well_known.is_file().then_some(well_known)
}

/// Builds the library's credentials for `source`.
async fn resolve(source: &Source, token_url: Option<&str>) -> Result<Resolved, GoogleError> {
    let origin = source.to_string();
    let built = |result: Result<AccessTokenCredentials, google_cloud_auth::build_errors::Error>| {
        result.map_err(|source| GoogleError::Build {
            origin: origin.clone(),
            source: Box::new(source),
        })
    };
    match source {
        Source::Metadata(endpoint) => {
            let builder = endpoint
                .iter()
                .fold(mds::Builder::default(), |b, url| b.with_endpoint(url));
            Ok(Resolved {
                tokens: built(builder.build_access_token_credentials())?,
                json_key: None,
            })
        }
        Source::KeyFile(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|source| GoogleError::ReadKeyFile {
                    path: path.clone(),
                    source,
                })?;
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| GoogleError::ParseKeyFile {
                    path: path.clone(),
                    reason: format!("not JSON (line {}, column {})", e.line(), e.column()),
                })?;
            let kind = json
                .get("type")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| GoogleError::ParseKeyFile {
                    path: path.clone(),
                    reason: "no string `type`".to_owned(),
                })?
                .to_owned();
            let scopes = [SCOPE];
            let (tokens, json_key) = match kind.as_str() {
                "service_account" => {
                    let access = service_account::AccessSpecifier::from_scopes(scopes);
                    let builder = service_account::Builder::new(json).with_access_specifier(access);
                    (
                        builder.build_access_token_credentials(),
                        Some(STANDARD.encode(&bytes)),
                    )
                }
                "authorized_user" => {
                    let builder = token_url.into_iter().fold(
                        user_account::Builder::new(json).with_scopes(scopes),
                        |b, url| b.with_token_uri(url),
                    );
                    (builder.build_access_token_credentials(), None)
                }
                "impersonated_service_account" => {
                    let builder = impersonated::Builder::new(json).with_scopes(scopes);
                    (builder.build_access_token_credentials(), None)
                }
                "external_account" => {
                    let json = without_needless_imds_session(json);
                    let builder = external_account::Builder::new(json).with_scopes(scopes);
                    (builder.build_access_token_credentials(), None)
                }
                "external_account_authorized_user" => {
                    let builder = external_account_authorized_user::Builder::new(json);
                    (builder.build_access_token_credentials(), None)
                }
                _ => {
                    return Err(GoogleError::UnsupportedKeyType {
                        path: path.clone(),
                        kind,
                    });
                }
            };
            Ok(Resolved {
                tokens: built(tokens)?,
                json_key,
            })
        }
    }
}

/// An AWS-sourced `external_account` file without its `imdsv2_session_token_url` when the
/// role's credentials and region are in the environment (as in AWS Lambda, which has no
/// metadata service): Google's library asks for an IMDSv2 session token whenever the file names
/// that URL, even when it then reads nothing from the metadata service, and in Lambda the
/// request would hang until [`TOKEN_TIMEOUT`]. Google's Python and Go libraries skip it in this
/// case too. (`gcloud iam workload-identity-pools create-cred-config --aws --enable-imdsv2`
/// writes the URL.)
fn without_needless_imds_session(mut json: serde_json::Value) -> serde_json::Value {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let in_environment = set("AWS_ACCESS_KEY_ID")
        && set("AWS_SECRET_ACCESS_KEY")
        && (set("AWS_REGION") || set("AWS_DEFAULT_REGION"));
    if let Some(source) = json
        .get_mut("credential_source")
        .and_then(serde_json::Value::as_object_mut)
        && in_environment
        && source
            .get("environment_id")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|id| id.starts_with("aws"))
    {
        source.remove("imdsv2_session_token_url");
    }
    json
}

#[cfg(test)]
mod tests;
