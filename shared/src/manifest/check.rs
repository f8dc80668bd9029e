//! Rules that span manifests: one digest per destination `repository:tag`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::diagnostic::{Diagnostic, FileDiagnostics};
use super::yaml::Pos;
use super::{DigestEntry, PromotionManifest};
use crate::reference::{Digest, MAX_REPOSITORY_LEN, Repository, Tag};

/// Every destination repository (`REGISTRY/IMAGE`) and which `(manifest, image)` pairs send
/// images to it, as indexes into the manifest list.
pub fn destination_index(
    manifests: &[PromotionManifest],
) -> HashMap<Repository, Vec<(usize, usize)>> {
    let mut index: HashMap<Repository, Vec<(usize, usize)>> = HashMap::new();
    for (m, manifest) in manifests.iter().enumerate() {
        for registry in manifest.destinations() {
            for (i, image) in manifest.images.iter().enumerate() {
                index
                    .entry(registry.name.repository(&image.name))
                    .or_default()
                    .push((m, i));
            }
        }
    }
    index
}

/// A tag given two digests in the same destination repository, by two image entries.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Conflict {
    file: Arc<Path>,
    pos: Pos,
    tag: Tag,
    digest: Digest,
    other_file: Arc<Path>,
    other_pos: Pos,
    other_digest: Digest,
}

/// Reports every destination `repository:tag` that two image entries would point at different
/// digests (the Kubernetes promoter's "overlapping edges").
///
/// The same conflict usually repeats in every destination two manifests share; it is reported
/// once, at the later entry, with the number of destinations it affects.
pub fn overlapping_destinations(manifests: &[PromotionManifest], out: &mut Vec<Diagnostic>) {
    let mut conflicts: HashMap<Conflict, (Repository, usize)> = HashMap::new();
    let index = destination_index(manifests);
    for (repository, senders) in &index {
        if senders.len() < 2 {
            continue;
        }
        let mut owner: HashMap<&Tag, (&DigestEntry, usize)> = HashMap::new();
        for &(m, i) in senders {
            for entry in &manifests[m].images[i].digests {
                for tag in entry.tags.iter() {
                    let Some(&(first, first_m)) = owner.get(tag) else {
                        owner.insert(tag, (entry, m));
                        continue;
                    };
                    if first.digest == entry.digest {
                        continue;
                    }
                    let key = Conflict {
                        file: Arc::clone(&manifests[m].images_file),
                        pos: entry.pos,
                        tag: tag.clone(),
                        digest: entry.digest.clone(),
                        other_file: Arc::clone(&manifests[first_m].images_file),
                        other_pos: first.pos,
                        other_digest: first.digest.clone(),
                    };
                    let seen = conflicts
                        .entry(key)
                        .or_insert_with(|| (repository.clone(), 0));
                    seen.1 += 1;
                    if *repository < seen.0 {
                        seen.0.clone_from(repository);
                    }
                }
            }
        }
    }
    let mut sorted: Vec<_> = conflicts.into_iter().collect();
    sorted.sort();
    for (c, (example, count)) in sorted {
        report(&c, example.as_str(), count, out);
    }
}

fn report(c: &Conflict, example: &str, count: usize, out: &mut Vec<Diagnostic>) {
    let (here, there) = (c.digest.short(), c.other_digest.short());
    let where_ = if count == 1 {
        format!("destination `{example}:{}`", c.tag)
    } else {
        format!(
            "tag `{}` in {count} destinations (e.g. `{example}:{}`)",
            c.tag, c.tag
        )
    };
    let msg = format!(
        "{where_} would point at two digests: {here} here and {there} at {}:{}:{}",
        c.other_file.display(),
        c.other_pos.line,
        c.other_pos.col
    );
    FileDiagnostics::new(Arc::clone(&c.file), out).error(c.pos, msg);
}

/// Reports images whose full repository name (`REGISTRY/IMAGE`) is longer than registries
/// accept, once per image, naming the longest registry.
pub fn repository_lengths(manifests: &[PromotionManifest], out: &mut Vec<Diagnostic>) {
    for manifest in manifests {
        let Some(longest) = manifest
            .registries
            .iter()
            .max_by_key(|r| r.name.as_str().len())
        else {
            continue;
        };
        for image in &manifest.images {
            let repository = longest.name.repository(&image.name);
            if repository.as_str().len() > MAX_REPOSITORY_LEN {
                let msg = format!(
                    "repository `{repository}` is {} characters long; registries accept at most {MAX_REPOSITORY_LEN}",
                    repository.as_str().len()
                );
                FileDiagnostics::new(Arc::clone(&manifest.images_file), out).error(image.pos, msg);
            }
        }
    }
}
