//! Image references: digests, tags, registry names, repositories and references to a manifest.
//!
//! These types are the currency of the whole crate: the planner, the registry client, the copy
//! engine, signing and audit take and return them; strings appear only at the edges (parsing
//! input, printing output).
//!
//! Everything here is pure parsing and validation, following the OCI distribution
//! specification's grammar. The types are newtypes over `String` that can only be built from a
//! valid value, so code holding a [`Digest`] or a [`Tag`] never re-checks it.

mod digest;
mod name;
mod repository;
mod tag;
mod tag_or_digest;

pub use digest::{CosignArtifact, Digest, DigestError};
pub use name::{ImageName, MAX_REPOSITORY_LEN, NameError, RegistryName};
pub use repository::{Repository, RepositoryError};
pub use tag::{Tag, TagError};
pub use tag_or_digest::{ImageReference, ImageReferenceError, Reference, ReferenceError};

/// Comparisons with text, so that a typed name can be checked against what a registry or a
/// person wrote (`digest == "sha256:…"`) without converting either.
macro_rules! compares_with_text {
    ($($name:ty),*) => {$(
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }
    )*};
}

compares_with_text!(Digest, Tag, Repository, ImageName, RegistryName);
