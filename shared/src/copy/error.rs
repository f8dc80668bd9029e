//! Why a unit could not be promoted.

use crate::registry::RegistryError;

use super::document::DocumentError;

/// A unit that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The digest to promote is not in the source repository.
    #[error("source digest missing: {repository}@{digest} does not exist in staging")]
    SourceMissing {
        /// The source repository.
        repository: String,
        /// The digest.
        digest: String,
    },
    /// A destination tag already points at another digest; tags are never moved.
    #[error(
        "tag move refused: {repository}:{tag} points at {current}, the manifest asks for {wanted} (tags are never moved)"
    )]
    TagMove {
        /// The destination repository.
        repository: String,
        /// The tag.
        tag: String,
        /// The digest it points at now.
        current: String,
        /// The digest the manifest gives it.
        wanted: String,
    },
    /// A staging blob whose bytes do not match its digest.
    #[error(
        "corrupt source blob: content has digest {actual}, expected {expected}; nothing was committed"
    )]
    BlobDigestMismatch {
        /// The digest the manifest names.
        expected: String,
        /// The digest of the bytes read.
        actual: String,
    },
    /// A staging blob whose size is not the one its manifest declares.
    #[error(
        "corrupt source blob {digest}: {actual} bytes, the manifest says {expected}; nothing was committed"
    )]
    BlobSizeMismatch {
        /// The blob.
        digest: String,
        /// The size the manifest declares.
        expected: u64,
        /// The bytes read (so far, when too many).
        actual: u64,
    },
    /// Reading a staging blob failed midway.
    #[error("reading source blob {digest}: {reason}")]
    SourceRead {
        /// The blob.
        digest: String,
        /// The transport error.
        reason: String,
    },
    /// A manifest that cannot be copied.
    #[error("manifest {digest}")]
    Document {
        /// The manifest.
        digest: String,
        /// Why.
        #[source]
        source: DocumentError,
    },
    /// The promotion policy requires a maintainer's signature in staging, and there is none.
    #[error(
        "unsigned: {repository}@{digest} has no valid signature by the required key in staging; nothing was promoted"
    )]
    Unsigned {
        /// The source repository.
        repository: String,
        /// The digest.
        digest: String,
    },
    /// Asked to sign a digest a destination does not hold (it was never promoted there, or
    /// was deleted since).
    #[error("{repository} does not hold {digest}: nothing to sign")]
    NotPromoted {
        /// The destination repository.
        repository: String,
        /// The digest.
        digest: String,
    },
    /// Signing the promoted digest failed.
    #[error("signing")]
    Sign(#[from] crate::sign::SignError),
    /// A repository name that is not `HOST/PATH`.
    #[error(transparent)]
    Repository(#[from] crate::registry::RepositoryError),
}

impl CopyError {
    /// True when a later try may succeed (network, throttling, server errors, a broken
    /// download); false for tag moves, missing or corrupt sources and bad manifests.
    pub fn is_retryable(&self) -> bool {
        match self {
            CopyError::Registry(e) => e.is_retryable() || is_blob_unknown_race(e),
            CopyError::SourceRead { .. } => true,
            CopyError::Sign(crate::sign::SignError::Registry(e)) => e.is_retryable(),
            CopyError::Sign(_) => false,
            CopyError::SourceMissing { .. }
            | CopyError::TagMove { .. }
            | CopyError::BlobDigestMismatch { .. }
            | CopyError::BlobSizeMismatch { .. }
            | CopyError::Document { .. }
            | CopyError::Unsigned { .. }
            | CopyError::NotPromoted { .. }
            | CopyError::Repository(_) => false,
        }
    }
}

/// A manifest PUT refused with `MANIFEST_BLOB_UNKNOWN` although the engine placed every blob
/// first. CNCF distribution rewrites a repository's blob link when the blob is mounted there
/// again, and a manifest PUT checking that link at the same moment is refused; observed with
/// several units sharing a layer. The engine avoids redundant mounts within one process, but
/// another process (a second worker) can still race it, so such a refusal is retried: the retry
/// re-checks every blob and puts the manifest again.
fn is_blob_unknown_race(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::Status { what, status, detail }
            if *status == reqwest::StatusCode::BAD_REQUEST
                && what.starts_with("PUT ")
                && what.contains("/manifests/")
                && detail.contains("MANIFEST_BLOB_UNKNOWN")
    )
}
