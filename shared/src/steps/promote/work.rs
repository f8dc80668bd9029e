//! One worker's passes over a run's units: take a free unit's lease, copy it, record it.

use crate::copy::{Action, Engine, UnitReport};
use crate::plan::Unit;
use crate::state::ledger::RunLedger;
use crate::state::ledger::lease::{self, Claim, Lease, Worker};
use crate::state::records::{UnitFailure, UnitRecord, UnitStatus, now};
use crate::state::{StateError, StateStore};

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
    fn ledger(&self) -> RunLedger<'_> {
        RunLedger::new(self.store, self.run)
    }

    /// One unit: done already, copied now, or (first pass) held by another worker.
    pub(super) async fn unit_pass(
        &self,
        unit: &Unit,
        held_by: Option<String>,
    ) -> Result<Pass, StateError> {
        let wait = held_by.is_some();
        let mut waited_for = held_by;
        loop {
            if let Some((record, _)) = self.ledger().unit_record(&unit.id).await?
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
                    let previous = self.ledger().unit_record(&unit.id).await?;
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
        previous: Option<(UnitRecord, crate::state::Version)>,
    ) -> Result<UnitReport, StateError> {
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
            policy: None,
        };
        self.ledger().write_unit(&record).await?;
        let report = lease
            .hold_while(
                self.store,
                self.options.lease_ttl,
                // Boxed, as it was pinned in place before: the copy future is large.
                Box::pin(self.engine.copy_unit(unit)),
            )
            .await?;
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
        record.policy = report.policy.as_deref().cloned();
        self.ledger().write_unit(&record).await?;
        lease.release(self.store).await?;
        Ok(report)
    }
}
