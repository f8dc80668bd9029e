//! The facts a run starts with (its record, plan and desired state), handed to the ledger.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::manifest::policy::Policy;
use crate::plan::{Plan, Unit};
use crate::state::ledger::RunLedger;
use crate::state::records::{Counts, RunRecord, RunStatus, Trigger, TriggerKind, now};
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
    let desired = (trigger.kind != TriggerKind::Reconcile)
        .then(|| DesiredView::of(&trigger.revision, desired));
    RunLedger::new(store, id)
        .record(&fresh, &units, desired.as_ref().map(|d| (d.revision, d)))
        .await
}

/// What production should hold after `revision`: each destination repository's digests and
/// tags, and where each repository is promoted from. Serialized exactly as
/// [`crate::state::records::DesiredIndex`] (which audit reads back), but borrowing the plan's
/// names: at Kubernetes' size (46,000 digests × 21 mirrors) it has about a million entries, and
/// owning a copy of each name made it the slowest part of answering a webhook.
#[derive(Serialize)]
struct DesiredView<'a> {
    schema: &'static str,
    revision: &'a str,
    repositories: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a str>>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    sources: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    policies: BTreeMap<&'a str, Vec<&'a Policy>>,
}

impl<'a> DesiredView<'a> {
    fn of(revision: &'a str, plan: &'a Plan) -> Self {
        let mut repositories: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        let mut sources = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for unit in &plan.units {
            if !unit.policies.is_empty() {
                let known: &mut Vec<&Policy> = policies.entry(unit.source.as_str()).or_default();
                for policy in &unit.policies {
                    if !known.contains(&policy.as_ref()) {
                        known.push(policy.as_ref());
                    }
                }
            }
            for d in &unit.destinations {
                sources.insert(d.repository.as_str(), unit.source.as_str());
                repositories
                    .entry(d.repository.as_str())
                    .or_default()
                    .entry(unit.digest.as_str())
                    .or_default()
                    .extend(d.tags.iter().map(|t| t.as_str()));
            }
        }
        DesiredView {
            schema: "promoter.desired/v1",
            revision,
            repositories,
            sources,
            policies,
        }
    }
}
