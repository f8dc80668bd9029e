//! The parts of a manifest the copier needs: which blobs an image references and which
//! manifests an index lists.
//!
//! Deliberately tolerant minimal serde structs rather than `oci-spec`'s full types: the copier
//! never re-serializes a manifest (bytes are copied exactly), and must accept every variant
//! registries serve (Docker schema 2 and lists, OCI manifests without `mediaType`, artifacts
//! with unknown fields), where strict types would refuse some.

use serde::Deserialize;

use crate::reference::Digest;
use crate::registry::media_type;

/// A content descriptor: what a manifest points at.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// The target's media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The target's digest.
    pub digest: Digest,
    /// The target's size in bytes.
    pub size: u64,
    /// External URLs of a foreign layer (not stored in registries).
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest is, for copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    /// An image: its blobs (config first, then layers), foreign layers left out.
    Image {
        /// Blobs to copy.
        blobs: Vec<Descriptor>,
    },
    /// An index (multi-platform image): the manifests it lists.
    Index {
        /// Child manifests, to copy before the index.
        children: Vec<Descriptor>,
    },
}

/// Why a manifest cannot be copied.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON of the expected shape.
    #[error("the manifest is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// JSON of the right shape whose content is not what it must be.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Neither an image (config + layers) nor an index (manifests).
    #[error(
        "unsupported manifest type `{0}` (only OCI and Docker schema 2 images and indexes are promoted)"
    )]
    Unsupported(String),
}

/// Layers that registries do not store (Windows base layers): their `urls` point elsewhere.
fn is_foreign(descriptor: &Descriptor) -> bool {
    !descriptor.urls.is_empty()
        || descriptor.media_type.contains("foreign")
        || descriptor.media_type.contains("nondistributable")
}

/// Reads `bytes`, served with Content-Type `content_type`.
pub fn parse(content_type: &str, bytes: &[u8]) -> Result<Document, DocumentError> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(DocumentError::Json)?;
    let declared = raw.media_type.as_deref().unwrap_or(content_type);
    let is_index = matches!(declared, media_type::OCI_INDEX | media_type::DOCKER_LIST)
        || (raw.manifests.is_some() && raw.config.is_none());
    if is_index {
        return Ok(Document::Index {
            children: raw.manifests.unwrap_or_default(),
        });
    }
    match raw.config {
        Some(config) => {
            let layers = raw.layers.unwrap_or_default();
            let blobs = std::iter::once(config)
                .chain(layers)
                .filter(|d| !is_foreign(d))
                .collect();
            Ok(Document::Image { blobs })
        }
        None => Err(DocumentError::Unsupported(declared.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_images_indexes_and_manifests_without_media_type() {
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2},"layers":[{"mediaType":"l","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":3},{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":4,"urls":["https://x"]}]}"#;
        let Document::Image { blobs } = parse(media_type::OCI_MANIFEST, image).expect("image")
        else {
            panic!("an image")
        };
        let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(
            digests,
            [
                "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                "sha256:2222222222222222222222222222222222222222222222222222222222222222"
            ],
            "config, layer; foreign layer skipped"
        );

        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"m","digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","size":5,"platform":{"os":"linux"}}]}"#;
        assert!(
            matches!(parse("ignored", index), Ok(Document::Index { children }) if children.len() == 1)
        );

        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            parse(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                schema1
            ),
            Err(DocumentError::Unsupported(_))
        ));
    }
}
