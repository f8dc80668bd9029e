//! Signing one promoted unit: its digest signed once (and, when asked, each child of an index),
//! the same signature pushed to every destination.
//!
//! Signing is the sign step's, after copy-digest has promoted the unit: each destination is
//! checked to hold the digest first (a destination without it is refused: nothing is signed
//! that production does not serve), then each digest is signed once and pushed everywhere.
//! Pushing is idempotent: a destination that already holds a valid signature by the key gets
//! nothing.

use std::fmt;

use futures_util::future::try_join_all;

use super::{Pushed, SignError, Signer, push};
use crate::http::retry::retry_unit;
use crate::plan::Unit;
use crate::reference::{Digest, Repository};
use crate::registry::Client;

/// Where one signature went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAt {
    /// The destination repository.
    pub repository: Repository,
    /// The signed digest when it is an index child, not the unit's digest.
    pub child: Option<Digest>,
    /// False when a valid signature by the key was there already.
    pub added: bool,
}

impl fmt::Display for SignedAt {
    /// `REPOSITORY` for the unit's digest, `REPOSITORY@CHILD` for an index child.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.child {
            None => write!(f, "{}", self.repository),
            Some(child) => write!(f, "{}@{child}", self.repository),
        }
    }
}

impl Signer {
    /// Signs `unit` in every destination, retrying what may pass a few times; returns where
    /// each signature went (in destination order, the unit's digest first).
    pub async fn sign_unit(
        &self,
        client: &Client,
        unit: &Unit,
    ) -> Result<Vec<SignedAt>, SignError> {
        retry_unit(SignError::is_retryable, || {
            self.sign_unit_once(client, unit)
        })
        .await
    }

    async fn sign_unit_once(
        &self,
        client: &Client,
        unit: &Unit,
    ) -> Result<Vec<SignedAt>, SignError> {
        let repositories: Vec<&Repository> =
            unit.destinations.iter().map(|d| &d.repository).collect();
        let heads = try_join_all(
            repositories
                .iter()
                .map(|r| client.manifest_head(r, &unit.digest)),
        )
        .await?;
        if let Some((absent, _)) = repositories
            .iter()
            .zip(&heads)
            .find(|(_, head)| head.is_none())
        {
            return Err(SignError::NotPromoted {
                repository: (*absent).clone(),
                digest: unit.digest.clone(),
            });
        }
        let mut digests = vec![(unit.digest.clone(), None)];
        if self.signs_children() {
            digests.extend(
                index_children(client, &unit.source, &unit.digest)
                    .await?
                    .into_iter()
                    .map(|child| (child.clone(), Some(child))),
            );
        }
        let reference = self.reference_for(repositories.iter().copied());
        let mut signed_at = Vec::new();
        for (digest, child) in digests {
            let signed = self.sign(&reference, &digest).await?;
            for repository in &repositories {
                let pushed = push(client, repository, &digest, &signed, self.public()).await?;
                signed_at.push(SignedAt {
                    repository: (*repository).clone(),
                    child: child.clone(),
                    added: pushed == Pushed::Added,
                });
            }
        }
        Ok(signed_at)
    }
}

/// The children of `digest` in `repository` when it is an index (empty otherwise).
async fn index_children(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<Digest>, SignError> {
    let Some(manifest) = client.manifest_get(repository, digest).await? else {
        return Ok(Vec::new());
    };
    Ok(manifest.index_children())
}
