//! Making sure every target repository holds one blob: skip where present, mount where the
//! registry already has it, upload once per registry otherwise (one source read for all).

use std::collections::BTreeMap;

use futures_util::future::join_all;

use super::Action;
use super::document::Descriptor;
use super::error::CopyError;
use super::execute::UnitRun;
use super::fanout::stream_blob;
use super::flights::{Claim, Flight};
use crate::reference::Repository;
use crate::registry::UploadStart;

/// A repository that needs the blob, and how it will get it.
enum Plan {
    /// Upload into this session (the first repository of its registry to need it).
    Upload(Repository, String),
    /// Mount from this repository of the same registry once the upload there is done.
    MountLater(Repository, Repository),
}

impl UnitRun<'_> {
    /// Ensures `blob` is in every one of `targets`.
    pub(super) async fn ensure_blob(
        &self,
        source: &Repository,
        blob: &Descriptor,
        targets: &[Repository],
    ) -> Result<(), CopyError> {
        let client = &self.engine.client;
        let flights = &self.engine.flights;
        let mut plans: Vec<Plan> = Vec::new();
        // Where this process already put the blob, a mount does it in one request (and is a
        // no-op where the blob already is): no HEAD first.
        let mut unknown: Vec<&Repository> = Vec::new();
        for target in targets {
            if flights.holds(&blob.digest, target) {
                // This process put it (or found it) in that very repository: nothing to do.
                continue;
            }
            match flights.known(target.host(), &blob.digest) {
                Some(from) if from == *target => {}
                Some(from) => plans.push(Plan::MountLater(target.clone(), from)),
                None => unknown.push(target),
            }
        }
        let exists = join_all(unknown.iter().map(|t| client.blob_exists(t, &blob.digest))).await;
        let mut by_host: BTreeMap<&str, Vec<&Repository>> = BTreeMap::new();
        for (target, exists) in unknown.into_iter().zip(exists) {
            if exists? {
                flights.record(&blob.digest, target);
            } else {
                by_host.entry(target.host()).or_default().push(target);
            }
        }
        let mut claims: Vec<(Claim, Repository)> = Vec::new();
        for (host, group) in by_host {
            let (mount_from, owner) = match self.engine.flights.claim(host, &blob.digest).await {
                Flight::Done(from) => (Some(from), None),
                Flight::Owner(claim) => {
                    let from_source = (source.host() == host).then(|| source.clone());
                    (from_source, Some(claim))
                }
            };
            let mut group = group.into_iter();
            let Some(first) = group.next() else { continue };
            // The first repository mounts (from the source or a finished upload) or uploads.
            self.mount_or_start(blob, first, mount_from.as_ref(), &mut plans)
                .await?;
            let primary = first.clone();
            if let Some(claim) = owner {
                claims.push((claim, primary.clone()));
            }
            plans.extend(group.map(|r| Plan::MountLater(r.clone(), primary.clone())));
        }
        let uploads: Vec<(Repository, String)> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Upload(repository, session) => Some((repository.clone(), session.clone())),
                Plan::MountLater(..) => None,
            })
            .collect();
        self.upload(source, blob, &uploads).await?;
        for (claim, primary) in claims {
            claim.done(&primary);
        }
        let mut fallback = Vec::new();
        for plan in plans {
            if let Plan::MountLater(repository, from) = plan {
                // Another unit may have placed it there while this one waited.
                if flights.holds(&blob.digest, &repository) {
                    continue;
                }
                self.mount_or_start(blob, &repository, Some(&from), &mut fallback)
                    .await?;
            }
        }
        let fallback: Vec<(Repository, String)> = fallback
            .into_iter()
            .filter_map(|p| match p {
                Plan::Upload(repository, session) => Some((repository, session)),
                Plan::MountLater(..) => None,
            })
            .collect();
        self.upload(source, blob, &fallback).await
    }

    /// Tries to mount `blob` into `target` from `from` (a repository of the same host); when
    /// that is refused or there is nothing to mount from, plans an upload. True when mounted.
    async fn mount_or_start(
        &self,
        blob: &Descriptor,
        target: &Repository,
        from: Option<&Repository>,
        plans: &mut Vec<Plan>,
    ) -> Result<bool, CopyError> {
        if from == Some(target) {
            // Another unit of this process just put it in this very repository.
            return Ok(true);
        }
        if self.dry_run() {
            match from {
                Some(from) => self.record_mount(blob, target, from),
                None => plans.push(Plan::Upload(target.clone(), String::new())),
            }
            return Ok(from.is_some());
        }
        let mount = from.map(|from| (&blob.digest, from.path()));
        match (self.engine.client.upload_start(target, mount).await?, from) {
            (UploadStart::Mounted, Some(from)) => {
                self.record_mount(blob, target, from);
                Ok(true)
            }
            (UploadStart::Mounted, None) => Ok(true),
            (UploadStart::Session(session), _) => {
                plans.push(Plan::Upload(target.clone(), session));
                Ok(false)
            }
        }
    }

    fn record_mount(&self, blob: &Descriptor, target: &Repository, from: &Repository) {
        self.engine.flights.add_holder(&blob.digest, target);
        self.record(Action::MountBlob {
            digest: blob.digest.clone(),
            to: target.clone(),
            from: from.clone(),
        });
    }

    /// Streams `blob` from `source` into every upload session, reading the source once.
    async fn upload(
        &self,
        source: &Repository,
        blob: &Descriptor,
        uploads: &[(Repository, String)],
    ) -> Result<(), CopyError> {
        if uploads.is_empty() {
            return Ok(());
        }
        if !self.dry_run() {
            let results = stream_blob(
                &self.engine.client,
                &self.engine.progress,
                source,
                blob,
                uploads,
            )
            .await?;
            for result in results {
                result?;
            }
        }
        for (repository, _) in uploads {
            self.engine.flights.add_holder(&blob.digest, repository);
            self.record(Action::CopyBlob {
                digest: blob.digest.clone(),
                size: blob.size,
                to: repository.clone(),
            });
        }
        Ok(())
    }
}
