//! A promotion run recorded in state: resumable after a crash, shareable by several workers.
//!
//! The run's id derives from its trigger (kind and revision), so the same revision never
//! starts two runs: a rerun resumes the existing one. Each unit is copied under a lease (one
//! worker at a time) and its record says how it went; a unit already `done` is never redone.
//! Units another worker holds are waited for, and taken over if that worker dies. Every copy
//! step is idempotent (HEAD before PUT), so a half-copied unit is simply finished.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::copy::{Action, Engine, UnitReport};
use crate::plan::{Plan, Unit};
use crate::state::lease::{self, Claim, Lease, Worker};
use crate::state::records::{
    self, Counts, DESIRED_CURRENT, DesiredIndex, RunRecord, RunStatus, Trigger, UnitFailure,
    UnitRecord, UnitStatus, desired_key, encode, now, plan_key, run_key, unit_key,
};
use crate::state::{StateError, StateStore, Version};

/// How a run proceeds.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// What started it; its revision names the run.
    pub trigger: Trigger,
    /// How long a lease lasts without renewal (renewed every third of it while copying).
    pub lease_ttl: Duration,
    /// Units worked on at the same time.
    pub units_in_parallel: usize,
    /// How often to look at units other workers hold.
    pub poll: Duration,
}

/// How one unit ended, from this worker's point of view.
#[derive(Debug)]
pub enum UnitOutcome {
    /// This worker copied it (successfully or not): the engine's report.
    Copied(UnitReport),
    /// It was already done before this worker looked (an earlier attempt or run).
    AlreadyDone,
    /// Another worker finished it while this one waited.
    DoneByOther(String),
}

impl UnitOutcome {
    /// True unless this worker's copy failed.
    pub fn succeeded(&self) -> bool {
        match self {
            UnitOutcome::Copied(report) => report.succeeded(),
            UnitOutcome::AlreadyDone | UnitOutcome::DoneByOther(_) => true,
        }
    }
}

/// The result of a run, from this worker's point of view.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run record as this worker left it.
    pub run: RunRecord,
    /// One outcome per planned unit, in the plan's order.
    pub units: Vec<(String, UnitOutcome)>,
}

/// The id of the run `trigger` starts: 16 hex digits of sha256(`KIND:REVISION`).
pub fn run_id(trigger: &Trigger) -> String {
    let hash = Sha256::new()
        .chain_update(trigger.kind.as_bytes())
        .chain_update(b":")
        .chain_update(trigger.revision.as_bytes())
        .finalize();
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A revision for a plan that has none of its own (a local run): 16 hex digits of a hash of
/// every unit's source, digest, destinations and tags. The same manifests give the same
/// revision, so rerunning them resumes the same run.
pub fn plan_revision(plan: &Plan) -> String {
    let mut hash = Sha256::new();
    for unit in &plan.units {
        hash.update(unit.source.as_bytes());
        hash.update(unit.digest.as_str().as_bytes());
        for d in &unit.destinations {
            hash.update(d.repository.as_bytes());
            for tag in d.tags.iter() {
                hash.update(tag.as_str().as_bytes());
            }
        }
        hash.update(b"\n");
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs (or resumes) the promotion of `plan`, recording everything in `store`.
pub async fn run(
    store: &StateStore,
    engine: &Engine,
    plan: &Plan,
    options: &RunOptions,
) -> Result<RunOutcome, StateError> {
    let id = run_id(&options.trigger);
    let (record, _) = start(store, &id, plan, options).await?;
    let worker = Worker::current();
    let work = Work {
        store,
        engine,
        run: &id,
        worker: &worker,
        options,
    };
    tracing::debug!(run = %record.id, status = ?record.status, "working on run");
    // First pass: every unit free to take, without waiting for the ones other workers hold
    // (so that two workers started together share the work). Second pass: those, waited for.
    let first = work
        .each(plan.units.iter().map(|u| (u, None)).collect())
        .await?;
    let held: Vec<(&Unit, Option<String>)> = plan
        .units
        .iter()
        .zip(&first)
        .filter_map(|(unit, outcome)| match outcome {
            Pass::Held(holder) => Some((unit, Some(holder.clone()))),
            Pass::Finished(_) => None,
        })
        .collect();
    let mut second = work.each(held).await?.into_iter();
    let mut units = Vec::with_capacity(plan.units.len());
    for (unit, outcome) in plan.units.iter().zip(first) {
        let outcome = match outcome {
            Pass::Finished(outcome) => outcome,
            Pass::Held(_) => match second.next() {
                Some(Pass::Finished(outcome)) => outcome,
                // A unit given with its holder is waited for until finished: never `Held`.
                Some(Pass::Held(holder)) => {
                    return Err(StateError::Remote {
                        url: store.url(),
                        operation: "LEASE",
                        key: records::lease_key(&unit.id),
                        reason: format!("still held by {holder}"),
                    });
                }
                None => continue,
            },
        };
        units.push((unit.id.clone(), outcome));
    }
    let run = finish(store, &id, &units).await?;
    Ok(RunOutcome { run, units })
}

/// Creates the run's records if they are not there yet; returns the run record.
async fn start(
    store: &StateStore,
    id: &str,
    plan: &Plan,
    options: &RunOptions,
) -> Result<(RunRecord, Version), StateError> {
    let fresh = RunRecord {
        schema: "promoter.run/v1".to_owned(),
        id: id.to_owned(),
        trigger: options.trigger.clone(),
        units: plan.units.len(),
        started_at: now(),
        finished_at: None,
        status: RunStatus::Running,
        counts: Counts {
            pending: plan.units.len(),
            ..Counts::default()
        },
    };
    let key = run_key(id);
    if store.create(&key, encode(&fresh)).await?.is_some() {
        store.create(&plan_key(id), encode(&plan.units)).await?;
        write_desired(store, &options.trigger.revision, plan).await?;
        tracing::info!(run = id, units = plan.units.len(), "run started");
    }
    records::read::<RunRecord>(store, &key, "run record")
        .await?
        .ok_or_else(|| vanished(store, &key))
}

fn vanished(store: &StateStore, key: &str) -> StateError {
    StateError::Remote {
        url: store.url(),
        operation: "GET",
        key: key.to_owned(),
        reason: "the record vanished while being used".to_owned(),
    }
}

/// Records what production should hold after this revision, and points `desired/current` at it.
async fn write_desired(store: &StateStore, revision: &str, plan: &Plan) -> Result<(), StateError> {
    let mut repositories: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for unit in &plan.units {
        for d in &unit.destinations {
            let tags = repositories
                .entry(d.repository.to_string())
                .or_default()
                .entry(unit.digest.to_string())
                .or_default();
            tags.extend(d.tags.iter().map(ToString::to_string));
        }
    }
    let index = DesiredIndex {
        schema: "promoter.desired/v1".to_owned(),
        revision: revision.to_owned(),
        repositories,
    };
    store.create(&desired_key(revision), encode(&index)).await?;
    let pointer = bytes::Bytes::from(revision.to_owned());
    if store
        .create(DESIRED_CURRENT, pointer.clone())
        .await?
        .is_none()
        && let Some(current) = store.get(DESIRED_CURRENT).await?
    {
        store
            .update(DESIRED_CURRENT, pointer, &current.version)
            .await?;
    }
    Ok(())
}

/// Counts the outcomes and records the run as complete or failed.
///
/// When this worker handled only some of the run's units (`runs retry`), the others are
/// counted from their records.
async fn finish(
    store: &StateStore,
    id: &str,
    units: &[(String, UnitOutcome)],
) -> Result<RunRecord, StateError> {
    let key = run_key(id);
    let (planned, _) = records::read::<RunRecord>(store, &key, "run record")
        .await?
        .ok_or_else(|| vanished(store, &key))?;
    let mut failed = units.iter().filter(|(_, o)| !o.succeeded()).count();
    let mut done = units.len() - failed;
    if units.len() < planned.units {
        let mine: std::collections::HashSet<&str> = units.iter().map(|(u, _)| u.as_str()).collect();
        for record in unit_records(store, id).await? {
            if mine.contains(record.id.as_str()) {
                continue;
            }
            match record.status {
                UnitStatus::Done => done += 1,
                UnitStatus::Failed => failed += 1,
                UnitStatus::Running => {}
            }
        }
    }
    let pending = planned.units.saturating_sub(done + failed);
    let counts = Counts {
        done,
        failed,
        pending,
    };
    for _ in 0..5 {
        let (mut record, version) = records::read::<RunRecord>(store, &key, "run record")
            .await?
            .ok_or_else(|| vanished(store, &key))?;
        let status = match (pending, failed) {
            (0, 0) => RunStatus::Complete,
            (0, _) => RunStatus::Failed,
            _ => RunStatus::Running,
        };
        if record.status == status && record.counts == counts {
            return Ok(record);
        }
        record.status = status;
        record.counts = counts;
        record.finished_at = (pending == 0).then(now);
        if store
            .update(&key, encode(&record), &version)
            .await?
            .is_some()
        {
            return Ok(record);
        }
    }
    records::read::<RunRecord>(store, &key, "run record")
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| vanished(store, &key))
}

/// Every unit record of run `id`.
pub async fn unit_records(store: &StateStore, id: &str) -> Result<Vec<UnitRecord>, StateError> {
    let mut out = Vec::new();
    for key in store.list(&format!("runs/{id}/units/")).await? {
        if let Some((record, _)) = records::read::<UnitRecord>(store, &key, "unit record").await? {
            out.push(record);
        }
    }
    Ok(out)
}

/// Every run record, newest first.
pub async fn list_runs(store: &StateStore) -> Result<Vec<RunRecord>, StateError> {
    let mut runs = Vec::new();
    for key in store.list("runs/").await? {
        if key.ends_with("/run.json")
            && key.matches('/').count() == 2
            && let Some((record, _)) = records::read::<RunRecord>(store, &key, "run record").await?
        {
            runs.push(record);
        }
    }
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(runs)
}

/// A run's record and planned units.
pub async fn load_run(
    store: &StateStore,
    id: &str,
) -> Result<Option<(RunRecord, Vec<Unit>)>, StateError> {
    let Some((record, _)) = records::read::<RunRecord>(store, &run_key(id), "run record").await?
    else {
        return Ok(None);
    };
    let key = plan_key(id);
    let units = records::read::<Vec<Unit>>(store, &key, "plan")
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| vanished(store, &key))?;
    Ok(Some((record, units)))
}

/// Re-drives the units of run `id` that are not done (or only `only`, when given), under the
/// run's own id and leases.
pub async fn retry(
    store: &StateStore,
    engine: &Engine,
    id: &str,
    only: Option<&str>,
    options: &RunOptions,
) -> Result<Option<RunOutcome>, StateError> {
    let Some((record, units)) = load_run(store, id).await? else {
        return Ok(None);
    };
    let done: std::collections::HashSet<String> = unit_records(store, id)
        .await?
        .into_iter()
        .filter(|r| r.status == UnitStatus::Done)
        .map(|r| r.id)
        .collect();
    let selected: Vec<Unit> = units
        .into_iter()
        .filter(|u| match only {
            Some(wanted) => u.id == wanted,
            None => !done.contains(&u.id),
        })
        .collect();
    let options = RunOptions {
        trigger: record.trigger,
        ..options.clone()
    };
    let worker = Worker::current();
    let work = Work {
        store,
        engine,
        run: id,
        worker: &worker,
        options: &options,
    };
    let mut outcomes = Vec::with_capacity(selected.len());
    for unit in &selected {
        if only.is_some() && done.contains(&unit.id) {
            // Explicitly asked for: copy again even though it is done (production is observed
            // first, so this only repairs what is missing).
            let lease =
                match lease::acquire(store, &unit.id, id, &worker, options.lease_ttl).await? {
                    Claim::Acquired(lease) => lease,
                    Claim::HeldBy(holder) => {
                        outcomes.push((unit.id.clone(), UnitOutcome::DoneByOther(holder.owner)));
                        continue;
                    }
                };
            let previous =
                records::read::<UnitRecord>(store, &unit_key(id, &unit.id), "unit record").await?;
            outcomes.push((
                unit.id.clone(),
                UnitOutcome::Copied(work.copy_under_lease(unit, lease, previous).await?),
            ));
        } else {
            let outcome = match work.unit_pass(unit, Some(String::new())).await? {
                Pass::Finished(outcome) => outcome,
                Pass::Held(holder) => UnitOutcome::DoneByOther(holder),
            };
            outcomes.push((unit.id.clone(), outcome));
        }
    }
    let run = finish(store, id, &outcomes).await?;
    Ok(Some(RunOutcome {
        run,
        units: outcomes,
    }))
}

/// A unit after one pass.
enum Pass {
    /// Done, copied, or failed.
    Finished(UnitOutcome),
    /// Another worker holds it (its id).
    Held(String),
}

/// One worker's view of a run.
struct Work<'a> {
    store: &'a StateStore,
    engine: &'a Engine,
    run: &'a str,
    worker: &'a Worker,
    options: &'a RunOptions,
}

impl Work<'_> {
    /// Works on `unit` until it is finished by this worker or another.
    /// Works on `units` several at a time. A unit given with `None` is skipped when another
    /// worker holds it ([`Pass::Held`]); given with its holder, it is waited for.
    async fn each(&self, units: Vec<(&Unit, Option<String>)>) -> Result<Vec<Pass>, StateError> {
        let mut done: Vec<(usize, Result<Pass, StateError>)> =
            futures_util::stream::iter(units.into_iter().enumerate())
                .map(|(i, (unit, held_by))| async move { (i, self.unit_pass(unit, held_by).await) })
                .buffer_unordered(self.options.units_in_parallel.max(1))
                .collect()
                .await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, pass)| pass).collect()
    }

    /// One unit: done already, copied now, or (first pass) held by another worker.
    async fn unit_pass(&self, unit: &Unit, held_by: Option<String>) -> Result<Pass, StateError> {
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
    async fn copy_under_lease(
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
            .filter(|a| !matches!(a, Action::Present { .. }))
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

/// An error and its causes, as one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_and_differ_by_trigger() {
        let a = Trigger {
            kind: "cli".to_owned(),
            revision: "abc".to_owned(),
        };
        let b = Trigger {
            kind: "cli".to_owned(),
            revision: "abd".to_owned(),
        };
        assert_eq!(run_id(&a), run_id(&a.clone()));
        assert_ne!(run_id(&a), run_id(&b));
        assert_eq!(run_id(&a).len(), 16);
    }
}
