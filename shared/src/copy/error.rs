//! Why a unit could not be promoted.

use crate::reference::{Digest, Repository, Tag};
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
        repository: Repository,
        /// The digest.
        digest: Digest,
    },
    /// A destination tag already points at another digest; tags are never moved.
    #[error(
        "tag move refused: {repository}:{tag} points at {current}, the manifest asks for {wanted} (tags are never moved)"
    )]
    TagMove {
        /// The destination repository.
        repository: Repository,
        /// The tag.
        tag: Tag,
        /// The digest it points at now.
        current: Digest,
        /// The digest the manifest gives it.
        wanted: Digest,
    },
    /// A staging blob whose bytes do not match its digest.
    #[error(
        "corrupt source blob: content has digest {actual}, expected {expected}; nothing was committed"
    )]
    BlobDigestMismatch {
        /// The digest the manifest names.
        expected: Digest,
        /// The digest of the bytes read.
        actual: Digest,
    },
    /// A staging blob whose size is not the one its manifest declares.
    #[error(
        "corrupt source blob {digest}: {actual} bytes, the manifest says {expected}; nothing was committed"
    )]
    BlobSizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the manifest declares.
        expected: u64,
        /// The bytes read (so far, when too many).
        actual: u64,
    },
    /// Reading a staging blob failed midway.
    #[error("reading source blob {digest}: {reason}")]
    SourceRead {
        /// The blob.
        digest: Digest,
        /// The transport error.
        reason: String,
    },
    /// A manifest that cannot be copied.
    #[error("manifest {digest}")]
    Document {
        /// The manifest.
        digest: Digest,
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
        repository: Repository,
        /// The digest.
        digest: Digest,
    },
    /// The project's policy has a `require` rule the staging digest fails.
    #[error("refused by policy: {repository}@{digest}: {summary}; nothing was promoted")]
    Policy {
        /// The source repository.
        repository: Repository,
        /// The digest.
        digest: Digest,
        /// The failed rules and why.
        summary: String,
    },
    /// Reading staging's signatures or attestations (to check the policy) failed.
    #[error("reading staging's signatures or attestations")]
    StagingSignatures(#[from] crate::sign::SignError),
}

impl CopyError {
    /// True when a later try may succeed (network, throttling, server errors, a broken
    /// download); false for tag moves, missing or corrupt sources and bad manifests.
    pub fn is_retryable(&self) -> bool {
        match self {
            CopyError::Registry(e) => e.is_retryable() || is_blob_unknown_race(e),
            CopyError::SourceRead { .. } => true,
            CopyError::StagingSignatures(e) => e.is_retryable(),
            CopyError::SourceMissing { .. }
            | CopyError::TagMove { .. }
            | CopyError::BlobDigestMismatch { .. }
            | CopyError::BlobSizeMismatch { .. }
            | CopyError::Document { .. }
            | CopyError::Unsigned { .. }
            | CopyError::Policy { .. } => false,
        }
    }
}

impl CopyError {
    /// Retryable, and not a request that timed out after the client's own retries: what the
    /// engine tries again at once (a timed-out registry is left to the queue's redelivery).
    pub fn is_worth_retrying_now(&self) -> bool {
        let timed_out = match self {
            CopyError::Registry(RegistryError::Transport { source, .. }) => source.is_timeout(),
            CopyError::Registry(RegistryError::Body {
                source: crate::http::BodyError::Read(source),
                ..
            }) => source.is_timeout(),
            _ => false,
        };
        self.is_retryable() && !timed_out
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
