//! Promotion manifests: the model, loading from disk, and validation.
//!
//! Two layouts are read, both compatible with the Kubernetes image promoter:
//!
//! - a **plain manifest**: one YAML file with `registries:` (exactly one `src: true`) and
//!   `images:` (each a `name` and a `dmap` of digest → tags);
//! - a **thin-manifest tree**: `DIR/manifests/<project>/promoter-manifest.yaml` holds only
//!   `registries:` (tightly owned), and `DIR/images/<project>/images.yaml` holds the list of images
//!   (owned by the project), so a change to `images.yaml` alone cannot change where images go.
//!
//! [`load`] reads every path it is given and returns the manifests together with *every* problem
//! found, as [`Diagnostic`]s sorted by file and line; `check` adds the rules that span several
//! manifests (two manifests sending different digests to one `repository:tag`).
//!
//! Manifests come from pull requests, so the readers expect hostile files: only regular files
//! inside the tree named are read (no FIFO, device, loop or link out of the tree), each at most
//! [`MAX_FILE_BYTES`], nested at most [`yaml::MAX_DEPTH`] levels, without YAML tags; repeated
//! entries are found in time linear in their number; diagnostics quote at most a few hundred
//! characters of any value.

mod check;
mod decode;
mod diagnostic;
pub mod edit;
mod fields;
mod load;
pub mod policy;
mod read;
mod seen;
mod walk;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

use crate::reference::{Digest, ImageName, RegistryName, Tag};
pub use check::destination_index;
pub use diagnostic::{Diagnostic, FileDiagnostics, Severity, has_errors, sort};
pub use load::{LoadError, Loaded, load};
pub use read::MAX_FILE_BYTES;
use yaml::Pos;

/// One project's promotion manifest: where its images come from and go to, and which images.
#[derive(Debug, Clone)]
pub struct PromotionManifest {
    /// The project's name: the thin-manifest folder name, or the file's path for a plain one.
    pub project: String,
    /// The file holding `registries:`.
    pub registries_file: Arc<Path>,
    /// The file holding the images (the same file for a plain manifest).
    pub images_file: Arc<Path>,
    /// Every registry, source and destinations, in file order.
    pub registries: Vec<Registry>,
    /// Every image, in file order.
    pub images: Vec<Image>,
    /// The project's promotion policy, if it has one (see [`policy`]).
    pub policy: Option<Arc<policy::Policy>>,
}

/// A registry entry of a manifest.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The registry name (host and path prefix).
    pub name: RegistryName,
    /// True for the staging registry images are copied from.
    pub src: bool,
    /// The service account the Kubernetes promoter used for this registry (kept, unused).
    pub service_account: Option<String>,
    /// Where the entry is, in [`PromotionManifest::registries_file`].
    pub pos: Pos,
}

/// An image entry: a repository path and the digests to promote, each with its tags.
#[derive(Debug, Clone)]
pub struct Image {
    /// The path below each registry name.
    pub name: ImageName,
    /// Where the entry is, in [`PromotionManifest::images_file`].
    pub pos: Pos,
    /// The digests to promote, in file order.
    pub digests: Vec<DigestEntry>,
}

/// One `dmap` entry: a digest and the tags it should carry in every destination.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    /// The digest.
    pub digest: Digest,
    /// Its tags (possibly none), sorted, shared by every destination.
    pub tags: Arc<[Tag]>,
    /// Where the entry is, in [`PromotionManifest::images_file`].
    pub pos: Pos,
}

impl PromotionManifest {
    /// The source registry, if exactly one is marked `src: true`.
    pub fn source(&self) -> Option<&Registry> {
        let mut sources = self.registries.iter().filter(|r| r.src);
        match (sources.next(), sources.next()) {
            (Some(source), None) => Some(source),
            _ => None,
        }
    }

    /// The destination registries (every registry but the source).
    pub fn destinations(&self) -> impl Iterator<Item = &Registry> {
        self.registries.iter().filter(|r| !r.src)
    }
}
