//! Copying one unit: observe, refuse tag moves, copy the manifest tree, then tag.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::{join_all, try_join_all};
use futures_util::{StreamExt, TryStreamExt};

use super::document::{self, Document};
use super::error::CopyError;
use super::{Action, Engine};
use crate::plan::Unit;
use crate::reference::Tag;
use crate::registry::{Manifest, Repository};

/// What a destination already holds for the unit.
struct Observed {
    repository: Repository,
    /// The digest is there.
    present: bool,
    /// Tags to add (absent there).
    missing_tags: Vec<Tag>,
}

/// The work on one unit, collecting the actions taken.
pub struct UnitRun<'e> {
    pub(super) engine: &'e Engine,
    unit: &'e Unit,
    pub(super) actions: std::sync::Mutex<Vec<Action>>,
}

/// `current` (a referrers index) with `referrers` it lacks added; `None` when it lacks none.
fn merge_indexes(current: &Manifest, referrers: &[document::Descriptor]) -> Option<Manifest> {
    let mut json: serde_json::Value = serde_json::from_slice(&current.bytes).ok()?;
    let entries = json.get_mut("manifests")?.as_array_mut()?;
    let known: Vec<String> = entries
        .iter()
        .filter_map(|e| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
        .collect();
    let mut added = false;
    for referrer in referrers.iter().filter(|r| !known.contains(&r.digest)) {
        entries.push(serde_json::json!({
            "mediaType": referrer.media_type,
            "digest": referrer.digest,
            "size": referrer.size,
        }));
        added = true;
    }
    if !added {
        return None;
    }
    let bytes = bytes::Bytes::from(serde_json::to_vec(&json).ok()?);
    Some(Manifest {
        media_type: current.media_type.clone(),
        digest: crate::registry::sha256_digest(&bytes),
        bytes,
    })
}

/// The cosign artifact tags carried from staging: signatures, attestations, SBOMs.
const ARTIFACT_SUFFIXES: &[&str] = &["sig", "att", "sbom"];

type BoxedFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CopyError>> + Send + 'a>>;

impl<'e> UnitRun<'e> {
    pub fn new(engine: &'e Engine, unit: &'e Unit) -> Self {
        UnitRun {
            engine,
            unit,
            actions: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn into_actions(self) -> Vec<Action> {
        self.actions
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn record(&self, action: Action) {
        self.actions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(action);
    }

    pub(super) fn dry_run(&self) -> bool {
        self.engine.options.dry_run
    }

    pub async fn run(&mut self) -> Result<(), CopyError> {
        let source = Repository::parse(&self.unit.source)?;
        let digest = self.unit.digest.as_str();
        if let Some(key) = &self.engine.required_signer
            && Box::pin(crate::sign::verify(
                &self.engine.client,
                &source,
                digest,
                key,
            ))
            .await?
            .is_empty()
        {
            return Err(CopyError::Unsigned {
                repository: source.to_string(),
                digest: digest.to_owned(),
            });
        }
        let destinations = self.unit.destinations.iter();
        let observed =
            try_join_all(destinations.map(|d| self.observe(&d.repository, &d.tags))).await?;
        for o in observed.iter().filter(|o| o.present) {
            self.record(Action::Present {
                at: o.repository.to_string(),
            });
        }
        let needing: Vec<Repository> = observed
            .iter()
            .filter(|o| !o.present)
            .map(|o| o.repository.clone())
            .collect();
        if needing.is_empty() && observed.iter().all(|o| o.missing_tags.is_empty()) {
            Box::pin(self.carry_artifacts(&source, &observed)).await?;
            Box::pin(self.carry_referrers(&source, &observed)).await?;
            return Box::pin(self.sign(&observed)).await;
        }
        let manifest = self
            .engine
            .client
            .manifest_get(&source, digest)
            .await?
            .ok_or_else(|| CopyError::SourceMissing {
                repository: source.to_string(),
                digest: digest.to_owned(),
            })?;
        if !needing.is_empty() {
            self.copy_contents(&source, &manifest, &needing).await?;
        }
        for o in &observed {
            let mut tags = o.missing_tags.iter();
            if !o.present {
                // One PUT stores the manifest and its first tag (a digest-only entry: by digest).
                let first = tags.next();
                let reference = first.map_or(digest, Tag::as_str);
                self.write(&o.repository, reference, &manifest).await?;
                if let Some(tag) = first {
                    self.record(Action::PutTag {
                        tag: tag.to_string(),
                        to: o.repository.to_string(),
                    });
                }
            }
            for tag in tags {
                if !self.dry_run() {
                    self.engine
                        .client
                        .manifest_put(&o.repository, tag.as_str(), &manifest)
                        .await?;
                }
                self.record(Action::PutTag {
                    tag: tag.to_string(),
                    to: o.repository.to_string(),
                });
            }
        }
        Box::pin(self.carry_artifacts(&source, &observed)).await?;
        Box::pin(self.carry_referrers(&source, &observed)).await?;
        Box::pin(self.sign(&observed)).await
    }

    /// Copies the digest's OCI 1.1 referrers (signatures, SBOMs, attestations that name it as
    /// their `subject`) to every destination: from the source's referrers API, or from its
    /// fallback tag `sha256-<hex>` for registries without one. Each referrer is copied by digest;
    /// destinations get the fallback tag too (merged with the referrers already listed there),
    /// since not every registry indexes referrers by itself.
    async fn carry_referrers(
        &self,
        source: &Repository,
        observed: &[Observed],
    ) -> Result<(), CopyError> {
        let client = &self.engine.client;
        let digest = self.unit.digest.as_str();
        let tag = digest.replace(':', "-");
        let from_api = if self.engine.lacks_referrers_api(&source.host) {
            None
        } else {
            let answer = client.referrers(source, digest).await?;
            if answer.is_none() {
                self.engine.note_no_referrers_api(&source.host);
            }
            answer
        };
        let index = match from_api {
            Some(index) => Some(index),
            None if self.engine.source_tags(source).await?.contains(&tag) => {
                client.manifest_get(source, &tag).await?
            }
            None => None,
        };
        let Some(index) = index else { return Ok(()) };
        let Ok(Document::Index {
            children: referrers,
        }) = document::parse(&index.media_type, &index.bytes)
        else {
            return Ok(());
        };
        if referrers.is_empty() {
            return Ok(());
        }
        for o in observed {
            let target = std::slice::from_ref(&o.repository);
            for referrer in &referrers {
                if client
                    .manifest_head(&o.repository, &referrer.digest)
                    .await?
                    .is_some()
                {
                    continue;
                }
                let manifest = client
                    .manifest_get(source, &referrer.digest)
                    .await?
                    .ok_or_else(|| CopyError::SourceMissing {
                        repository: source.to_string(),
                        digest: referrer.digest.clone(),
                    })?;
                self.copy_contents(source, &manifest, target).await?;
                self.write(&o.repository, &referrer.digest, &manifest)
                    .await?;
            }
            let merged = match client.manifest_get(&o.repository, &tag).await? {
                None => Some(index.clone()),
                Some(current) if current.digest == index.digest => None,
                Some(current) => merge_indexes(&current, &referrers),
            };
            if let Some(merged) = merged {
                if !self.dry_run() {
                    client.manifest_put(&o.repository, &tag, &merged).await?;
                }
                self.record(Action::CopyArtifact {
                    tag: tag.clone(),
                    to: o.repository.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Copies staging's cosign artifacts of the digest (`sha256-<hex>.sig`, `.att`, `.sbom`)
    /// to every destination, byte for byte where the destination has none. A destination that
    /// already has signatures gets staging's signatures appended (both signers' survive); a
    /// different `.att` or `.sbom` already there is left alone (tags are never moved).
    async fn carry_artifacts(
        &self,
        source: &Repository,
        observed: &[Observed],
    ) -> Result<(), CopyError> {
        let client = &self.engine.client;
        let digest = self.unit.digest.as_str();
        let source_tags = self.engine.source_tags(source).await?;
        for suffix in ARTIFACT_SUFFIXES {
            let tag = format!("{}.{suffix}", digest.replace(':', "-"));
            if !source_tags.contains(&tag) {
                continue;
            }
            let Some(artifact) = client.manifest_get(source, &tag).await? else {
                continue;
            };
            for o in observed {
                let current = client.resolve(&o.repository, &tag).await?;
                match current {
                    Some(current) if current == artifact.digest => {}
                    None => {
                        self.copy_contents(source, &artifact, std::slice::from_ref(&o.repository))
                            .await?;
                        if !self.dry_run() {
                            client.manifest_put(&o.repository, &tag, &artifact).await?;
                        }
                        self.record(Action::CopyArtifact {
                            tag: tag.clone(),
                            to: o.repository.to_string(),
                        });
                    }
                    Some(_) if *suffix == "sig" => {
                        // Only when staging has signatures the destination lacks: their blobs
                        // first, then the merged signature image.
                        let merged = crate::sign::merged_signatures(
                            client,
                            &o.repository,
                            digest,
                            &artifact,
                        )
                        .await?;
                        if let Some(layers) = merged {
                            self.copy_contents(
                                source,
                                &artifact,
                                std::slice::from_ref(&o.repository),
                            )
                            .await?;
                            if !self.dry_run() {
                                crate::sign::write_signatures(
                                    client,
                                    &o.repository,
                                    digest,
                                    &layers,
                                )
                                .await?;
                            }
                            self.record(Action::CopyArtifact {
                                tag: tag.clone(),
                                to: o.repository.to_string(),
                            });
                        }
                    }
                    Some(other) => {
                        tracing::warn!(repository = %o.repository, tag, %other, staging = %artifact.digest, "a different artifact is already there; left alone");
                    }
                }
            }
        }
        Ok(())
    }

    /// Does `work`: a copy ([`Self::run`]) or signing only ([`Self::sign_only`]).
    pub(super) async fn work(&mut self, work: super::Work) -> Result<(), CopyError> {
        match work {
            super::Work::Copy => self.run().await,
            super::Work::Sign => self.sign_only().await,
        }
    }

    /// Signs an already promoted unit in every destination (what the sign step does after
    /// copy-digest): observes each destination, refuses one that lacks the digest, then signs.
    pub async fn sign_only(&mut self) -> Result<(), CopyError> {
        let destinations = self.unit.destinations.iter();
        let observed =
            try_join_all(destinations.map(|d| self.observe(&d.repository, &d.tags))).await?;
        if let Some(absent) = observed.iter().find(|o| !o.present) {
            return Err(CopyError::NotPromoted {
                repository: absent.repository.to_string(),
                digest: self.unit.digest.to_string(),
            });
        }
        Box::pin(self.sign(&observed)).await
    }

    /// Signs the digest once and pushes the signature to every destination (not in a dry
    /// run); with [`crate::sign::Signer::signs_children`], each child of an index too.
    async fn sign(&self, observed: &[Observed]) -> Result<(), CopyError> {
        let Some(signer) = &self.engine.signer else {
            return Ok(());
        };
        if self.dry_run() {
            return Ok(());
        }
        let digest = self.unit.digest.as_str();
        let reference = signer.reference_for(self.unit.destinations.iter().map(|d| &*d.repository));
        let mut digests = vec![digest.to_owned()];
        if signer.signs_children() {
            let source = Repository::parse(&self.unit.source)?;
            if let Some(manifest) = self.engine.client.manifest_get(&source, digest).await?
                && let Ok(Document::Index { children }) =
                    document::parse(&manifest.media_type, &manifest.bytes)
            {
                digests.extend(children.into_iter().map(|c| c.digest));
            }
        }
        for signed_digest in &digests {
            let signed = signer.sign(&reference, signed_digest).await?;
            for o in observed {
                let pushed = crate::sign::push(
                    &self.engine.client,
                    &o.repository,
                    signed_digest,
                    &signed,
                    signer.public(),
                )
                .await?;
                let to = if signed_digest == digest {
                    o.repository.to_string()
                } else {
                    format!("{}@{signed_digest}", o.repository)
                };
                self.record(Action::Sign {
                    to,
                    added: pushed == crate::sign::Pushed::Added,
                });
            }
        }
        Ok(())
    }

    /// Writes `manifest` under `reference` (its digest or a tag) in `target`.
    async fn write(
        &self,
        target: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        if !self.dry_run() {
            self.engine
                .client
                .manifest_put(target, reference, manifest)
                .await?;
        }
        self.record(Action::PutManifest {
            digest: manifest.digest.clone(),
            to: target.to_string(),
        });
        Ok(())
    }

    /// HEADs each tag and, unless a tag already names it, the digest, in one destination; a
    /// tag on another digest is refused.
    async fn observe(&self, repository: &str, tags: &[Tag]) -> Result<Observed, CopyError> {
        let client = &self.engine.client;
        let repository = Repository::parse(repository)?;
        let wanted = self.unit.digest.as_str();
        let current = try_join_all(
            tags.iter()
                .map(|tag| client.resolve(&repository, tag.as_str())),
        )
        .await?;
        let mut missing_tags = Vec::new();
        let mut tagged = false;
        for (tag, current) in tags.iter().zip(current) {
            match current {
                None => missing_tags.push(tag.clone()),
                Some(current) if current == wanted => tagged = true,
                Some(current) => {
                    return Err(CopyError::TagMove {
                        repository: repository.to_string(),
                        tag: tag.to_string(),
                        current,
                        wanted: wanted.to_owned(),
                    });
                }
            }
        }
        let present = tagged || client.manifest_head(&repository, wanted).await?.is_some();
        Ok(Observed {
            repository,
            present,
            missing_tags,
        })
    }

    /// Copies what `manifest` references into `targets`: an index's children (each written by
    /// digest where missing), or an image's blobs. The manifest itself is written by the caller.
    fn copy_contents<'a>(
        &'a self,
        source: &'a Repository,
        manifest: &'a Manifest,
        targets: &'a [Repository],
    ) -> BoxedFuture<'a> {
        Box::pin(async move {
            let client = &self.engine.client;
            let parsed =
                document::parse(&manifest.media_type, &manifest.bytes).map_err(|source| {
                    CopyError::Document {
                        digest: manifest.digest.clone(),
                        source,
                    }
                })?;
            match parsed {
                Document::Index { children } => {
                    for child in &children {
                        let heads = join_all(
                            targets
                                .iter()
                                .map(|t| client.manifest_head(t, &child.digest)),
                        )
                        .await;
                        let mut lacking = Vec::new();
                        for (target, head) in targets.iter().zip(heads) {
                            if head?.is_none() {
                                lacking.push(target.clone());
                            }
                        }
                        if lacking.is_empty() {
                            continue;
                        }
                        let child_manifest = client
                            .manifest_get(source, &child.digest)
                            .await?
                            .ok_or_else(|| CopyError::SourceMissing {
                                repository: source.to_string(),
                                digest: child.digest.clone(),
                            })?;
                        self.copy_contents(source, &child_manifest, &lacking)
                            .await?;
                        for target in &lacking {
                            self.write(target, &child.digest, &child_manifest).await?;
                        }
                    }
                }
                Document::Image { blobs } => {
                    // Indexes, not `blobs.iter()`: a closure over `&Descriptor` trips the
                    // compiler's higher-ranked lifetime check inside this boxed future.
                    let blobs = &blobs;
                    futures_util::stream::iter(0..blobs.len())
                        .map(|i| self.ensure_blob(source, &blobs[i], targets))
                        .buffer_unordered(self.engine.options.blobs_in_parallel.max(1))
                        .try_collect::<Vec<()>>()
                        .await?;
                }
            }
            Ok(())
        })
    }
}
