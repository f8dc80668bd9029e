//! Carrying out the steps [`super::decide`] chose, recording each as an [`Action`].
//!
//! In a dry run nothing is written: each manifest step is recorded as it would be done, and
//! blob copies are still planned blob by blob (which registry would receive an upload and
//! which a mount, each blob once per registry) from reads only, so the report shows the
//! transfer a real run would make.

use futures_util::{StreamExt, TryStreamExt};

use super::Action;
use super::Engine;
use super::decide::Step;
use super::document::Descriptor;
use super::error::CopyError;
use crate::reference::Repository;

/// The execution of one unit's steps, collecting the actions taken.
pub(super) struct UnitRun<'e> {
    pub(super) engine: &'e Engine,
    actions: std::sync::Mutex<Vec<Action>>,
}

impl<'e> UnitRun<'e> {
    /// An execution with nothing done yet.
    pub(super) fn new(engine: &'e Engine) -> Self {
        UnitRun {
            engine,
            actions: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The actions taken, in order.
    pub(super) fn into_actions(self) -> Vec<Action> {
        self.actions
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes one action taken (or, in a dry run, to take).
    pub(super) fn record(&self, action: Action) {
        self.actions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(action);
    }

    /// True when nothing may be written.
    pub(super) fn dry_run(&self) -> bool {
        self.engine.options.dry_run
    }

    /// Carries out `steps`, in order; stops at the first failure.
    pub(super) async fn execute(&self, steps: Vec<Step>) -> Result<(), CopyError> {
        for step in steps {
            self.step(step).await?;
        }
        Ok(())
    }

    async fn step(&self, step: Step) -> Result<(), CopyError> {
        let client = &self.engine.client;
        let write = !self.dry_run();
        match step {
            Step::Present { at } => self.record(Action::Present { at }),
            Step::CopyBlobs { from, blobs, to } => self.copy_blobs(&from, &blobs, &to).await?,
            Step::PutManifest { manifest, to, tag } => {
                if write {
                    match &tag {
                        Some(tag) => client.manifest_put(&to, tag, &manifest).await?,
                        None => {
                            client
                                .manifest_put(&to, &manifest.digest, &manifest)
                                .await?
                        }
                    }
                }
                self.record(Action::PutManifest {
                    digest: manifest.digest,
                    to: to.clone(),
                });
                if let Some(tag) = tag {
                    self.record(Action::PutTag { tag, to });
                }
            }
            Step::PutTag { tag, manifest, to } => {
                if write {
                    client.manifest_put(&to, &tag, &manifest).await?;
                }
                self.record(Action::PutTag { tag, to });
            }
            Step::PutArtifact {
                tag,
                manifest,
                blob,
                to,
            } => {
                if write {
                    if let Some((digest, bytes)) = blob
                        && !client.blob_exists(&to, &digest).await?
                    {
                        client.upload_bytes(&to, &digest, bytes).await?;
                    }
                    client.manifest_put(&to, &tag, &manifest).await?;
                }
                self.record(Action::CopyArtifact { tag, to });
            }
            Step::KeepArtifact {
                tag,
                at,
                current,
                staging,
            } => {
                tracing::warn!(repository = %at, %tag, %current, %staging, "a different artifact is already there; left alone");
            }
        }
        Ok(())
    }

    /// Makes every one of `blobs` present in each of `to`, several blobs at a time.
    async fn copy_blobs(
        &self,
        from: &Repository,
        blobs: &[Descriptor],
        to: &[Repository],
    ) -> Result<(), CopyError> {
        // Indexes, not `blobs.iter()`: a closure over `&Descriptor` trips the compiler's
        // higher-ranked lifetime check when this future must be `Send`.
        futures_util::stream::iter(0..blobs.len())
            .map(|i| self.ensure_blob(from, &blobs[i], to))
            .buffer_unordered(self.engine.options.blobs_in_parallel.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
