//! Cosign's signature format: the simple-signing payload, and the signature image stored under
//! the tag `sha256-<hex>.sig` in the signed image's repository (one layer per signature, media
//! type `application/vnd.dev.cosign.simplesigning.v1+json`, the base64 signature in the layer's
//! `dev.cosignproject.cosign/signature` annotation).

use serde::{Deserialize, Serialize};

use crate::reference::{CosignArtifact, Digest, Tag};

/// Media type of a signature layer (the payload).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding a layer's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign signature payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The tag holding the signatures of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> Tag {
    digest.cosign_tag(CosignArtifact::Signature)
}

/// A signature image rebuilt with more layers: the manifest, and its config blob (which must
/// be in the repository before the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedSignatures {
    /// The new signature image.
    pub manifest: crate::registry::Manifest,
    /// Its config: digest and bytes.
    pub config: (Digest, bytes::Bytes),
}

/// `current` (a signature image in a destination) with the signature layers of `incoming`
/// (another signature image of the same digest, e.g. staging's) it lacks appended; `None` when
/// it lacks none. An error says why either is not a signature image.
pub fn merge_signature_images(
    current: &crate::registry::Manifest,
    incoming: &crate::registry::Manifest,
) -> Result<Option<MergedSignatures>, String> {
    let read = |m: &crate::registry::Manifest| {
        serde_json::from_slice::<SignatureManifest>(&m.bytes)
            .map_err(|e| format!("signature image {}: {e}", m.digest))
    };
    let mut layers = read(current)?.layers;
    let before = layers.len();
    for layer in read(incoming)?.layers {
        if !layers.contains(&layer) {
            layers.push(layer);
        }
    }
    if layers.len() == before {
        return Ok(None);
    }
    let (manifest, config) = manifest_for(&layers);
    let manifest = bytes::Bytes::from(manifest);
    Ok(Some(MergedSignatures {
        manifest: crate::registry::Manifest {
            media_type: crate::registry::media_type::OCI_MANIFEST.to_owned(),
            digest: Digest::of(&manifest),
            bytes: manifest,
        },
        config: (Digest::of(&config), bytes::Bytes::from(config)),
    }))
}

/// The simple-signing payload cosign signs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// What is signed.
    pub critical: Critical,
    /// Free-form annotations (the promoter's version, the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The signed claims.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    /// The image's name.
    pub identity: Identity,
    /// The image's digest.
    pub image: Image,
    /// Always [`SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The canonical public name of the repository (e.g. a vanity domain's).
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The signed manifest's digest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl Payload {
    /// The payload for `digest` under the name `reference`, with `optional` annotations.
    pub fn new(
        reference: &str,
        digest: &Digest,
        optional: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Payload {
            critical: Critical {
                identity: Identity {
                    docker_reference: reference.to_owned(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIGNATURE_TYPE.to_owned(),
            },
            optional: (!optional.is_empty()).then_some(optional),
        }
    }
}

/// One layer of a signature image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// [`PAYLOAD_MEDIA_TYPE`].
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The payload blob's size.
    pub size: u64,
    /// The payload blob's digest.
    pub digest: String,
    /// The signature (and possibly other signers' annotations).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A signature image's manifest, as far as signatures go.
#[derive(Clone, Debug, Deserialize)]
pub struct SignatureManifest {
    /// Its layers: one signature each.
    #[serde(default)]
    pub layers: Vec<Layer>,
}

/// The config blob of a signature image listing `layers` (cosign writes the same shape).
pub fn config_for(layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

/// The manifest of a signature image with `layers`, and its config blob.
pub fn manifest_for(layers: &[Layer]) -> (Vec<u8>, Vec<u8>) {
    let config = config_for(layers);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::registry::media_type::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": Digest::of(&config),
        },
        "layers": layers,
    });
    (serde_json::to_vec(&manifest).unwrap_or_default(), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_tag_are_shaped_like_cosigns() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32))
            .parse()
            .expect("a digest");
        assert_eq!(
            signature_tag(&digest).as_str(),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        let payload = Payload::new("registry.example/app", &digest, serde_json::Map::new());
        let json: serde_json::Value = serde_json::to_value(&payload).expect("json");
        assert_eq!(
            json["critical"]["identity"]["docker-reference"],
            "registry.example/app"
        );
        assert_eq!(
            json["critical"]["image"]["docker-manifest-digest"],
            digest.as_str()
        );
        assert_eq!(json["critical"]["type"], SIGNATURE_TYPE);
        assert!(json.get("optional").is_none());
    }
}
