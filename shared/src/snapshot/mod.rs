//! `promoter snapshot`: what a registry holds under a prefix (every repository, digest and
//! tag), in the `images.yaml` format or as CSV: for onboarding an existing registry into
//! manifests, and for comparing production with them.
//!
//! Repositories are found through Google's `child` lists when the registry gives them (GCR,
//! Artifact Registry), else through `/v2/_catalog`. A repository's digests and tags come from
//! Google's `manifest` map (untagged digests included) or, elsewhere, from its tags, each
//! resolved with a HEAD. Left out unless `all` is asked for: index children that carry no tag
//! of their own (promoting the index brings them), and cosign's and the referrers fallback's
//! tags (`sha256-<hex>`, `.sig`, `.att`, `.sbom`), which are not images to promote. A plain
//! distribution registry has no way to list untagged digests; with `all`, the children of the
//! indexes it lists are added.

mod render;

pub use render::{csv, images_yaml};

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, TryStreamExt};

use crate::reference::{Digest, Repository, Tag};
use crate::registry::{Client, RegistryError, RepositoryListing, media_type};

/// Repositories read at most (a prefix that is a whole public registry is refused, not read).
pub const MAX_REPOSITORIES: usize = 100_000;

/// Requests in flight at once.
const PARALLEL: usize = 8;

/// What to include.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Untagged index children and signature tags too.
    pub all: bool,
}

/// One repository's digests and their tags, named below the prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotImage {
    /// The repository's path below the prefix (`app`, `charts/app`).
    pub name: String,
    /// Every digest and its tags (sorted).
    pub digests: BTreeMap<Digest, BTreeSet<Tag>>,
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// More repositories than [`MAX_REPOSITORIES`].
    #[error("more than {MAX_REPOSITORIES} repositories under {prefix}: name a narrower prefix")]
    TooMany {
        /// The prefix.
        prefix: String,
    },
}

/// The images below `prefix` (`HOST/PATH`, read as a repository: the prefix itself is listed
/// too when it is one), sorted by name.
pub async fn snapshot(
    client: &Client,
    prefix: &Repository,
    options: Options,
) -> Result<Vec<SnapshotImage>, SnapshotError> {
    let repositories = repositories(client, prefix).await?;
    let mut images: Vec<SnapshotImage> = futures_util::stream::iter(repositories)
        .map(|(repository, listing)| image(client, prefix, repository, listing, options))
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    images.retain(|i| !i.digests.is_empty());
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// The repositories at and below `prefix`, with their listings when reading them already gave
/// them: Google's `child` lists (each repository listed once), else the catalog (listed later).
async fn repositories(
    client: &Client,
    prefix: &Repository,
) -> Result<Vec<(Repository, Option<RepositoryListing>)>, SnapshotError> {
    let too_many = || SnapshotError::TooMany {
        prefix: prefix.to_string(),
    };
    let top = client.list_repository(prefix).await?;
    if top.children.is_empty() {
        let found = client.catalog(prefix, prefix.path()).await?;
        if found.len() > MAX_REPOSITORIES {
            return Err(too_many());
        }
        return Ok(found
            .into_iter()
            .map(|r| {
                let listing = (&r == prefix).then(|| top.clone());
                (r, listing)
            })
            .collect());
    }
    let mut found: Vec<(Repository, Option<RepositoryListing>)> = Vec::new();
    let mut next: Vec<(Repository, RepositoryListing)> = vec![(prefix.clone(), top)];
    while let Some((repository, listing)) = next.pop() {
        for child in &listing.children {
            let Ok(below) = format!("{repository}/{child}").parse::<Repository>() else {
                continue;
            };
            if found.len() + next.len() >= MAX_REPOSITORIES {
                return Err(too_many());
            }
            next.push((below.clone(), client.list_repository(&below).await?));
        }
        found.push((repository, Some(listing)));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// One repository's digests and tags.
async fn image(
    client: &Client,
    prefix: &Repository,
    repository: Repository,
    listing: Option<RepositoryListing>,
    options: Options,
) -> Result<SnapshotImage, SnapshotError> {
    let listing = match listing {
        Some(listing) => listing,
        None => client.list_repository(&repository).await?,
    };
    let mut digests: BTreeMap<Digest, BTreeSet<Tag>> = BTreeMap::new();
    let mut indexes: Vec<Digest> = Vec::new();
    if listing.manifests.is_empty() {
        let tags: Vec<Tag> = listing
            .tags
            .into_iter()
            .filter(|t| options.all || !is_signature_tag(t))
            .collect();
        let heads: Vec<(Tag, Option<crate::registry::ManifestHead>)> =
            futures_util::stream::iter(tags)
                .map(|tag| async {
                    let head = client.manifest_head(&repository, &tag).await?;
                    Ok::<_, RegistryError>((tag, head))
                })
                .buffered(PARALLEL)
                .try_collect()
                .await?;
        for (tag, head) in heads {
            let Some(head) = head else { continue };
            let digest = match head.digest {
                Some(digest) => digest,
                None => match client.resolve(&repository, &tag).await? {
                    Some(digest) => digest,
                    None => continue,
                },
            };
            if head.media_type.as_deref().is_some_and(is_index) && !indexes.contains(&digest) {
                indexes.push(digest.clone());
            }
            digests.entry(digest).or_default().insert(tag);
        }
    } else {
        for (digest, listed) in listing.manifests {
            let signature_only =
                !listed.tags.is_empty() && listed.tags.iter().all(is_signature_tag);
            if signature_only && !options.all {
                continue;
            }
            let tags: BTreeSet<Tag> = listed
                .tags
                .into_iter()
                .filter(|t| options.all || !is_signature_tag(t))
                .collect();
            if listed.media_type.as_deref().is_some_and(is_index) {
                indexes.push(digest.clone());
            }
            digests.insert(digest, tags);
        }
    }
    let children = index_children(client, &repository, &indexes).await?;
    for child in children {
        let untagged = digests.get(&child).is_none_or(BTreeSet::is_empty);
        if untagged {
            if options.all {
                digests.entry(child).or_default();
            } else {
                digests.remove(&child);
            }
        }
    }
    let name = repository
        .path()
        .strip_prefix(prefix.path())
        .map(|rest| rest.trim_start_matches('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or_else(|| repository.path().rsplit('/').next().unwrap_or_default())
        .to_owned();
    Ok(SnapshotImage { name, digests })
}

/// The children of each index in `indexes`.
async fn index_children(
    client: &Client,
    repository: &Repository,
    indexes: &[Digest],
) -> Result<Vec<Digest>, RegistryError> {
    let manifests: Vec<Option<crate::registry::Manifest>> = futures_util::stream::iter(indexes)
        .map(|digest| client.manifest_get(repository, digest))
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    Ok(manifests
        .into_iter()
        .flatten()
        .flat_map(|m| m.index_children())
        .collect())
}

fn is_index(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or_default().trim();
    media == media_type::OCI_INDEX || media == media_type::DOCKER_LIST
}

/// Tags cosign and the referrers fallback use: `sha256-<64 hex>`, optionally followed by
/// `.sig`, `.att` or `.sbom`.
pub fn is_signature_tag(tag: &Tag) -> bool {
    let Some(rest) = tag.as_str().strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split('.').next().unwrap_or_default();
    let suffix = &rest[hex.len()..];
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(suffix, "" | ".sig" | ".att" | ".sbom")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_are_recognised() {
        let hex = "a".repeat(64);
        for tag in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
        ] {
            assert!(is_signature_tag(&tag.parse().expect("tag")), "{tag}");
        }
        for tag in ["v1", "sha256-abc.sig", &format!("sha256-{hex}.other")] {
            assert!(!is_signature_tag(&tag.parse().expect("tag")), "{tag}");
        }
    }
}
