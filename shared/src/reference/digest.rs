//! Content digests (`sha256:` followed by 64 lowercase hex digits).

use std::fmt;
use std::str::FromStr;

/// The only digest algorithm the promoter accepts, as the manifests name it.
const ALGORITHM: &str = "sha256:";
/// Number of hex digits in a sha256 digest.
const HEX_LEN: usize = 64;

/// A validated content digest such as `sha256:0c58…`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Digest(String);

impl From<Digest> for String {
    fn from(value: Digest) -> String {
        value.0
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// The artifacts cosign attaches to a digest under a tag derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CosignArtifact {
    /// Signatures (`.sig`).
    Signature,
    /// Attestations (`.att`).
    Attestation,
    /// Software bills of materials (`.sbom`).
    Sbom,
}

impl CosignArtifact {
    /// Every kind, in the order they are carried.
    pub const ALL: [CosignArtifact; 3] = [
        CosignArtifact::Signature,
        CosignArtifact::Attestation,
        CosignArtifact::Sbom,
    ];

    /// The tag suffix, without its dot.
    pub fn suffix(self) -> &'static str {
        match self {
            CosignArtifact::Signature => "sig",
            CosignArtifact::Attestation => "att",
            CosignArtifact::Sbom => "sbom",
        }
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The algorithm prefix is missing or is not `sha256:`.
    #[error("a digest starts with `sha256:`")]
    Algorithm,
    /// The hex part does not have exactly 64 characters.
    #[error("a sha256 digest has 64 hex digits after `sha256:`, this one has {0}")]
    Length(usize),
    /// The hex part has a character outside `0-9a-f` (upper case included).
    #[error("a digest's hex part uses only 0-9 and lowercase a-f")]
    NotLowerHex,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(&sha2::Sha256::digest(bytes).into())
    }

    /// The digest whose hash is `hash` (a finished sha256).
    pub fn from_sha256(hash: &[u8; 32]) -> Digest {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(ALGORITHM.len() + HEX_LEN);
        out.push_str(ALGORITHM);
        for byte in hash {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
        Digest(out)
    }

    /// The OCI referrers fallback tag of the digest, `sha256-<hex>`, for registries without
    /// the referrers API.
    pub fn referrers_tag(&self) -> super::Tag {
        super::Tag::known_valid(format!("sha256-{}", self.hex()))
    }

    /// The tag of a cosign artifact of the digest, `sha256-<hex>.sig` (`.att`, `.sbom`).
    pub fn cosign_tag(&self, artifact: CosignArtifact) -> super::Tag {
        super::Tag::known_valid(format!("sha256-{}.{}", self.hex(), artifact.suffix()))
    }

    /// The digest as text, e.g. `sha256:0c58…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0[ALGORITHM.len()..]
    }

    /// A short form for people: `sha256:` and the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.0[..ALGORITHM.len() + 12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix(ALGORITHM).ok_or(DigestError::Algorithm)?;
        let chars = hex.chars().count();
        if chars != HEX_LEN {
            return Err(DigestError::Length(chars));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::NotLowerHex);
        }
        Ok(Digest(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn computes_and_derives_tags() {
        let digest = Digest::of(b"");
        assert_eq!(
            digest.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let hex = digest.hex();
        assert_eq!(digest.referrers_tag().as_str(), format!("sha256-{hex}"));
        assert_eq!(
            digest.cosign_tag(CosignArtifact::Signature).as_str(),
            format!("sha256-{hex}.sig")
        );
        for artifact in CosignArtifact::ALL {
            let tag = digest.cosign_tag(artifact);
            assert_eq!(tag.as_str().parse::<super::super::Tag>(), Ok(tag.clone()));
        }
    }

    #[test]
    fn rejects_wrong_algorithm_length_and_case() {
        let hex = "a".repeat(64);
        assert_eq!(
            format!("sha512:{hex}").parse::<Digest>(),
            Err(DigestError::Algorithm)
        );
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::Length(3)));
        assert_eq!(
            format!("sha256:{}", "A".repeat(64)).parse::<Digest>(),
            Err(DigestError::NotLowerHex)
        );
    }

    proptest! {
        #[test]
        fn accepts_every_lowercase_hex_digest(hex in "[0-9a-f]{64}") {
            let text = format!("sha256:{hex}");
            let digest: Digest = text.parse().expect("valid digest");
            prop_assert_eq!(digest.as_str(), text.as_str());
            prop_assert_eq!(digest.hex(), hex.as_str());
        }

        #[test]
        fn rejects_any_other_length(hex in "[0-9a-f]{0,100}") {
            prop_assume!(hex.len() != 64);
            prop_assert_eq!(
                format!("sha256:{hex}").parse::<Digest>(),
                Err(DigestError::Length(hex.len()))
            );
        }

        #[test]
        fn rejects_any_non_hex_character(
            prefix in "[0-9a-f]{0,63}",
            bad in "[^0-9a-f]",
        ) {
            let mut hex = format!("{prefix}{bad}");
            while hex.chars().count() < 64 {
                hex.push('0');
            }
            prop_assume!(hex.chars().count() == 64);
            let parsed = format!("sha256:{hex}").parse::<Digest>();
            prop_assert!(parsed.is_err());
        }
    }
}
