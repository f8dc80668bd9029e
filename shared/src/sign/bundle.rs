//! Sigstore bundles (v0.3) holding a DSSE envelope signed by a key, as cosign 3 writes them.
//!
//! A key-signed bundle carries no certificate and, when no transparency log is used (the
//! promoter logs nothing publicly), no log entry: its verification material is the key's hint
//! alone, the base64 SHA-256 of the key's SubjectPublicKeyInfo DER, as sigstore-go computes it
//! for a key pair. A verifier is given the public key out of band, as with `cosign verify
//! --key`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::intoto::{Envelope, Statement};
use super::keys::VerifyingKey;

/// Media type of a sigstore bundle v0.3 (the bundle's own `mediaType`, the referrer's
/// `artifactType` and its layer's media type).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Older bundle media types a reader still accepts.
const OLDER_BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

/// A sigstore bundle, with the fields the promoter writes and reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_MEDIA_TYPE`].
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// How to verify it.
    #[serde(rename = "verificationMaterial")]
    pub verification_material: VerificationMaterial,
    /// The signed envelope (absent in a bundle holding a bare message signature).
    #[serde(
        rename = "dsseEnvelope",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dsse_envelope: Option<Envelope>,
    /// A bare message signature (`cosign sign-blob`); read only to say it is one.
    #[serde(
        rename = "messageSignature",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_signature: Option<serde_json::Value>,
}

/// A bundle's verification material.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationMaterial {
    /// The key's hint, for a key-signed bundle.
    #[serde(rename = "publicKey", default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyHint>,
    /// A certificate, for a keyless bundle (kept, not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<serde_json::Value>,
    /// Transparency log entries (none in what the promoter writes).
    #[serde(rename = "tlogEntries", default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<serde_json::Value>,
}

/// Names the key that signed a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    /// The hint.
    pub hint: String,
}

/// The hint of `key`: base64 (standard, padded) of the SHA-256 of its SubjectPublicKeyInfo DER.
pub fn key_hint(key: &VerifyingKey) -> String {
    STANDARD.encode(sha2::Sha256::digest(key.spki_der()))
}

/// Why bytes are not a bundle the promoter can check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of a bundle.
    #[error("not a sigstore bundle: {0}")]
    NotABundle(String),
    /// A media type this reader does not know.
    #[error("unknown bundle media type `{0}`")]
    UnknownMediaType(String),
    /// A bundle of a bare message signature, not of a DSSE envelope.
    #[error("the bundle holds a message signature, not a DSSE envelope")]
    MessageSignature,
    /// The signature does not verify with the key, or the payload is no in-toto statement.
    #[error("the bundle's envelope is not signed by the key (or holds no in-toto statement)")]
    NotSignedByKey,
}

impl Bundle {
    /// The bundle of `envelope`, signed by the key `key`.
    pub fn of_envelope(envelope: Envelope, key: &VerifyingKey) -> Self {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyHint {
                    hint: key_hint(key),
                }),
                certificate: None,
                tlog_entries: Vec::new(),
            },
            dsse_envelope: Some(envelope),
            message_signature: None,
        }
    }

    /// Parses `bytes` as a bundle of a known version.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let bundle: Bundle =
            serde_json::from_slice(bytes).map_err(|e| BundleError::NotABundle(e.to_string()))?;
        if bundle.media_type != BUNDLE_MEDIA_TYPE
            && !OLDER_BUNDLE_MEDIA_TYPES.contains(&bundle.media_type.as_str())
        {
            return Err(BundleError::UnknownMediaType(bundle.media_type));
        }
        Ok(bundle)
    }

    /// The statement the bundle's envelope carries, when `key` signed it.
    pub fn verified_statement(&self, key: &VerifyingKey) -> Result<Statement, BundleError> {
        let Some(envelope) = &self.dsse_envelope else {
            return Err(if self.message_signature.is_some() {
                BundleError::MessageSignature
            } else {
                BundleError::NotABundle("neither dsseEnvelope nor messageSignature".into())
            });
        };
        envelope
            .verified_statement(|message, signature| key.verifies(message, signature))
            .ok_or(BundleError::NotSignedByKey)
    }

    /// The bundle as the JSON stored in the referrer's layer.
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}
