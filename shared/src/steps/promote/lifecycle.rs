//! The facts a run starts with (its record, plan and desired state), handed to the ledger.

use std::collections::BTreeMap;

use crate::plan::{Plan, Unit};
use crate::state::ledger::RunLedger;
use crate::state::records::{
    Counts, DesiredIndex, RunRecord, RunStatus, Trigger, TriggerKind, now,
};
use crate::state::{StateError, StateStore};

/// Records run `id` of `units` (and the desired state of the whole `desired` plan) unless it
/// is recorded already; returns the run record.
pub(super) async fn start(
    store: &StateStore,
    id: &str,
    units: &[Unit],
    desired: &Plan,
    trigger: &Trigger,
) -> Result<RunRecord, StateError> {
    let fresh = RunRecord {
        schema: "promoter.run/v1".to_owned(),
        id: id.to_owned(),
        trigger: trigger.clone(),
        units: units.len(),
        started_at: now(),
        finished_at: None,
        status: RunStatus::Running,
        counts: Counts {
            pending: units.len(),
            ..Counts::default()
        },
    };
    // A reconcile repairs the current desired state; it does not become one.
    let desired =
        (trigger.kind != TriggerKind::Reconcile).then(|| desired_index(&trigger.revision, desired));
    RunLedger::new(store, id)
        .record(&fresh, &units, desired.as_ref())
        .await
}

/// What production should hold after `revision`: each destination repository's digests and
/// tags, and where each repository is promoted from.
fn desired_index(revision: &str, plan: &Plan) -> DesiredIndex {
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
    DesiredIndex {
        schema: "promoter.desired/v1".to_owned(),
        revision: revision.to_owned(),
        repositories,
        sources,
    }
}
