//! Deciding, without any IO, what promoting one unit takes.
//!
//! [`decide`] turns a unit and what was observed of it ([`Observed`], gathered by
//! the engine's observation) into an ordered list of [`Step`]s, or refuses the unit. The order is the
//! order of execution and of safety: an index's children before the index, an image's blobs
//! before its manifest, the digest before its tags, and the cosign artifacts and OCI referrers
//! of the digest last (carried from staging where the destination lacks them). The rules:
//!
//! - a staging digest without the required maintainer's signature is refused before anything
//!   is written;
//! - a destination tag that points at another digest is refused (tags are never moved);
//! - a destination holding the digest gets nothing but its missing tags;
//! - a staging signature image (`.sig`) is merged into a different one already there (both
//!   signers' signatures survive); any other different artifact already there is left alone;
//! - staging's referrers missing in a destination are copied by digest, and the destination's
//!   referrers fallback tag lists them (merged with what it already lists).

use bytes::Bytes;

use super::document::{self, Descriptor, Document};
use super::error::CopyError;
pub use super::observation::{
    ArtifactState, Child, DestinationState, Observed, Referrer, ReferrersState, Tree,
};
use crate::plan::Unit;
use crate::reference::{CosignArtifact, Digest, Repository, Tag};
use crate::registry::Manifest;
use crate::sign::cosign;

/// One thing to do to a destination, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The destination holds the digest already.
    Present {
        /// The destination.
        at: Repository,
    },
    /// Make every blob an image references present in each of `to` (mounted or streamed
    /// from `from`, each blob once per registry).
    CopyBlobs {
        /// The staging repository.
        from: Repository,
        /// The blobs (config and layers; foreign layers left out).
        blobs: Vec<Descriptor>,
        /// The repositories that need them.
        to: Vec<Repository>,
    },
    /// Write a manifest by its digest or, for the unit's manifest where it gets tags, under
    /// its first tag: one PUT stores the manifest and the tag (and one push event, not two).
    PutManifest {
        /// The manifest.
        manifest: Manifest,
        /// Where.
        to: Repository,
        /// The tag it is written under, if any (else by digest).
        tag: Option<Tag>,
    },
    /// Point one of the unit's tags at the unit's manifest.
    PutTag {
        /// The tag.
        tag: Tag,
        /// The manifest.
        manifest: Manifest,
        /// Where.
        to: Repository,
    },
    /// Write an artifact manifest under its tag (a cosign artifact, or the referrers fallback
    /// index), with the small blob it needs first when it is built here (a merged signature
    /// image's config).
    PutArtifact {
        /// The artifact tag.
        tag: Tag,
        /// The manifest.
        manifest: Manifest,
        /// A blob to upload first, unless present.
        blob: Option<(Digest, Bytes)>,
        /// Where.
        to: Repository,
    },
    /// A different artifact is already under the tag and is not merged: left alone.
    KeepArtifact {
        /// The artifact tag.
        tag: Tag,
        /// Where.
        at: Repository,
        /// What the tag points at there.
        current: Digest,
        /// Staging's artifact.
        staging: Digest,
    },
}

/// The steps that promote `unit`, given what was observed; or why the unit is refused.
pub fn decide(unit: &Unit, observed: &Observed) -> Result<Vec<Step>, CopyError> {
    if observed.staging_signed == Some(false) {
        return Err(CopyError::Unsigned {
            repository: unit.source.clone(),
            digest: unit.digest.clone(),
        });
    }
    if let Some(report) = observed.policy.as_ref().filter(|r| r.refuses()) {
        return Err(CopyError::Policy {
            repository: unit.source.clone(),
            digest: unit.digest.clone(),
            summary: report.summary(),
        });
    }
    refuse_tag_moves(unit, observed)?;
    let mut steps = Vec::new();
    let needing: Vec<Repository> = observed
        .destinations
        .iter()
        .filter(|d| !d.present)
        .map(|d| d.repository.clone())
        .collect();
    steps.extend(
        observed
            .destinations
            .iter()
            .filter(|d| d.present)
            .map(|d| Step::Present {
                at: d.repository.clone(),
            }),
    );
    let tags_missing = observed
        .destinations
        .iter()
        .any(|d| d.tags.iter().any(|(_, current)| current.is_none()));
    if !needing.is_empty() || tags_missing {
        let tree = match &observed.source {
            Some(Some(tree)) => tree,
            _ => {
                return Err(CopyError::SourceMissing {
                    repository: unit.source.clone(),
                    digest: unit.digest.clone(),
                });
            }
        };
        let first_tag = |repository: &Repository| {
            observed
                .destinations
                .iter()
                .find(|d| d.repository == *repository)
                .and_then(|d| d.tags.iter().find(|(_, c)| c.is_none()))
                .map(|(tag, _)| tag.clone())
        };
        copy_tree(&unit.source, tree, &needing, &first_tag, &mut steps)?;
        for destination in &observed.destinations {
            // Where the manifest is written, its first tag goes with it.
            let skip = usize::from(!destination.present);
            let missing = destination.tags.iter().filter(|(_, c)| c.is_none());
            for (tag, _) in missing.skip(skip) {
                steps.push(Step::PutTag {
                    tag: tag.clone(),
                    manifest: tree.manifest.clone(),
                    to: destination.repository.clone(),
                });
            }
        }
    }
    for artifact in &observed.artifacts {
        carry_artifact(&unit.source, &unit.digest, artifact, &mut steps)?;
    }
    if let Some(referrers) = &observed.referrers {
        carry_referrers(&unit.source, &unit.digest, referrers, &mut steps)?;
    }
    Ok(steps)
}

/// Refuses the unit when a destination tag points at another digest.
fn refuse_tag_moves(unit: &Unit, observed: &Observed) -> Result<(), CopyError> {
    for destination in &observed.destinations {
        for (tag, current) in &destination.tags {
            if let Some(current) = current
                && *current != unit.digest
            {
                return Err(CopyError::TagMove {
                    repository: destination.repository.clone(),
                    tag: tag.clone(),
                    current: current.clone(),
                    wanted: unit.digest.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Steps writing `tree` into each of `to`: an index's children first (each where it lacks,
/// by digest), or an image's blobs, then the manifest itself, under `tag_for` its repository
/// when that names a tag (else by digest).
fn copy_tree(
    source: &Repository,
    tree: &Tree,
    to: &[Repository],
    tag_for: &dyn Fn(&Repository) -> Option<Tag>,
    steps: &mut Vec<Step>,
) -> Result<(), CopyError> {
    if to.is_empty() {
        return Ok(());
    }
    match parse(&tree.manifest)? {
        Document::Index { .. } => {
            for child in &tree.children {
                if child.lacking.is_empty() {
                    continue;
                }
                let Some(child_tree) = &child.tree else {
                    return Err(CopyError::SourceMissing {
                        repository: source.clone(),
                        digest: child.digest.clone(),
                    });
                };
                copy_tree(source, child_tree, &child.lacking, &|_| None, steps)?;
            }
        }
        Document::Image { blobs } => {
            if !blobs.is_empty() {
                steps.push(Step::CopyBlobs {
                    from: source.clone(),
                    blobs,
                    to: to.to_vec(),
                });
            }
        }
    }
    steps.extend(to.iter().map(|repository| Step::PutManifest {
        manifest: tree.manifest.clone(),
        to: repository.clone(),
        tag: tag_for(repository),
    }));
    Ok(())
}

fn parse(manifest: &Manifest) -> Result<Document, CopyError> {
    document::parse(&manifest.media_type, &manifest.bytes).map_err(|source| CopyError::Document {
        digest: manifest.digest.clone(),
        source,
    })
}

/// Steps carrying one of staging's cosign artifacts to the destinations lacking it.
fn carry_artifact(
    source: &Repository,
    digest: &Digest,
    artifact: &ArtifactState,
    steps: &mut Vec<Step>,
) -> Result<(), CopyError> {
    let tag = digest.cosign_tag(artifact.kind);
    let staging = &artifact.staging;
    for (repository, current, current_manifest) in &artifact.at {
        match current {
            Some(current) if *current == staging.digest => {}
            None => {
                artifact_blobs(source, staging, repository, steps)?;
                steps.push(Step::PutArtifact {
                    tag: tag.clone(),
                    manifest: staging.clone(),
                    blob: None,
                    to: repository.clone(),
                });
            }
            Some(current) if artifact.kind == CosignArtifact::Signature => {
                let merged = current_manifest
                    .as_ref()
                    .map(|m| cosign::merge_signature_images(m, staging))
                    .transpose()
                    .map_err(|reason| CopyError::Document {
                        digest: current.clone(),
                        source: document::DocumentError::Malformed(reason),
                    })?
                    .flatten();
                if let Some(merged) = merged {
                    artifact_blobs(source, staging, repository, steps)?;
                    steps.push(Step::PutArtifact {
                        tag: tag.clone(),
                        manifest: merged.manifest,
                        blob: Some(merged.config),
                        to: repository.clone(),
                    });
                }
            }
            Some(current) => steps.push(Step::KeepArtifact {
                tag: tag.clone(),
                at: repository.clone(),
                current: current.clone(),
                staging: staging.digest.clone(),
            }),
        }
    }
    Ok(())
}

/// The blobs of an artifact image (staging's), to copy into `to` before its manifest.
fn artifact_blobs(
    source: &Repository,
    artifact: &Manifest,
    to: &Repository,
    steps: &mut Vec<Step>,
) -> Result<(), CopyError> {
    if let Document::Image { blobs } = parse(artifact)?
        && !blobs.is_empty()
    {
        steps.push(Step::CopyBlobs {
            from: source.clone(),
            blobs,
            to: vec![to.clone()],
        });
    }
    Ok(())
}

/// Steps copying staging's referrers to the destinations lacking them, and keeping each
/// destination's referrers fallback tag listing them.
fn carry_referrers(
    source: &Repository,
    digest: &Digest,
    state: &ReferrersState,
    steps: &mut Vec<Step>,
) -> Result<(), CopyError> {
    if state.referrers.is_empty() {
        return Ok(());
    }
    let tag = digest.referrers_tag();
    for (repository, current) in &state.at {
        for referrer in &state.referrers {
            if !referrer.lacking.contains(repository) {
                continue;
            }
            let Some(tree) = &referrer.tree else {
                return Err(CopyError::SourceMissing {
                    repository: source.clone(),
                    digest: referrer.descriptor.digest.clone(),
                });
            };
            copy_tree(
                source,
                tree,
                std::slice::from_ref(repository),
                &|_| None,
                steps,
            )?;
        }
        let listed = match current {
            None => Some(state.index.clone()),
            Some(current) if current.digest == state.index.digest => None,
            Some(current) => merge_indexes(current, &state.referrers),
        };
        if let Some(index) = listed {
            steps.push(Step::PutArtifact {
                tag: tag.clone(),
                manifest: index,
                blob: None,
                to: repository.clone(),
            });
        }
    }
    Ok(())
}

/// `current` (a referrers index) with the `referrers` it lacks appended; `None` when it lacks
/// none (or is not an index). The one merge of [`crate::sign::referrer::merged_index`].
pub fn merge_indexes(current: &Manifest, referrers: &[Referrer]) -> Option<Manifest> {
    let entries: Vec<serde_json::Value> = referrers
        .iter()
        .map(|r| {
            serde_json::json!({
                "mediaType": r.descriptor.media_type,
                "digest": r.descriptor.digest,
                "size": r.descriptor.size,
            })
        })
        .collect();
    crate::sign::referrer::merged_index(Some(current), &entries)
}
