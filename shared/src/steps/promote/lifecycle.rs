//! Creating a run's records when it starts, and recording how it ended.

use std::collections::BTreeMap;

use crate::plan::Plan;
use crate::state::records::{
    self, Counts, DESIRED_CURRENT, DesiredIndex, RunRecord, RunStatus, UnitStatus, desired_key,
    encode, now, plan_key, run_key,
};
use crate::state::{StateError, StateStore, Version};

use super::UnitOutcome;
use super::history::unit_records;
use crate::state::records::Trigger;

/// Creates the run's records if they are not there yet; returns the run record.
pub(super) async fn start(
    store: &StateStore,
    id: &str,
    plan: &Plan,
    trigger: &Trigger,
) -> Result<(RunRecord, Version), StateError> {
    let fresh = RunRecord {
        schema: "promoter.run/v1".to_owned(),
        id: id.to_owned(),
        trigger: trigger.clone(),
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
    // The plan and the desired state first, the run record last: a worker that dies between
    // them leaves no run record, so a retry writes everything again (each write is
    // create-if-absent), instead of finding a run without its plan.
    if store.get(&key).await?.is_none() {
        store.create(&plan_key(id), encode(&plan.units)).await?;
        write_desired(store, &trigger.revision, plan).await?;
        if store.create(&key, encode(&fresh)).await?.is_some() {
            tracing::info!(run = id, units = plan.units.len(), "run started");
        }
    }
    records::read::<RunRecord>(store, &key, "run record")
        .await?
        .ok_or_else(|| vanished(store, &key))
}

pub(super) fn vanished(store: &StateStore, key: &str) -> StateError {
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
    let mut sources = BTreeMap::new();
    for unit in &plan.units {
        for d in &unit.destinations {
            sources.insert(d.repository.to_string(), unit.source.to_string());
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
        sources,
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
pub(super) async fn finish(
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
