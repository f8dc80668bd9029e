//! What was observed of one unit, as values: the input of [`super::decide()`].
//!
//! Filled by the engine's reads (or, in tests, written out by hand); nothing here does IO.

use super::document::Descriptor;
use crate::reference::{CosignArtifact, Digest, Repository, Tag};
use crate::registry::Manifest;

/// Everything [`super::decide()`] needs to know about one unit.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Whether staging holds a valid signature by the required key (`None`: no key required).
    pub staging_signed: Option<bool>,
    /// The unit's policy checked against the staging digest (`None`: no policy).
    pub policy: Option<crate::manifest::policy::Report>,
    /// Each destination of the unit, in the unit's order.
    pub destinations: Vec<DestinationState>,
    /// The unit's manifest tree in staging, when a destination lacks the digest or a tag;
    /// `None` inside `Some` means staging does not have the digest.
    pub source: Option<Option<Tree>>,
    /// Staging's cosign artifacts of the digest, and what each destination has of them.
    pub artifacts: Vec<ArtifactState>,
    /// Staging's OCI referrers of the digest, and what each destination has of them.
    pub referrers: Option<ReferrersState>,
}

/// What one destination holds of the unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationState {
    /// The destination repository.
    pub repository: Repository,
    /// True when it holds the digest.
    pub present: bool,
    /// Each tag the unit gives the digest there, and the digest it points at now.
    pub tags: Vec<(Tag, Option<Digest>)>,
}

/// A manifest read from staging, and for an index, its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// The manifest, exact bytes.
    pub manifest: Manifest,
    /// For an index: each child, in the index's order.
    pub children: Vec<Child>,
}

/// A child of an index, and which destinations needing the index lack it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The child's digest.
    pub digest: Digest,
    /// Destinations (of those needing the index) that do not hold the child.
    pub lacking: Vec<Repository>,
    /// The child from staging, read when some destination lacks it (`None`: staging lacks it).
    pub tree: Option<Tree>,
}

/// A cosign artifact of the digest in staging and in each destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactState {
    /// Which artifact (`.sig`, `.att`, `.sbom`).
    pub kind: CosignArtifact,
    /// Staging's artifact manifest.
    pub staging: Manifest,
    /// Each destination: the digest its artifact tag points at, and for a signature image
    /// that differs from staging's, that image (to merge into).
    pub at: Vec<(Repository, Option<Digest>, Option<Manifest>)>,
}

/// Staging's referrers of the digest, and what each destination has of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrersState {
    /// Staging's referrers index (from its referrers API or its fallback tag).
    pub index: Manifest,
    /// Each referrer the index lists.
    pub referrers: Vec<Referrer>,
    /// Each destination and the index its fallback tag holds now.
    pub at: Vec<(Repository, Option<Manifest>)>,
}

/// One referrer: which destinations lack it, and its tree in staging when one does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// How the index lists it.
    pub descriptor: Descriptor,
    /// Destinations that do not hold it.
    pub lacking: Vec<Repository>,
    /// The referrer from staging, read when a destination lacks it (`None`: staging lacks it).
    pub tree: Option<Tree>,
}
