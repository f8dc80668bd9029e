//! Reading runs back, and re-driving their unfinished units (the `promoter runs` commands).

use crate::copy::Engine;
use crate::plan::Unit;
use crate::state::lease::{self, Claim, Worker};
use crate::state::records::{self, RunRecord, UnitRecord, UnitStatus, plan_key, run_key, unit_key};
use crate::state::{StateError, StateStore};

use super::lifecycle::{finish, vanished};
use super::work::{Pass, Work};
use super::{RunOptions, RunOutcome, UnitOutcome};

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
