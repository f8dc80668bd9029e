//! Observing one unit: the reads [`super::decide`] needs, and nothing else.
//!
//! Reads are made only when the answer can change the decision: the staging signature (when a
//! key is required) first; then, at the same time, (a) each destination's tags and, unless a
//! tag already names it, the digest, then staging's manifest tree when a destination lacks the
//! digest or a tag (an index's children are looked up only in the destinations lacking the
//! index), (b) staging's cosign artifacts (from one tag listing per repository and run) with
//! each destination's artifact tags, and (c) staging's referrers (from the referrers API, or its
//! fallback tag where a registry has none) with what each destination holds of them. Nothing
//! here writes.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::try_join_all;

use super::Engine;
use super::decide::{
    ArtifactState, Child, DestinationState, Observed, Referrer, ReferrersState, Tree,
};
use super::document::{self, Document};
use super::error::CopyError;
use crate::plan::{Destination, Unit};
use crate::reference::{CosignArtifact, Digest, Repository};
use crate::registry::Manifest;

type TreeFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Tree>, CopyError>> + Send + 'a>>;

impl Engine {
    /// Everything [`super::decide::decide`] needs to know about `unit`.
    pub(super) async fn observe(&self, unit: &Unit) -> Result<Observed, CopyError> {
        let staging_signed = match &self.required_signer {
            Some(key) => Some(
                !Box::pin(crate::sign::verify_any(
                    &self.client,
                    &unit.source,
                    &unit.digest,
                    key,
                ))
                .await?
                .is_empty(),
            ),
            None => None,
        };
        let policy = if unit.policies.is_empty() {
            None
        } else {
            Box::pin(crate::policy::check_all(
                &self.client,
                &unit.source,
                &unit.digest,
                &unit.policies,
            ))
            .await?
        };
        let repositories: Vec<Repository> = unit
            .destinations
            .iter()
            .map(|d| d.repository.clone())
            .collect();
        // The destinations (then staging's manifest tree where they need it), staging's cosign
        // artifacts and its referrers are read at the same time: none needs another's answer,
        // and a far registry costs a round trip per read made in turn.
        let ((destinations, source), artifacts, referrers) = tokio::try_join!(
            self.observe_destinations_and_tree(unit),
            self.observe_artifacts(unit, &repositories),
            self.observe_referrers(unit, &repositories),
        )?;
        Ok(Observed {
            staging_signed,
            policy,
            destinations,
            source,
            artifacts,
            referrers,
        })
    }

    /// Each destination's state, and staging's manifest tree when a destination lacks the
    /// digest or a tag.
    async fn observe_destinations_and_tree(
        &self,
        unit: &Unit,
    ) -> Result<(Vec<DestinationState>, Option<Option<Tree>>), CopyError> {
        let destinations = try_join_all(
            unit.destinations
                .iter()
                .map(|d| self.observe_destination(unit, d)),
        )
        .await?;
        let needing: Vec<Repository> = destinations
            .iter()
            .filter(|d| !d.present)
            .map(|d| d.repository.clone())
            .collect();
        let tags_missing = destinations
            .iter()
            .any(|d| d.tags.iter().any(|(_, current)| current.is_none()));
        let source = if !needing.is_empty() || tags_missing {
            Some(self.tree(&unit.source, &unit.digest, &needing).await?)
        } else {
            None
        };
        Ok((destinations, source))
    }

    /// HEADs each tag of `destination` and, unless a tag already names the digest, the digest.
    async fn observe_destination(
        &self,
        unit: &Unit,
        destination: &Destination,
    ) -> Result<DestinationState, CopyError> {
        let repository = &destination.repository;
        let current = try_join_all(
            destination
                .tags
                .iter()
                .map(|tag| self.client.resolve(repository, tag)),
        )
        .await?;
        let tags: Vec<_> = destination.tags.iter().cloned().zip(current).collect();
        let tagged = tags
            .iter()
            .any(|(_, current)| current.as_ref() == Some(&unit.digest));
        let present = tagged
            || self
                .client
                .manifest_head(repository, &unit.digest)
                .await?
                .is_some();
        Ok(DestinationState {
            repository: repository.clone(),
            present,
            tags,
        })
    }

    /// `digest` in staging and, for an index, its children with the repositories of `to`
    /// lacking each (read from staging only where one lacks it). `None` when staging lacks it.
    fn tree<'a>(
        &'a self,
        source: &'a Repository,
        digest: &'a Digest,
        to: &'a [Repository],
    ) -> TreeFuture<'a> {
        Box::pin(async move {
            let Some(manifest) = self.client.manifest_get(source, digest).await? else {
                return Ok(None);
            };
            let mut children = Vec::new();
            if let Ok(Document::Index { children: listed }) =
                document::parse(&manifest.media_type, &manifest.bytes)
            {
                for descriptor in listed {
                    let lacking = self.lacking(&descriptor.digest, to).await?;
                    let tree = if lacking.is_empty() {
                        None
                    } else {
                        self.tree(source, &descriptor.digest, &lacking).await?
                    };
                    children.push(Child {
                        digest: descriptor.digest,
                        lacking,
                        tree,
                    });
                }
            }
            Ok(Some(Tree { manifest, children }))
        })
    }

    /// The repositories of `among` that do not hold manifest `digest`.
    async fn lacking(
        &self,
        digest: &Digest,
        among: &[Repository],
    ) -> Result<Vec<Repository>, CopyError> {
        let heads =
            try_join_all(among.iter().map(|r| self.client.manifest_head(r, digest))).await?;
        Ok(among
            .iter()
            .zip(heads)
            .filter(|(_, head)| head.is_none())
            .map(|(r, _)| r.clone())
            .collect())
    }

    /// Staging's cosign artifacts of the digest, and each destination's artifact tags.
    async fn observe_artifacts(
        &self,
        unit: &Unit,
        repositories: &[Repository],
    ) -> Result<Vec<ArtifactState>, CopyError> {
        let source_tags = self.source_tags(&unit.source).await?;
        let mut artifacts = Vec::new();
        for kind in CosignArtifact::ALL {
            let tag = unit.digest.cosign_tag(kind);
            if !source_tags.contains(&tag) {
                continue;
            }
            let Some(staging) = self.client.manifest_get(&unit.source, &tag).await? else {
                continue;
            };
            let mut at = Vec::with_capacity(repositories.len());
            for repository in repositories {
                let current = self.client.resolve(repository, &tag).await?;
                let merge_into = match &current {
                    Some(current)
                        if kind == CosignArtifact::Signature && *current != staging.digest =>
                    {
                        self.client.manifest_get(repository, &tag).await?
                    }
                    _ => None,
                };
                at.push((repository.clone(), current, merge_into));
            }
            artifacts.push(ArtifactState { kind, staging, at });
        }
        Ok(artifacts)
    }

    /// Staging's referrers of the digest (referrers API, else its fallback tag), which
    /// destinations lack each, and each destination's fallback index.
    async fn observe_referrers(
        &self,
        unit: &Unit,
        repositories: &[Repository],
    ) -> Result<Option<ReferrersState>, CopyError> {
        let Some(index) = self.source_referrers(&unit.source, &unit.digest).await? else {
            return Ok(None);
        };
        let Ok(Document::Index { children: listed }) =
            document::parse(&index.media_type, &index.bytes)
        else {
            return Ok(None);
        };
        if listed.is_empty() {
            return Ok(None);
        }
        let mut referrers = Vec::with_capacity(listed.len());
        for descriptor in listed {
            let lacking = self.lacking(&descriptor.digest, repositories).await?;
            let tree = if lacking.is_empty() {
                None
            } else {
                self.tree(&unit.source, &descriptor.digest, &lacking)
                    .await?
            };
            referrers.push(Referrer {
                descriptor,
                lacking,
                tree,
            });
        }
        let tag = unit.digest.referrers_tag();
        let current = try_join_all(
            repositories
                .iter()
                .map(|r| self.client.manifest_get(r, &tag)),
        )
        .await?;
        Ok(Some(ReferrersState {
            index,
            referrers,
            at: repositories.iter().cloned().zip(current).collect(),
        }))
    }

    /// Staging's referrers index of `digest`: from the referrers API, or (for a registry that
    /// said it has none, asked once per run) from the fallback tag when staging lists it.
    async fn source_referrers(
        &self,
        source: &Repository,
        digest: &Digest,
    ) -> Result<Option<Manifest>, CopyError> {
        if !self.lacks_referrers_api(source.host()) {
            match self.client.referrers(source, digest).await? {
                Some(index) => return Ok(Some(index)),
                None => self.note_no_referrers_api(source.host()),
            }
        }
        let tag = digest.referrers_tag();
        if !self.source_tags(source).await?.contains(&tag) {
            return Ok(None);
        }
        Ok(self.client.manifest_get(source, &tag).await?)
    }
}
