//! Image references: digests, tags, registry names and repository paths.
//!
//! Everything here is pure parsing and validation, following the OCI distribution
//! specification's grammar. The types are newtypes over `String` that can only be built from a
//! valid value, so code holding a [`Digest`] or a [`Tag`] never re-checks it.

mod digest;
mod name;
mod tag;

pub use digest::{Digest, DigestError};
pub use name::{ImageName, MAX_REPOSITORY_LEN, NameError, RegistryName};
pub use tag::{Tag, TagError};
