//! Errors of the state store, each naming the store and the object.

/// A state operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state URL that names no backend.
    #[error("state URL `{url}`: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local-directory operation failed.
    #[error("state {path}")]
    Io {
        /// The file or folder.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bucket does not exist.
    #[error("state bucket `{bucket}` does not exist ({url})")]
    MissingBucket {
        /// The bucket.
        bucket: String,
        /// The store URL.
        url: String,
    },
    /// The store refused the credentials.
    #[error("state store {url} refused access to `{key}`: {reason}")]
    Denied {
        /// The store URL.
        url: String,
        /// The object.
        key: String,
        /// What the store said.
        reason: String,
    },
    /// Any other failure of a remote store's request.
    #[error("state store {url}: {operation} `{key}` failed: {reason}")]
    Remote {
        /// The store URL.
        url: String,
        /// GET, PUT, LIST or DELETE.
        operation: &'static str,
        /// The object (or prefix).
        key: String,
        /// What went wrong (status and message, or transport error), without secrets.
        reason: String,
    },
    /// A record that is not the JSON it should be (truncated, or written by something else).
    #[error("state record `{key}` in {url} is not a valid {expected}: {reason}")]
    Corrupt {
        /// The store URL.
        url: String,
        /// The object.
        key: String,
        /// The record type expected.
        expected: &'static str,
        /// The parse error.
        reason: String,
    },
    /// A conditional write lost to other writers every time it was tried.
    #[error("state record `{key}` in {url} kept changing under {attempts} conditional writes")]
    Contended {
        /// The store URL.
        url: String,
        /// The object.
        key: String,
        /// Writes tried.
        attempts: u32,
    },
}

impl StateError {
    /// True when the same operation may succeed later (a store that is down or throttling, a
    /// folder being written); false for what will not change by itself: a bad URL, a missing
    /// bucket, refused credentials, a corrupt record, or a file that is not a record.
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Remote { .. } | StateError::Contended { .. } => true,
            StateError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::Other
            ),
            StateError::BadUrl { .. }
            | StateError::MissingBucket { .. }
            | StateError::Denied { .. }
            | StateError::Corrupt { .. } => false,
        }
    }
}
