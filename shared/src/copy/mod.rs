//! The transfer engine: copies each planned unit (one source digest) to all its destinations,
//! exactly, once, and safely.
//!
//! Per unit: observe every destination first (HEAD the digest and each tag); refuse the unit if
//! a tag points at another digest (tags are never moved); fetch the source manifest (verified
//! against its digest); copy an index's children before the index; copy each image's blobs
//! before its manifest; add missing tags last. Blobs move at most once per destination
//! registry (single-flight, then cross-repository mounts), and a blob going to several
//! registries is read from staging once and streamed to all of them, verified before commit.

mod blob;
mod document;
mod error;
mod fanout;
mod flights;
mod progress;
mod unit;

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

pub use document::{Descriptor, Document, DocumentError};
pub use error::CopyError;
pub use flights::Flights;
pub use progress::Progress;

use crate::plan::Unit;
use crate::registry::Client;
use crate::sign::Signer;
use crate::sign::keys::VerifyingKey;

/// Tries per unit when failures are retryable.
pub const UNIT_ATTEMPTS: u32 = 3;

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
        digest: String,
        /// Its size.
        size: u64,
        /// The destination repository.
        to: String,
    },
    /// A blob mounted from another repository of the same registry.
    MountBlob {
        /// The blob.
        digest: String,
        /// The destination repository.
        to: String,
        /// The repository it was mounted from.
        from: String,
    },
    /// A manifest (image, index or index child) written by digest.
    PutManifest {
        /// The manifest.
        digest: String,
        /// The destination repository.
        to: String,
    },
    /// A tag written.
    PutTag {
        /// The tag.
        tag: String,
        /// The destination repository.
        to: String,
    },
    /// The digest was already there: nothing to copy.
    Present {
        /// The destination repository.
        at: String,
    },
    /// A cosign artifact of the digest (`.sig`, `.att`, `.sbom`) carried from staging.
    CopyArtifact {
        /// The artifact's tag.
        tag: String,
        /// The destination repository.
        to: String,
    },
    /// A signature of the digest pushed (or, `added: false`, found there already).
    Sign {
        /// The destination repository.
        to: String,
        /// False when a valid signature by the same key was already there.
        added: bool,
    },
}

/// What happened to one unit.
#[derive(Debug)]
pub struct UnitReport {
    /// The unit's id.
    pub id: String,
    /// The source repository.
    pub source: String,
    /// The digest.
    pub digest: String,
    /// What was done (or would be, in a dry run), in order.
    pub actions: Vec<Action>,
    /// `None` on success, else why the unit failed.
    pub error: Option<CopyError>,
    /// Wall time spent on the unit.
    pub seconds: f64,
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

/// What is done to a unit.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Copy it (and sign it, when the engine has a signer).
    Copy,
    /// Only sign it (it is promoted already).
    Sign,
}

/// The transfer engine, shared by every unit of a run.
pub struct Engine {
    client: Arc<Client>,
    /// Hosts that answered that they have no referrers API (asked once per run).
    no_referrers_api: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Each source repository's tags, listed once per run (to find cosign artifacts).
    source_tags: tokio::sync::Mutex<
        std::collections::HashMap<String, Arc<std::collections::HashSet<String>>>,
    >,
    signer: Option<Arc<Signer>>,
    required_signer: Option<VerifyingKey>,
    flights: Arc<Flights>,
    progress: Arc<Progress>,
    options: CopyOptions,
}

impl Engine {
    /// An engine copying with `client`.
    pub fn new(client: Arc<Client>, options: CopyOptions) -> Self {
        Engine {
            client,
            no_referrers_api: std::sync::Mutex::new(std::collections::HashSet::new()),
            source_tags: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            signer: None,
            required_signer: None,
            flights: Arc::new(Flights::default()),
            progress: Arc::new(Progress::default()),
            options,
        }
    }

    /// Signs every unit it copies (after the copy, in every destination) with `signer`.
    #[must_use]
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// Signs with a signer shared with other engines (one per queue batch, say).
    #[must_use]
    pub fn with_shared_signer(mut self, signer: Arc<Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Refuses to promote a staging digest without a valid signature by `key` (a maintainer's
    /// key): such a unit fails before anything is written.
    #[must_use]
    pub fn requiring_signature(mut self, key: VerifyingKey) -> Self {
        self.required_signer = Some(key);
        self
    }

    /// The tags of source repository `repository`, listed on first use (one listing per run,
    /// held under a lock so concurrent units share it).
    pub(crate) async fn source_tags(
        &self,
        repository: &crate::registry::Repository,
    ) -> Result<Arc<std::collections::HashSet<String>>, crate::registry::RegistryError> {
        let mut cache = self.source_tags.lock().await;
        if let Some(tags) = cache.get(&repository.to_string()) {
            return Ok(Arc::clone(tags));
        }
        let tags: Arc<std::collections::HashSet<String>> =
            Arc::new(self.client.tags(repository).await?.into_iter().collect());
        cache.insert(repository.to_string(), Arc::clone(&tags));
        Ok(tags)
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

    /// Signs one already promoted unit in every destination (with the engine's signer),
    /// retrying retryable failures like [`Engine::copy_unit`].
    pub async fn sign_unit(&self, unit: &Unit) -> UnitReport {
        self.attempt(unit, Work::Sign).await
    }

    /// Copies one unit to all its destinations.
    ///
    /// A unit that fails for a reason that may pass (network, throttling past the client's
    /// own retries, a broken download) is tried again, up to [`UNIT_ATTEMPTS`] times; every
    /// step is idempotent, so a retry only does what is still missing.
    pub async fn copy_unit(&self, unit: &Unit) -> UnitReport {
        let report = self.attempt(unit, Work::Copy).await;
        self.progress
            .units_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(error) = &report.error {
            tracing::warn!(unit = %unit.id, source = %unit.source, digest = %unit.digest, %error, "unit failed");
        }
        report
    }

    /// Does `work` on `unit`, up to [`UNIT_ATTEMPTS`] times while it fails retryably.
    async fn attempt(&self, unit: &Unit, work: Work) -> UnitReport {
        let started = Instant::now();
        let mut run = unit::UnitRun::new(self, unit);
        let mut result = run.work(work).await;
        for attempt in 2..=UNIT_ATTEMPTS {
            match &result {
                Err(error) if error.is_retryable() => {
                    tracing::info!(unit = %unit.id, attempt, %error, "retrying unit");
                    tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                    result = run.work(work).await;
                }
                _ => break,
            }
        }
        UnitReport {
            id: unit.id.clone(),
            source: unit.source.to_string(),
            digest: unit.digest.to_string(),
            actions: run.into_actions(),
            error: result.err(),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}
