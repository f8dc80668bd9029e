//! Errors of the auditor, each saying whether judging the event again later may succeed.

use crate::reference::RepositoryError;
use crate::registry::RegistryError;

/// An event that could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The event's repository is not `HOST/PATH`, so the registry cannot be asked.
    #[error("the event's repository cannot be read")]
    Repository(#[source] RepositoryError),
    /// Reading production failed (after the client's own retries); the registry's error
    /// names the request.
    #[error("reading production to judge the event")]
    Registry(#[source] RegistryError),
}

impl AuditError {
    /// True when judging the same event again later may succeed (network trouble,
    /// throttling, server errors); false when the answer will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            AuditError::Repository(_) => false,
            AuditError::Registry(source) => source.is_retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_when_the_registry_says_so() {
        let bad = AuditError::Repository(RepositoryError::NotHostAndPath("app".into()));
        assert!(!bad.is_retryable());
        let throttled = AuditError::Registry(RegistryError::Status {
            what: "GET".into(),
            status: reqwest::StatusCode::TOO_MANY_REQUESTS,
            detail: String::new(),
        });
        assert!(throttled.is_retryable());
        let missing_header = AuditError::Registry(RegistryError::MissingHeader {
            what: "GET".into(),
            header: "Location",
        });
        assert!(!missing_header.is_retryable());
        let source = std::error::Error::source(&throttled).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("GET: 429 Too Many Requests"));
    }
}
