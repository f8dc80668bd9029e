//! Resolving what [`judge`] cannot tell alone by reading production through the registry
//! client: which digest a tag points at, whether a digest is a child of a desired index, and
//! whether it is a referrer (OCI `subject`) of a desired digest or of such a child.
//!
//! Requests are kept few: the looked-up manifest first (its `subject` chain, at most
//! [`SUBJECT_HOPS`] deep), then the desired digests of the repository one at a time, stopping
//! at the first index listing the digest (or a subject of it) as a child.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::AuditError;
use super::judge::{Judgement, Reason, Verdict, artifact_tag, judge};
use crate::events::RegistryEvent;
use crate::reference::{Digest, Repository, Tag};
use crate::registry::{Client, Manifest};
use crate::state::records::DesiredIndex;

/// How many `subject` links are followed from the looked-up digest (a signature of an SBOM
/// of an image is two).
pub const SUBJECT_HOPS: usize = 4;

/// The links of a manifest the auditor follows; anything else is ignored, and a manifest
/// that is not this JSON has none.
#[derive(Default, Deserialize)]
struct Links {
    #[serde(default)]
    manifests: Option<Vec<Link>>,
    #[serde(default)]
    subject: Option<Link>,
}

#[derive(Deserialize)]
struct Link {
    digest: String,
}

fn links(manifest: &Manifest) -> Links {
    serde_json::from_slice(&manifest.bytes).unwrap_or_default()
}

/// Judges `event` against `desired`, reading production through `client` when the event
/// alone does not tell (see [`Judgement`]). A digest found neither desired, nor a child of a
/// desired index, nor a referrer of either is [`Reason::UnknownDigest`].
pub async fn judge_with_registry(
    event: &RegistryEvent,
    desired: &DesiredIndex,
    client: &Client,
) -> Result<Verdict, AuditError> {
    match judge(event, desired) {
        Judgement::Decided(verdict) => Ok(verdict),
        Judgement::NeedsTagLookup { tag } => {
            let repository = parse(&event.repository)?;
            let Ok(tag) = tag.parse::<Tag>() else {
                // Not a tag any registry holds: what was pushed cannot be told.
                return Ok(unknown_digest());
            };
            let resolved = client
                .resolve(&repository, &tag)
                .await
                .map_err(AuditError::Registry)?;
            let Some(digest) = resolved else {
                // The tag is gone again: what was pushed cannot be told.
                return Ok(unknown_digest());
            };
            let event = RegistryEvent {
                digest: Some(digest.to_string()),
                ..event.clone()
            };
            Ok(match judge(&event, desired) {
                Judgement::Decided(verdict) => verdict,
                // With a digest and a desired tag, `judge` always decides.
                Judgement::NeedsLookup { .. } | Judgement::NeedsTagLookup { .. } => {
                    unknown_digest()
                }
            })
        }
        Judgement::NeedsLookup { digest } => {
            let repository = parse(&event.repository)?;
            let empty = BTreeMap::new();
            let digests = desired
                .repositories
                .get(&event.repository)
                .unwrap_or(&empty);
            let source = desired
                .sources
                .get(&event.repository)
                .and_then(|s| s.parse::<Repository>().ok());
            let places = Places {
                repository: &repository,
                source: source.as_ref(),
            };
            let Some(relation) = find_approval(client, &places, &digest, digests).await? else {
                return Ok(unknown_digest());
            };
            let why = match event.tag.as_deref().and_then(artifact_tag) {
                Some((subject, what)) => format!("{what} of {subject}, {relation}"),
                None => relation,
            };
            Ok(Verdict::Expected { why })
        }
    }
}

fn unknown_digest() -> Verdict {
    Verdict::Unapproved {
        reason: Reason::UnknownDigest,
    }
}

fn parse(repository: &str) -> Result<Repository, AuditError> {
    repository.parse().map_err(AuditError::Repository)
}

/// The manifest `digest` names in `repository`; `None` when absent, or when `digest` (from an
/// event or a manifest, so from outside) is not a digest the promoter could have promoted.
async fn get(
    client: &Client,
    repository: &Repository,
    digest: &str,
) -> Result<Option<Manifest>, AuditError> {
    let Ok(digest) = digest.parse::<Digest>() else {
        return Ok(None);
    };
    client
        .manifest_get(repository, &digest)
        .await
        .map_err(AuditError::Registry)
}

/// Where a lookup reads: the production repository, and the staging repository it is
/// promoted from (which holds an approved index before production does).
struct Places<'a> {
    repository: &'a Repository,
    source: Option<&'a Repository>,
}

/// How `digest` relates to a desired digest of `repository` (e.g. `child of approved index
/// sha256:…`), or `None` when it does not.
async fn find_approval(
    client: &Client,
    places: &Places<'_>,
    digest: &str,
    desired: &BTreeMap<String, Vec<String>>,
) -> Result<Option<String>, AuditError> {
    // The digest, then what it is a referrer of, then what that is a referrer of...
    let mut chain = vec![digest.to_owned()];
    while chain.len() <= SUBJECT_HOPS {
        let Some(last) = chain.last() else { break };
        let Some(manifest) = get(client, places.repository, last).await? else {
            break;
        };
        let Some(subject) = links(&manifest).subject.map(|s| s.digest) else {
            break;
        };
        if desired.contains_key(&subject) {
            return Ok(Some(format!("referrer of approved {subject}")));
        }
        if chain.contains(&subject) {
            break;
        }
        chain.push(subject);
    }
    for candidate in desired.keys() {
        let mut manifest = get(client, places.repository, candidate).await?;
        if manifest.is_none()
            && let Some(source) = places.source
        {
            // Not promoted yet (its children come first): staging has the same bytes.
            manifest = get(client, source, candidate).await?;
        }
        let Some(manifest) = manifest else {
            continue;
        };
        let children = links(&manifest).manifests.unwrap_or_default();
        for (hop, found) in chain.iter().enumerate() {
            if children.iter().any(|child| &child.digest == found) {
                let relation = format!("child of approved index {candidate}");
                return Ok(Some(if hop == 0 {
                    relation
                } else {
                    format!("referrer of {found}, a {relation}")
                }));
            }
        }
    }
    Ok(None)
}
