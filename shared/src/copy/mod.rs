//! The transfer engine: copies each planned unit (one source digest) to all its destinations,
//! exactly, once, and safely.
//!
//! Per unit, in three stages: `observe` reads what the decision needs (each destination's
//! tags and digest, staging's manifest tree, cosign artifacts and referrers); [`decide()`] turns
//! the unit and those observations into ordered [`Step`]s without any IO (refusing tag moves
//! and unsigned sources, children before an index, blobs before a manifest, tags last); the
//! steps are then carried out (`execute`), or in a dry run only recorded. Blobs move at most
//! once per destination registry (single-flight, then cross-repository mounts), and a blob
//! going to several registries is read from staging once and streamed to all of them,
//! verified before commit. Signing is not the engine's: see [`crate::sign`].

mod blob;
pub mod decide;
#[cfg(test)]
mod decide_tests;
mod document;
mod error;
mod execute;
mod fanout;
mod flights;
mod observation;
mod observe;
mod progress;

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

pub use decide::{Observed, Step, decide};
pub use document::{Descriptor, Document, DocumentError};
pub use error::CopyError;
pub use flights::Flights;
pub use progress::Progress;

use crate::http::retry::retry_unit;
use crate::plan::Unit;
use crate::reference::{Digest, Repository, Tag};
use crate::registry::Client;
use crate::sign::keys::VerifyingKey;

/// How the engine works.
#[derive(Clone, Copy, Debug)]
pub struct CopyOptions {
    /// Contact registries read-only and report what would be done.
    pub dry_run: bool,
    /// Units copied at the same time.
    pub units_in_parallel: usize,
    /// Blobs of one image copied at the same time.
    pub blobs_in_parallel: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            dry_run: false,
            units_in_parallel: 16,
            blobs_in_parallel: 4,
        }
    }
}

/// One thing done (or, in a dry run, to be done) to a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A blob uploaded (streamed from staging).
    CopyBlob {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The destination repository.
        to: Repository,
    },
    /// A blob mounted from another repository of the same registry.
    MountBlob {
        /// The blob.
        digest: Digest,
        /// The destination repository.
        to: Repository,
        /// The repository it was mounted from.
        from: Repository,
    },
    /// A manifest (image, index or index child) written by digest.
    PutManifest {
        /// The manifest.
        digest: Digest,
        /// The destination repository.
        to: Repository,
    },
    /// A tag written.
    PutTag {
        /// The tag.
        tag: Tag,
        /// The destination repository.
        to: Repository,
    },
    /// The digest was already there: nothing to copy.
    Present {
        /// The destination repository.
        at: Repository,
    },
    /// A cosign artifact of the digest (`.sig`, `.att`, `.sbom`) or its referrers fallback
    /// index, carried from staging.
    CopyArtifact {
        /// The artifact's tag.
        tag: Tag,
        /// The destination repository.
        to: Repository,
    },
    /// A signature of the digest pushed (or, `added: false`, found there already) by the sign
    /// step ([`crate::sign::SignedAt`]); reported beside the copy's actions.
    Sign {
        /// The destination repository (`REPOSITORY@CHILD` for an index child).
        to: String,
        /// False when a valid signature by the same key was already there.
        added: bool,
    },
}

impl From<&crate::sign::SignedAt> for Action {
    fn from(signed: &crate::sign::SignedAt) -> Self {
        Action::Sign {
            to: signed.to_string(),
            added: signed.added,
        }
    }
}

/// What happened to one unit.
#[derive(Debug)]
pub struct UnitReport {
    /// The unit's id.
    pub id: String,
    /// The source repository.
    pub source: Repository,
    /// The digest.
    pub digest: Digest,
    /// What was done (or would be, in a dry run), in order.
    pub actions: Vec<Action>,
    /// `None` on success, else why the unit failed.
    pub error: Option<CopyError>,
    /// Wall time spent on the unit.
    pub seconds: f64,
    /// The unit's policy checked against the staging digest, when it has one (boxed: most
    /// units have none, and reports travel in enums).
    pub policy: Option<Box<crate::manifest::policy::Report>>,
}

impl UnitReport {
    /// True when every destination holds the digest and its tags (or would, in a dry run).
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// True when nothing had to be written.
    pub fn was_present(&self) -> bool {
        self.succeeded()
            && self.actions.iter().all(|a| {
                matches!(
                    a,
                    Action::Present { .. } | Action::Sign { added: false, .. }
                )
            })
    }
}

/// The transfer engine, shared by every unit of a run.
pub struct Engine {
    client: Arc<Client>,
    /// Hosts that answered that they have no referrers API (asked once per run).
    no_referrers_api: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Each source repository's tags, listed once per run (to find cosign artifacts).
    source_tags: std::sync::Mutex<std::collections::HashMap<Repository, Arc<SourceTags>>>,
    required_signer: Option<VerifyingKey>,
    flights: Arc<Flights>,
    progress: Arc<Progress>,
    options: CopyOptions,
}

/// One source repository's tags, listed once.
type SourceTags = tokio::sync::OnceCell<Arc<std::collections::HashSet<Tag>>>;

impl Engine {
    /// An engine copying with `client`.
    pub fn new(client: Arc<Client>, options: CopyOptions) -> Self {
        Engine {
            client,
            no_referrers_api: std::sync::Mutex::new(std::collections::HashSet::new()),
            source_tags: std::sync::Mutex::new(std::collections::HashMap::new()),
            required_signer: None,
            flights: Arc::new(Flights::default()),
            progress: Arc::new(Progress::default()),
            options,
        }
    }

    /// Refuses to promote a staging digest without a valid signature by `key` (a maintainer's
    /// key): such a unit fails before anything is written.
    #[must_use]
    pub fn requiring_signature(mut self, key: VerifyingKey) -> Self {
        self.required_signer = Some(key);
        self
    }

    /// The tags of source repository `repository`, listed on first use: one listing per
    /// repository and engine, which concurrent units of that repository wait for and share,
    /// while units of other repositories list theirs at the same time (a listing that fails is
    /// tried again by the next unit).
    pub(crate) async fn source_tags(
        &self,
        repository: &Repository,
    ) -> Result<Arc<std::collections::HashSet<Tag>>, crate::registry::RegistryError> {
        let cell = Arc::clone(
            self.source_tags
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(repository.clone())
                .or_default(),
        );
        cell.get_or_try_init(|| async {
            Ok(Arc::new(
                self.client.tags(repository).await?.into_iter().collect(),
            ))
        })
        .await
        .cloned()
    }

    /// True when `host` said it has no referrers API.
    pub(crate) fn lacks_referrers_api(&self, host: &str) -> bool {
        self.no_referrers_api
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(host)
    }

    /// Notes that `host` has no referrers API.
    pub(crate) fn note_no_referrers_api(&self, host: &str) {
        self.no_referrers_api
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(host.to_owned());
    }

    /// Live counters, for a progress display.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Copies every unit, several at a time; reports come back in the units' order.
    pub async fn promote(&self, units: &[Unit]) -> Vec<UnitReport> {
        let mut reports: Vec<(usize, UnitReport)> =
            futures_util::stream::iter(units.iter().enumerate())
                .map(|(i, unit)| async move { (i, self.copy_unit(unit).await) })
                .buffer_unordered(self.options.units_in_parallel.max(1))
                .collect()
                .await;
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, report)| report).collect()
    }

    /// Copies one unit to all its destinations.
    ///
    /// A unit that fails for a reason that may pass (throttling past the client's own
    /// retries, a broken download) is tried again (see [`retry_unit`]); every step is
    /// idempotent, so a retry only does what is still missing. A request that timed out is not:
    /// the client already spent its retry budget on it, and a registry that does not answer is
    /// reported now rather than three budgets later (the unit stays retryable for its queue).
    pub async fn copy_unit(&self, unit: &Unit) -> UnitReport {
        let started = Instant::now();
        let run = execute::UnitRun::new(self);
        let checked = std::sync::Mutex::new(None);
        // Boxed: the observation and execution futures are deep, and a caller's future (a
        // queue batch of units) would otherwise be too deep for the compiler's layout limit.
        let result = retry_unit(CopyError::is_worth_retrying_now, || async {
            let observed = Box::pin(self.observe(unit)).await?;
            *checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                observed.policy.clone().map(Box::new);
            let steps = decide(unit, &observed)?;
            Box::pin(run.execute(steps)).await
        })
        .await;
        self.progress
            .units_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = &result {
            tracing::warn!(unit = %unit.id, source = %unit.source, digest = %unit.digest, %error, "unit failed");
        }
        UnitReport {
            id: unit.id.clone(),
            source: unit.source.clone(),
            digest: unit.digest.clone(),
            actions: run.into_actions(),
            error: result.err(),
            seconds: started.elapsed().as_secs_f64(),
            policy: checked
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// What copying `unit` would take now: its observations and the steps decided from them
    /// (reads only).
    pub async fn plan_unit(&self, unit: &Unit) -> Result<(Observed, Vec<Step>), CopyError> {
        let observed = self.observe(unit).await?;
        let steps = decide(unit, &observed)?;
        Ok((observed, steps))
    }
}
