//! Drift: what production holds that differs from what the manifests ask, read per repository
//! (its tag listing, not one request per edge), for `promoter reconcile`.
//!
//! Per destination repository: a digest asked for and absent (**missing**), a tag asked for and
//! absent (**missing tag**), a tag asked for pointing at another digest (**moved tag**), a tag
//! nobody asked for (**unknown tag**), and when asked, a digest present without any signature
//! (**unsigned**: the listing shows neither its `sha256-<hex>.sig` tag nor its referrers
//! fallback tag `sha256-<hex>`; a registry serving bundles through its referrers API alone is
//! not read that way). cosign's signature tags are not judged otherwise. Reading a
//! repository costs one `tags/list` (Google's answer lists every digest, untagged ones too) and,
//! elsewhere, one HEAD per tag plus one per desired digest that carries no tag.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::plan::{Destination, Unit};
use crate::reference::{CosignArtifact, Digest, Repository, Tag};
use crate::registry::{Client, RegistryError};
use crate::snapshot::is_signature_tag;

/// Repositories read at once.
const PARALLEL: usize = 8;

/// What one repository holds: digest → its tags (untagged digests with none).
pub type Held = BTreeMap<Digest, BTreeSet<Tag>>;

/// How one repository differs from what is asked of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryDrift {
    /// The repository.
    pub repository: String,
    /// Digests asked for and absent.
    pub missing: Vec<Digest>,
    /// `(tag, digest asked)`: tags asked for and absent.
    pub missing_tags: Vec<(Tag, Digest)>,
    /// `(tag, digest asked, digest there)`: tags pointing elsewhere.
    pub moved_tags: Vec<(Tag, Digest, Digest)>,
    /// `(tag, digest there)`: tags nobody asked for.
    pub unknown_tags: Vec<(Tag, Digest)>,
    /// Digests asked for and present with no signature tag listed (when signatures are
    /// checked).
    pub unsigned: Vec<Digest>,
}

impl RepositoryDrift {
    /// True when the repository is as asked.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.missing_tags.is_empty()
            && self.moved_tags.is_empty()
            && self.unknown_tags.is_empty()
            && self.unsigned.is_empty()
    }
}

/// What every destination repository of `units` should hold: repository → digest → tags.
pub fn desired(units: &[Unit]) -> BTreeMap<Repository, Held> {
    let mut out: BTreeMap<Repository, Held> = BTreeMap::new();
    for unit in units {
        for destination in &unit.destinations {
            out.entry(destination.repository.clone())
                .or_default()
                .entry(unit.digest.clone())
                .or_default()
                .extend(destination.tags.iter().cloned());
        }
    }
    out
}

/// How `held` differs from `wanted` (pure); with `signature_tags` (every signature tag the
/// repository lists), digests present without one are named unsigned.
pub fn compare(
    repository: &Repository,
    wanted: &Held,
    held: &Held,
    signature_tags: Option<&BTreeSet<Tag>>,
) -> RepositoryDrift {
    let mut drift = RepositoryDrift {
        repository: repository.to_string(),
        ..RepositoryDrift::default()
    };
    let tag_there: BTreeMap<&Tag, &Digest> = held
        .iter()
        .flat_map(|(digest, tags)| tags.iter().map(move |t| (t, digest)))
        .collect();
    let mut asked_tags: BTreeSet<&Tag> = BTreeSet::new();
    for (digest, tags) in wanted {
        if !held.contains_key(digest) {
            drift.missing.push(digest.clone());
        } else if let Some(listed) = signature_tags
            && !listed.contains(&digest.cosign_tag(CosignArtifact::Signature))
            && !listed.contains(&digest.referrers_tag())
        {
            drift.unsigned.push(digest.clone());
        }
        for tag in tags {
            asked_tags.insert(tag);
            match tag_there.get(tag) {
                None => drift.missing_tags.push((tag.clone(), digest.clone())),
                Some(&there) if there != digest => {
                    drift
                        .moved_tags
                        .push((tag.clone(), digest.clone(), there.clone()));
                }
                Some(_) => {}
            }
        }
    }
    for (tag, digest) in tag_there {
        if !asked_tags.contains(tag) && !is_signature_tag(tag) {
            drift.unknown_tags.push((tag.clone(), digest.clone()));
        }
    }
    drift
}

/// What `repository` holds, for the digests in `wanted` (untagged desired digests are looked
/// up one by one where the listing cannot show them), and every signature tag it lists.
pub async fn observe(
    client: &Client,
    repository: &Repository,
    wanted: &Held,
) -> Result<(Held, BTreeSet<Tag>), RegistryError> {
    // ECR: its API's inventory (one call per 1,000 images); elsewhere `tags/list`.
    let listing = match client.ecr_inventory(repository).await? {
        Some(listing) => listing,
        None => client.list_repository(repository).await?,
    };
    let signature_tags: BTreeSet<Tag> = listing
        .tags
        .iter()
        .chain(listing.manifests.values().flat_map(|m| m.tags.iter()))
        .filter(|t| is_signature_tag(t))
        .cloned()
        .collect();
    let mut held: Held = BTreeMap::new();
    if !listing.complete {
        let tags: Vec<Tag> = listing
            .tags
            .into_iter()
            .filter(|t| !is_signature_tag(t))
            .collect();
        let resolved: Vec<(Tag, Option<Digest>)> = futures_util::stream::iter(tags)
            .map(|tag| async {
                let digest = client.resolve(repository, &tag).await?;
                Ok::<_, RegistryError>((tag, digest))
            })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        for (tag, digest) in resolved {
            if let Some(digest) = digest {
                held.entry(digest).or_default().insert(tag);
            }
        }
        let unseen: Vec<&Digest> = wanted.keys().filter(|d| !held.contains_key(*d)).collect();
        for digest in unseen {
            if client.manifest_head(repository, digest).await?.is_some() {
                held.entry(digest.clone()).or_default();
            }
        }
    } else {
        for (digest, listed) in listing.manifests {
            held.insert(digest, listed.tags.into_iter().collect());
        }
    }
    Ok((held, signature_tags))
}

/// What to run to repair `drifts` (pure): each unit of `units` with only its destinations
/// whose digest is missing, has a tag missing, or is unsigned there, each keeping only its
/// missing tags. A tag that points elsewhere is left out (the promoter never moves a tag);
/// the unit's id is kept, so the promoted ledger and leases know it.
pub fn repairs(units: &[Unit], drifts: &[RepositoryDrift]) -> Vec<Unit> {
    let by_repository: BTreeMap<&str, &RepositoryDrift> =
        drifts.iter().map(|d| (d.repository.as_str(), d)).collect();
    units
        .iter()
        .filter_map(|unit| {
            let destinations: Vec<Destination> = unit
                .destinations
                .iter()
                .filter_map(|destination| {
                    let drift = by_repository.get(destination.repository.as_str())?;
                    repair_destination(&unit.digest, destination, drift)
                })
                .collect();
            (!destinations.is_empty()).then(|| Unit {
                destinations,
                ..unit.clone()
            })
        })
        .collect()
}

/// `destination` with only its missing tags, when `drift` says it needs anything.
fn repair_destination(
    digest: &Digest,
    destination: &Destination,
    drift: &RepositoryDrift,
) -> Option<Destination> {
    let tags: Vec<Tag> = destination
        .tags
        .iter()
        .filter(|tag| {
            drift
                .missing_tags
                .iter()
                .any(|(t, d)| t == *tag && d == digest)
        })
        .cloned()
        .collect();
    let needed =
        !tags.is_empty() || drift.missing.contains(digest) || drift.unsigned.contains(digest);
    needed.then(|| Destination {
        repository: destination.repository.clone(),
        tags: tags.into(),
    })
}

/// The drift of every destination repository of `units`, in repository order; with
/// `signatures`, unsigned digests too.
pub async fn reconcile(
    client: &Client,
    units: &[Unit],
    signatures: bool,
) -> Result<Vec<RepositoryDrift>, RegistryError> {
    let wanted = desired(units);
    futures_util::stream::iter(wanted.iter())
        .map(|(repository, wanted)| async move {
            let (held, signature_tags) = observe(client, repository, wanted).await?;
            let signature_tags = signatures.then_some(&signature_tags);
            Ok::<_, RegistryError>(compare(repository, wanted, &held, signature_tags))
        })
        .buffered(PARALLEL)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .expect("digest")
    }

    fn t(s: &str) -> Tag {
        s.parse().expect("tag")
    }

    #[test]
    fn every_kind_of_drift_is_named() {
        let repository: Repository = "prod.example/app".parse().expect("repository");
        let wanted: Held = BTreeMap::from([
            (d('a'), BTreeSet::from([t("v1"), t("latest")])),
            (d('b'), BTreeSet::from([t("v2")])),
            (d('c'), BTreeSet::new()),
        ]);
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        let held: Held = BTreeMap::from([
            (d('a'), BTreeSet::from([t("v1"), t("v2"), t(&sig)])),
            (d('e'), BTreeSet::from([t("latest"), t("debug")])),
        ]);
        let drift = compare(&repository, &wanted, &held, None);
        assert_eq!(drift.missing, [d('b'), d('c')]);
        assert_eq!(drift.missing_tags, []);
        assert_eq!(
            drift.moved_tags,
            [(t("latest"), d('a'), d('e')), (t("v2"), d('b'), d('a'))]
        );
        assert_eq!(drift.unknown_tags, [(t("debug"), d('e'))]);
        assert!(
            compare(&repository, &wanted, &wanted, None)
                .missing
                .is_empty()
        );
        assert!(drift.unsigned.is_empty(), "not asked");
        // Signatures checked: `a` has its `.sig` tag; `e` is not asked for; a digest with
        // only its referrers fallback tag is signed too.
        let listed = BTreeSet::from([t(&sig)]);
        let held_b = BTreeMap::from([(d('a'), BTreeSet::new()), (d('b'), BTreeSet::new())]);
        let wanted_b: Held = BTreeMap::from([
            (d('a'), BTreeSet::new()),
            (d('b'), BTreeSet::new()),
            (d('c'), BTreeSet::new()),
        ]);
        let drift = compare(&repository, &wanted_b, &held_b, Some(&listed));
        assert_eq!(drift.unsigned, [d('b')]);
        assert_eq!(drift.missing, [d('c')]);
        let fallback = BTreeSet::from([t(&sig), t(&format!("sha256-{}", "b".repeat(64)))]);
        let drift = compare(&repository, &wanted_b, &held_b, Some(&fallback));
        assert!(drift.unsigned.is_empty());
    }

    fn unit(id: &str, digest: Digest, destinations: &[(&str, &[&str])]) -> Unit {
        Unit {
            id: id.to_owned(),
            source: "staging.example/app".parse().expect("repository"),
            digest,
            destinations: destinations
                .iter()
                .map(|(repository, tags)| Destination {
                    repository: repository.parse().expect("repository"),
                    tags: tags.iter().map(|x| t(x)).collect(),
                })
                .collect(),
            policies: Vec::new(),
        }
    }

    #[test]
    fn repairs_keep_only_what_is_missing_and_never_move_a_tag() {
        let units = [
            unit(
                "a",
                d('a'),
                &[
                    ("us.example/app", &["v1", "latest"]),
                    ("eu.example/app", &["v1", "latest"]),
                ],
            ),
            unit(
                "b",
                d('b'),
                &[("us.example/app", &["v2"]), ("eu.example/app", &["v2"])],
            ),
            unit(
                "c",
                d('c'),
                &[("us.example/app", &["v3"]), ("eu.example/app", &["v3"])],
            ),
        ];
        let us = RepositoryDrift {
            repository: "us.example/app".to_owned(),
            // `a` lost `latest`; `b` is gone, its tag moved to `e`.
            missing: vec![d('b')],
            missing_tags: vec![(t("latest"), d('a'))],
            moved_tags: vec![(t("v2"), d('b'), d('e'))],
            unknown_tags: vec![(t("debug"), d('e'))],
            unsigned: vec![],
        };
        let eu = RepositoryDrift {
            repository: "eu.example/app".to_owned(),
            unsigned: vec![d('c')],
            ..RepositoryDrift::default()
        };
        let repairs = repairs(&units, &[us, eu]);
        let shown: Vec<(String, String, Vec<String>)> = repairs
            .iter()
            .flat_map(|u| {
                u.destinations.iter().map(|dest| {
                    (
                        u.id.clone(),
                        dest.repository.to_string(),
                        dest.tags.iter().map(ToString::to_string).collect(),
                    )
                })
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "a".to_owned(),
                    "us.example/app".to_owned(),
                    vec!["latest".to_owned()]
                ),
                ("b".to_owned(), "us.example/app".to_owned(), vec![]),
                ("c".to_owned(), "eu.example/app".to_owned(), vec![]),
            ]
        );
        assert!(
            super::repairs(&units, &[]).is_empty(),
            "no drift, nothing to run"
        );
    }
}
