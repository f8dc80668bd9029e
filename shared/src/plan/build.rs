//! Building a plan from manifests (and the manifests before the change).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::desired::Desired;
use super::{Destination, ImageChange, Plan, ProjectChanges, Removal, Unit};
use crate::manifest::policy::Policy;
use crate::manifest::yaml::Pos;
use crate::manifest::{self, Diagnostic, FileDiagnostics, PromotionManifest};
use crate::reference::{Digest, Repository, Tag};

/// Computes the plan for `current`, or for what `current` adds to `base` when given.
///
/// The manifests must be valid (see [`manifest::Loaded::is_valid`]); a manifest without exactly
/// one source registry is skipped. With a base, [`Plan::removals`] lists what the change drops;
/// whether that is allowed is the caller's decision (see [`removal_diagnostics`]).
pub fn build(current: &[PromotionManifest], base: Option<&[PromotionManifest]>) -> Plan {
    let base_desired = base.map(Desired::new);
    let mut units = UnitsBuilder::default();
    let mut projects = Vec::new();
    for manifest in current {
        if let Some(changes) = plan_manifest(manifest, base_desired.as_ref(), &mut units) {
            projects.push(changes);
        }
    }
    let removals = match base {
        Some(base) => removals(base, &Desired::new(current)),
        None => Vec::new(),
    };
    Plan {
        units: units.finish(),
        removals,
        projects,
        checked: Vec::new(),
    }
}

/// Adds one manifest's edges to `units`; returns what it changes, if anything.
fn plan_manifest(
    manifest: &PromotionManifest,
    base: Option<&Desired<'_>>,
    units: &mut UnitsBuilder,
) -> Option<ProjectChanges> {
    let source = manifest.source()?;
    let destinations: Vec<_> = manifest.destinations().collect();
    let mut changes = ProjectChanges {
        project: manifest.project.clone(),
        destinations: destinations.len(),
        images: Vec::new(),
    };
    for image in &manifest.images {
        let source_repository = source.name.repository(&image.name);
        let repositories: Vec<Repository> = destinations
            .iter()
            .map(|r| r.name.repository(&image.name))
            .collect();
        for entry in &image.digests {
            let mut tags_added = BTreeSet::new();
            let mut new_digest = false;
            let mut added = Vec::with_capacity(repositories.len());
            for repository in &repositories {
                let Some((tags, is_new)) = to_add(base, repository, &entry.digest, &entry.tags)
                else {
                    continue;
                };
                tags_added.extend(tags.iter().cloned());
                new_digest |= is_new;
                let repository = repository.clone();
                added.push(Destination { repository, tags });
            }
            let count = added.len();
            units.add(&source_repository, &entry.digest, added, &manifest.policy);
            if count > 0 {
                changes.images.push(ImageChange {
                    image: image.name.clone(),
                    source: source_repository.clone(),
                    digest: entry.digest.clone(),
                    tags: tags_added.into_iter().collect(),
                    destinations: count,
                    new_digest,
                });
            }
        }
    }
    (!changes.images.is_empty()).then_some(changes)
}

/// What promoting `digest` with `tags` to `repository` adds to `base`: the tags to set, and
/// whether the digest itself is new there. `None` when the base already has it all.
fn to_add(
    base: Option<&Desired<'_>>,
    repository: &Repository,
    digest: &Digest,
    tags: &Arc<[Tag]>,
) -> Option<(Arc<[Tag]>, bool)> {
    let Some(had) = base.and_then(|b| b.tags(repository, digest)) else {
        return Some((Arc::clone(tags), true));
    };
    let new: Arc<[Tag]> = tags.iter().filter(|t| !had.contains(t)).cloned().collect();
    (!new.is_empty()).then_some((new, false))
}

/// Everything `base` sends somewhere that `current` no longer does.
fn removals(base: &[PromotionManifest], current: &Desired<'_>) -> Vec<Removal> {
    let mut out = Vec::new();
    for manifest in base {
        for registry in manifest.destinations() {
            for image in &manifest.images {
                let repository = registry.name.repository(&image.name);
                for entry in &image.digests {
                    let kept = current.tags(&repository, &entry.digest);
                    let digest_removed = kept.is_none();
                    let tags: Vec<Tag> = match &kept {
                        None => entry.tags.to_vec(),
                        Some(kept) => entry
                            .tags
                            .iter()
                            .filter(|t| !kept.contains(t))
                            .cloned()
                            .collect(),
                    };
                    if digest_removed || !tags.is_empty() {
                        out.push(Removal {
                            repository: repository.clone(),
                            digest: entry.digest.clone(),
                            digest_removed,
                            tags,
                            file: Arc::clone(&manifest.images_file),
                            pos: entry.pos,
                        });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.repository, &a.digest).cmp(&(&b.repository, &b.digest)));
    out
}

/// One error per removed manifest entry (not per destination), for refusing a plan that removes
/// what production already holds.
pub fn removal_diagnostics(removals: &[Removal]) -> Vec<Diagnostic> {
    let mut groups: BTreeMap<(&Path, Pos), Vec<&Removal>> = BTreeMap::new();
    for removal in removals {
        groups
            .entry((&removal.file, removal.pos))
            .or_default()
            .push(removal);
    }
    let mut out = Vec::new();
    for ((file, pos), group) in groups {
        let first = group[0];
        let what = if first.digest_removed {
            format!(
                "{}{}",
                first.digest.short(),
                tag_suffix(&first.tags, " (tags ", ")")
            )
        } else {
            format!(
                "{} of {}",
                tag_suffix(&first.tags, "tag ", ""),
                first.digest.short()
            )
        };
        let where_ = match group.len() {
            1 => format!("`{}`", first.repository),
            n => format!("{n} destinations (e.g. `{}`)", first.repository),
        };
        let msg = format!(
            "the change removes {what} from {where_}, which the base promoted; the promoter never deletes from production: keep the entry, or pass --allow-removal (production keeps the image either way)"
        );
        FileDiagnostics::new(Arc::from(file), &mut out).error(pos, msg);
    }
    manifest::sort(&mut out);
    out
}

fn tag_suffix(tags: &[Tag], before: &str, after: &str) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let list: Vec<String> = tags.iter().map(|t| format!("`{t}`")).collect();
    format!("{before}{}{after}", list.join(", "))
}

/// Destinations of one unit, and the policies of the manifests that name it.
type UnitParts = (Vec<Destination>, Vec<Arc<Policy>>);

/// Groups destinations into units by (source repository, digest).
#[derive(Default)]
struct UnitsBuilder {
    units: HashMap<(Repository, Digest), UnitParts>,
}

impl UnitsBuilder {
    /// Adds destinations to the unit of (`source`, `digest`), one lookup for them all, with
    /// the manifest's policy. Two manifests promoting one staging digest share the unit, and
    /// the unit carries both policies (each is checked).
    fn add(
        &mut self,
        source: &Repository,
        digest: &Digest,
        destinations: Vec<Destination>,
        policy: &Option<Arc<Policy>>,
    ) {
        if destinations.is_empty() {
            return;
        }
        match self.units.entry((source.clone(), digest.clone())) {
            Entry::Occupied(mut unit) => {
                let (known, policies) = unit.get_mut();
                known.extend(destinations);
                if let Some(policy) = policy
                    && !policies.iter().any(|p| p == policy)
                {
                    policies.push(Arc::clone(policy));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert((destinations, policy.iter().cloned().collect()));
            }
        }
    }

    /// Sorts everything and merges destinations that two manifests share.
    fn finish(self) -> Vec<Unit> {
        let mut units: Vec<Unit> = self
            .units
            .into_iter()
            .map(|((source, digest), (destinations, policies))| Unit {
                id: unit_id(&source, &digest),
                source,
                digest,
                destinations: merge_destinations(destinations),
                policies,
            })
            .collect();
        units.sort_by(|a, b| (&a.source, &a.digest).cmp(&(&b.source, &b.digest)));
        units
    }
}

fn merge_destinations(mut destinations: Vec<Destination>) -> Vec<Destination> {
    destinations.sort_by(|a, b| a.repository.cmp(&b.repository));
    let mut merged: Vec<Destination> = Vec::with_capacity(destinations.len());
    for d in destinations {
        match merged.last_mut() {
            Some(last) if last.repository == d.repository => {
                let tags: BTreeSet<Tag> = last.tags.iter().chain(d.tags.iter()).cloned().collect();
                last.tags = tags.into_iter().collect();
            }
            _ => merged.push(d),
        }
    }
    merged
}

/// The first 16 hex digits of sha256(`SOURCE@DIGEST`): short, stable, safe in object keys.
pub fn unit_id(source: &Repository, digest: &Digest) -> String {
    let hash = Sha256::new()
        .chain_update(source.as_str().as_bytes())
        .chain_update(b"@")
        .chain_update(digest.as_str().as_bytes())
        .finalize();
    hex::encode(&hash[..8])
}
