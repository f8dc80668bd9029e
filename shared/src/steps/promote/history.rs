//! Reading runs back (the `promoter runs` commands; re-driving them goes through the chain).

use crate::plan::Unit;
use crate::state::records::{self, RunRecord, UnitRecord, plan_key, run_key};
use crate::state::{StateError, StateStore};

use super::lifecycle::vanished;

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
