//! What a set of manifests says production should hold, for lookups by repository and digest.
//!
//! The desired state is never expanded into one record per (repository, digest, tag): at
//! Kubernetes scale that would be about a million entries. Instead each destination repository
//! points at the image entries that send to it, and each image entry has a digest lookup table.

use std::collections::{BTreeSet, HashMap};

use crate::manifest::{DigestEntry, PromotionManifest, destination_index};
use crate::reference::{Digest, Repository, Tag};

/// Answers "what should repository R hold under digest D?" for one set of manifests.
pub struct Desired<'m> {
    by_repository: HashMap<Repository, Vec<(usize, usize)>>,
    digests: Vec<Vec<HashMap<&'m Digest, &'m DigestEntry>>>,
}

impl<'m> Desired<'m> {
    /// Indexes `manifests`.
    pub fn new(manifests: &'m [PromotionManifest]) -> Self {
        let digests = manifests
            .iter()
            .map(|m| {
                m.images
                    .iter()
                    .map(|i| i.digests.iter().map(|e| (&e.digest, e)).collect())
                    .collect()
            })
            .collect();
        Desired {
            by_repository: destination_index(manifests),
            digests,
        }
    }

    /// The tags `repository` should carry for `digest`, or `None` when it should not hold it.
    pub fn tags(&self, repository: &Repository, digest: &Digest) -> Option<BTreeSet<&'m Tag>> {
        let senders = self.by_repository.get(repository)?;
        let mut found = false;
        let mut tags = BTreeSet::new();
        for &(m, i) in senders {
            if let Some(entry) = self.digests[m][i].get(digest) {
                found = true;
                tags.extend(entry.tags.iter());
            }
        }
        found.then_some(tags)
    }
}
