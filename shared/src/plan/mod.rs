//! The promotion plan: what to copy where, computed from manifests without any IO.
//!
//! A plan is a list of **units**, one per (source repository, digest), each with every
//! destination repository it goes to and the tags it gets there. A unit is what one
//! `copy-digest` invocation does: read the source once, write it to every destination.
//!
//! Given the manifests *before* a change (`base`), the plan holds only what the change adds
//! (new digests, and new tags on digests already promoted), and lists what the change removes:
//! the promoter never deletes from production, so removals are refused unless allowed.
//!
//! [`build`] computes a plan; [`incremental`] keeps of it what is not promoted yet; [`render`]
//! prints it as text, JSON or Markdown.

mod build;
mod desired;
pub mod incremental;
pub mod render;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub use build::{build, removal_diagnostics, unit_id};
pub use desired::Desired;

use crate::manifest::policy::Policy;
use crate::manifest::yaml::Pos;
use crate::reference::{Digest, ImageName, Repository, Tag};

/// What to promote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// One per (source repository, digest), sorted by source then digest.
    pub units: Vec<Unit>,
    /// What the base promoted and the change no longer asks for (only with a base).
    pub removals: Vec<Removal>,
    /// Per project, what the change adds (for people: the Markdown summary).
    #[serde(skip)]
    pub projects: Vec<ProjectChanges>,
    /// New staging digests checked against their project's policy (by the presubmit, which
    /// reads staging; empty when nothing was checked).
    #[serde(skip)]
    pub checked: Vec<Checked>,
}

/// A staging digest checked against its project's policy.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The staging repository.
    pub source: Repository,
    /// The digest.
    pub digest: Digest,
    /// What each rule found.
    pub report: crate::manifest::policy::Report,
}

impl Plan {
    /// The units whose digest is new to a destination and whose project has a policy that is
    /// not `off`: what the presubmit checks in staging.
    pub fn units_to_check(&self) -> impl Iterator<Item = &Unit> {
        let new: std::collections::HashSet<(&Repository, &Digest)> = self
            .projects
            .iter()
            .flat_map(|p| &p.images)
            .filter(|c| c.new_digest)
            .map(|c| (&c.source, &c.digest))
            .collect();
        self.units.iter().filter(move |u| {
            u.policies.iter().any(|p| !p.is_off()) && new.contains(&(&u.source, &u.digest))
        })
    }

    /// The check of `source@digest`, if it was checked.
    pub fn check_of(&self, source: &Repository, digest: &Digest) -> Option<&Checked> {
        self.checked
            .iter()
            .find(|c| c.source == *source && c.digest == *digest)
    }

    /// True when a checked digest fails a `require` rule.
    pub fn policy_refuses(&self) -> bool {
        self.checked.iter().any(|c| c.report.refuses())
    }
}

/// One source digest and everywhere it goes.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Unit {
    /// A stable identifier: the first 16 hex digits of sha256(`SOURCE@DIGEST`).
    pub id: String,
    /// The source repository, e.g. `gcr.io/k8s-staging-coredns/coredns`.
    pub source: Repository,
    /// The digest to copy.
    pub digest: Digest,
    /// Every destination repository, sorted, with the tags to set there.
    pub destinations: Vec<Destination>,
    /// The policies of the projects promoting this digest (usually one; none: nothing is
    /// checked), each checked against the staging digest before anything is written: a unit
    /// two projects share must pass both, so one project cannot lower another's bar.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Arc<Policy>>,
}

/// One destination of a unit.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Destination {
    /// The destination repository, e.g. `us.gcr.io/k8s-artifacts-prod/coredns/coredns`.
    pub repository: Repository,
    /// The tags to point at the digest there (only the new ones, when planned against a base).
    pub tags: Arc<[Tag]>,
}

/// Something the base manifests promoted that the change no longer lists.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// The destination repository.
    pub repository: Repository,
    /// The digest.
    pub digest: Digest,
    /// True when the digest itself is gone from the repository's manifests (else only tags).
    pub digest_removed: bool,
    /// The tags no longer listed.
    pub tags: Vec<Tag>,
    /// The base file that listed it.
    #[serde(skip)]
    pub file: Arc<Path>,
    /// Where in that file.
    #[serde(skip)]
    pub pos: Pos,
}

/// What a change adds to one project.
#[derive(Debug, Clone)]
pub struct ProjectChanges {
    /// The project (thin-manifest folder name, or the manifest file).
    pub project: String,
    /// Its number of destination registries.
    pub destinations: usize,
    /// Each digest that gains something in at least one destination.
    pub images: Vec<ImageChange>,
}

/// One digest of one image that the change promotes (or tags anew).
#[derive(Debug, Clone)]
pub struct ImageChange {
    /// The image name (below the registries).
    pub image: ImageName,
    /// The staging repository it is promoted from.
    pub source: Repository,
    /// The digest.
    pub digest: Digest,
    /// Tags added anywhere.
    pub tags: Vec<Tag>,
    /// How many destinations gain the digest or a tag.
    pub destinations: usize,
    /// False when every destination already had the digest (a retag only).
    pub new_digest: bool,
}

/// Counts, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Units (source digests).
    pub units: usize,
    /// (unit, destination) pairs: digest copies into a repository.
    pub edges: usize,
    /// (unit, destination, tag) triples: tags to set.
    pub tags: usize,
    /// Distinct destination repositories.
    pub repositories: usize,
    /// Removals (with `--allow-removal`).
    pub removals: usize,
}

impl Plan {
    /// Counts units, edges, tags and repositories.
    pub fn summary(&self) -> Summary {
        let mut repositories = std::collections::HashSet::new();
        let mut summary = Summary {
            units: self.units.len(),
            removals: self.removals.len(),
            ..Summary::default()
        };
        for unit in &self.units {
            summary.edges += unit.destinations.len();
            for d in &unit.destinations {
                summary.tags += d.tags.len();
                repositories.insert(&d.repository);
            }
        }
        summary.repositories = repositories.len();
        summary
    }

    /// True when there is nothing to copy, tag or remove.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.removals.is_empty()
    }
}
