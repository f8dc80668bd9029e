//! One worker's passes over a run's units: take a free unit's lease, copy it, record it.

use crate::copy::{Action, Engine, UnitReport};
use crate::plan::Unit;
use crate::state::lease::{self, Claim, Lease, Worker};
use crate::state::records::{self, UnitFailure, UnitRecord, UnitStatus, encode, now, unit_key};
use crate::state::{StateError, StateStore, Version};

use super::lifecycle::vanished;
use super::{RunOptions, UnitOutcome};
use crate::error_chain::error_chain;

/// A unit after one pass.
pub(super) enum Pass {
    /// Done, copied, or failed.
    Finished(UnitOutcome),
    /// Another worker holds it (its id).
    Held(String),
}

/// One worker's view of a run.
pub(super) struct Work<'a> {
    pub(super) store: &'a StateStore,
    pub(super) engine: &'a Engine,
    pub(super) run: &'a str,
    pub(super) worker: &'a Worker,
    pub(super) options: &'a RunOptions,
}

impl Work<'_> {
    /// One unit: done already, copied now, or (first pass) held by another worker.
    pub(super) async fn unit_pass(
        &self,
        unit: &Unit,
        held_by: Option<String>,
    ) -> Result<Pass, StateError> {
        let wait = held_by.is_some();
        let key = unit_key(self.run, &unit.id);
        let mut waited_for = held_by;
        loop {
            if let Some((record, _)) =
                records::read::<UnitRecord>(self.store, &key, "unit record").await?
                && record.status == UnitStatus::Done
            {
                return Ok(Pass::Finished(match waited_for {
                    Some(_) => UnitOutcome::DoneByOther(record.worker),
                    None => UnitOutcome::AlreadyDone,
                }));
            }
            match lease::acquire(
                self.store,
                &unit.id,
                self.run,
                self.worker,
                self.options.lease_ttl,
            )
            .await?
            {
                Claim::Acquired(lease) => {
                    // The holder may have finished between the read and the lease.
                    let previous =
                        records::read::<UnitRecord>(self.store, &key, "unit record").await?;
                    if let Some((record, _)) = &previous
                        && record.status == UnitStatus::Done
                    {
                        lease.release(self.store).await?;
                        return Ok(Pass::Finished(match waited_for {
                            Some(_) => UnitOutcome::DoneByOther(record.worker.clone()),
                            None => UnitOutcome::AlreadyDone,
                        }));
                    }
                    return self
                        .copy_under_lease(unit, lease, previous)
                        .await
                        .map(|report| Pass::Finished(UnitOutcome::Copied(report)));
                }
                Claim::HeldBy(holder) => {
                    tracing::debug!(unit = %unit.id, holder = %holder.owner, "unit held by another worker");
                    if !wait {
                        return Ok(Pass::Held(holder.owner));
                    }
                    waited_for = Some(holder.owner);
                    tokio::time::sleep(self.options.poll).await;
                }
            }
        }
    }

    /// Copies `unit` while renewing `lease`, recording the attempt before and the result after.
    pub(super) async fn copy_under_lease(
        &self,
        unit: &Unit,
        mut lease: Lease,
        previous: Option<(UnitRecord, Version)>,
    ) -> Result<UnitReport, StateError> {
        let key = unit_key(self.run, &unit.id);
        let attempts = previous.as_ref().map_or(0, |(r, _)| r.attempts) + 1;
        let mut record = UnitRecord {
            schema: "promoter.unit/v1".to_owned(),
            run: self.run.to_owned(),
            id: unit.id.clone(),
            source: unit.source.to_string(),
            digest: unit.digest.to_string(),
            status: UnitStatus::Running,
            attempts,
            worker: self.worker.id.clone(),
            started_at: now(),
            finished_at: None,
            seconds: None,
            writes: 0,
            bytes: 0,
            error: None,
        };
        let version = self
            .put_unit(&key, &record, previous.map(|(_, v)| v))
            .await?;
        let report = {
            let copy = self.engine.copy_unit(unit);
            tokio::pin!(copy);
            let mut renewals = tokio::time::interval(self.options.lease_ttl / 3);
            renewals.tick().await;
            loop {
                tokio::select! {
                    report = &mut copy => break report,
                    _ = renewals.tick() => {
                        if !lease.renew(self.store, self.options.lease_ttl).await? {
                            tracing::warn!(unit = %unit.id, "lease lost while copying; finishing anyway (every step is idempotent)");
                        }
                    }
                }
            }
        };
        record.status = if report.succeeded() {
            UnitStatus::Done
        } else {
            UnitStatus::Failed
        };
        record.finished_at = Some(now());
        record.seconds = Some(report.seconds);
        record.writes = report
            .actions
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    Action::Present { .. } | Action::Sign { added: false, .. }
                )
            })
            .count();
        record.bytes = report
            .actions
            .iter()
            .map(|a| {
                if let Action::CopyBlob { size, .. } = a {
                    *size
                } else {
                    0
                }
            })
            .sum();
        record.error = report.error.as_ref().map(|e| UnitFailure {
            message: error_chain(e),
            retryable: e.is_retryable(),
        });
        self.put_unit(&key, &record, Some(version)).await?;
        lease.release(self.store).await?;
        Ok(report)
    }

    /// Writes a unit record: created, or replaced at `version`; a lost race re-reads and
    /// overwrites, since only the lease holder writes unit records.
    async fn put_unit(
        &self,
        key: &str,
        record: &UnitRecord,
        version: Option<Version>,
    ) -> Result<Version, StateError> {
        let bytes = encode(record);
        let written = match &version {
            None => self.store.create(key, bytes.clone()).await?,
            Some(version) => self.store.update(key, bytes.clone(), version).await?,
        };
        if let Some(version) = written {
            return Ok(version);
        }
        let current = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| vanished(self.store, key))?;
        self.store
            .update(key, bytes, &current.version)
            .await?
            .ok_or_else(|| StateError::Remote {
                url: self.store.url(),
                operation: "PUT",
                key: key.to_owned(),
                reason: "the record keeps changing under its lease holder".to_owned(),
            })
    }
}
