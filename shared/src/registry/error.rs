//! Errors of the registry client, each saying which request failed and whether retrying may help.

use reqwest::StatusCode;

use super::auth::challenge::ChallengeError;
use super::auth::docker_config::DockerConfigError;

/// A registry request that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be sent or its answer not read (connection refused, reset,
    /// timeout), after every retry.
    #[error("{what}: {source}")]
    Transport {
        /// The request, e.g. `GET https://gcr.io/v2/foo/manifests/v1`.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status (after retries, for retryable ones).
    #[error("{what}: {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// The request.
        what: String,
        /// The status it got.
        status: StatusCode,
        /// The start of the error body (registries send `{"errors":[{"code","message"}]}`).
        detail: String,
    },
    /// Authentication failed: no usable challenge, token endpoint refused, or still 401 with
    /// credentials.
    #[error("authenticating to {host}: {reason}")]
    Auth {
        /// The registry host.
        host: String,
        /// What went wrong, without secrets.
        reason: String,
    },
    /// A `Www-Authenticate` header that could not be understood.
    #[error("authenticating to {host}")]
    Challenge {
        /// The registry host.
        host: String,
        /// The parse error.
        #[source]
        source: ChallengeError,
    },
    /// Credentials could not be read from Docker's config or a credential helper.
    #[error("reading credentials for {host}")]
    Credentials {
        /// The registry host.
        host: String,
        /// Why.
        #[source]
        source: DockerConfigError,
    },
    /// An ECR authorization token could not be had, or a repository not looked up or created.
    #[error("ECR API for {host}")]
    EcrCredentials {
        /// The registry host.
        host: String,
        /// Why.
        #[source]
        source: Box<super::auth::ecr::EcrError>,
    },
    /// A Google access token could not be had.
    #[error("getting a Google access token for {host}")]
    GoogleCredentials {
        /// The registry host.
        host: String,
        /// Why.
        #[source]
        source: super::auth::google::GoogleError,
    },
    /// Content whose sha256 is not the digest it was asked for (or announced).
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// What was read.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// An answer that could not be read whole: cut off, larger than its kind may be (a
    /// manifest over 4 MiB), or not the JSON expected.
    #[error("{what}")]
    Body {
        /// The request.
        what: String,
        /// Why.
        #[source]
        source: crate::http::BodyError,
    },
    /// A registry reached over https named a plain-http URL to go on with (an upload
    /// `Location`, a `Link`).
    #[error("{what}: the registry names the plain-http URL {url}; refusing to leave https")]
    Insecure {
        /// The request answered.
        what: String,
        /// The URL named.
        url: String,
    },
    /// A `tags/list` whose pages do not end: a page names itself or an earlier one, or there
    /// are more pages than any registry holds.
    #[error("{what}: {reason}")]
    Pagination {
        /// The request of the last page.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A response missing a header the protocol requires (e.g. `Location` after starting an
    /// upload).
    #[error("{what}: the registry's answer has no {header} header")]
    MissingHeader {
        /// The request.
        what: String,
        /// The header.
        header: &'static str,
    },
}

impl RegistryError {
    /// True when trying the same thing again later may succeed (network trouble, throttling,
    /// server errors); false for answers that will not change (404, 403, bad digest).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Body { source, .. } => source.is_retryable(),
            RegistryError::Status { status, .. } => {
                crate::http::retry::is_retryable_status(*status)
            }
            RegistryError::Auth { .. }
            | RegistryError::Challenge { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::EcrCredentials { .. }
            | RegistryError::GoogleCredentials { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::Pagination { .. }
            | RegistryError::Insecure { .. }
            | RegistryError::MissingHeader { .. } => false,
        }
    }
}
