//! What names a manifest in a repository: a tag or a digest.

use std::fmt;
use std::str::FromStr;

use super::{Digest, DigestError, Repository, RepositoryError, Tag, TagError};

/// A manifest's name in a repository, as the distribution API's `/v2/NAME/manifests/REFERENCE`
/// takes it: a tag (`v1.2.0`) or a digest (`sha256:…`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// A tag, which can move.
    Tag(Tag),
    /// A digest, which names exact bytes.
    Digest(Digest),
}

/// Why a string is neither a tag nor a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// It has an algorithm prefix, but is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// It is not a valid tag.
    #[error(transparent)]
    Tag(#[from] TagError),
}

impl Reference {
    /// The reference as the API's URLs spell it.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(tag) => tag.as_str(),
            Reference::Digest(digest) => digest.as_str(),
        }
    }

    /// The digest, when the reference is one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(_) => None,
        }
    }
}

/// A manifest in a repository, as people write it: `HOST/PATH:TAG`, `HOST/PATH@DIGEST`, or
/// `HOST/PATH` (tag `latest`, as docker, crane and skopeo take it). With both a tag and a
/// digest (`HOST/PATH:TAG@DIGEST`), the digest decides, as for docker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The repository.
    pub repository: Repository,
    /// The tag or digest in it.
    pub reference: Reference,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageReferenceError {
    /// The repository part.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The tag or digest part.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

impl FromStr for ImageReference {
    type Err = ImageReferenceError;

    fn from_str(image: &str) -> Result<Self, Self::Err> {
        if let Some((name, digest)) = image.split_once('@') {
            let slash = name.rfind('/').unwrap_or(0);
            let name = match name[slash..].rfind(':') {
                Some(colon) => &name[..slash + colon],
                None => name,
            };
            return Ok(ImageReference {
                repository: name.parse()?,
                reference: Reference::Digest(digest.parse().map_err(ReferenceError::from)?),
            });
        }
        let slash = image.rfind('/').unwrap_or(0);
        let (name, tag) = match image[slash..].rfind(':') {
            Some(colon) => (&image[..slash + colon], &image[slash + colon + 1..]),
            None => (image, "latest"),
        };
        Ok(ImageReference {
            repository: name.parse()?,
            reference: Reference::Tag(tag.parse().map_err(ReferenceError::from)?),
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}:{tag}", self.repository),
            Reference::Digest(digest) => write!(f, "{}@{digest}", self.repository),
        }
    }
}

impl From<Tag> for Reference {
    fn from(tag: Tag) -> Self {
        Reference::Tag(tag)
    }
}

impl From<Digest> for Reference {
    fn from(digest: Digest) -> Self {
        Reference::Digest(digest)
    }
}

impl From<&Tag> for Reference {
    fn from(tag: &Tag) -> Self {
        Reference::Tag(tag.clone())
    }
}

impl From<&Digest> for Reference {
    fn from(digest: &Digest) -> Self {
        Reference::Digest(digest.clone())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// A digest when it has a `:` (tags never do), else a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_references_like_docker() {
        let digest = format!("sha256:{}", "b".repeat(64));
        for (text, repository, reference) in [
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b", "v1"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b", "latest"),
            (&*format!("gcr.io/x@{digest}"), "gcr.io/x", &*digest),
            (&*format!("gcr.io/x:v2@{digest}"), "gcr.io/x", &*digest),
        ] {
            let parsed: ImageReference = text.parse().expect(text);
            assert_eq!(parsed.repository.as_str(), repository, "{text}");
            assert_eq!(parsed.reference.as_str(), reference, "{text}");
        }
        for bad in ["gcr.io", "gcr.io/x:.bad", "gcr.io/x@sha256:abc", "x/y:v1"] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_tags_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(digest.parse(), Ok(Reference::Digest(_))));
        assert!(matches!("v1.2.0".parse(), Ok(Reference::Tag(_))));
        assert!(matches!(
            "sha256:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            ".bad".parse::<Reference>(),
            Err(ReferenceError::Tag(_))
        ));
    }
}
