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
    /// An ECR authorization token could not be had.
    #[error("getting an ECR token for {host}")]
    EcrCredentials {
        /// The registry host.
        host: String,
        /// Why.
        #[source]
        source: super::auth::ecr::EcrError,
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
            RegistryError::Status { status, .. } => super::retry::is_retryable_status(*status),
            RegistryError::Auth { .. }
            | RegistryError::Challenge { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::EcrCredentials { .. }
            | RegistryError::GoogleCredentials { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::MissingHeader { .. } => false,
        }
    }
}
