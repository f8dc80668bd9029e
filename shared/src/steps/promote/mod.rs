//! A promotion run recorded in state: resumable after a crash, shareable by several workers.
//!
//! The run's id derives from its trigger (kind and revision), so the same revision never
//! starts two runs: a rerun resumes the existing one. Each unit is copied under a lease (one
//! worker at a time) and its record says how it went; a unit already `done` is never redone.
//! Units another worker holds are waited for, and taken over if that worker dies. Every copy
//! step is idempotent (HEAD before PUT), so a half-copied unit is simply finished.

//!
//! - this module: run ids, recording a run, and one unit's turn under its lease
//!   ([`work_unit`], what copy-digest does per message);
//! - `lifecycle`: the facts a run starts with (its records are the ledger's);
//! - `work`: one worker's passes over the units, under leases;
//! - `history`: reading runs back (`promoter runs`).

mod history;
mod lifecycle;
mod work;

pub use history::{Listing, list_runs, list_unit_records, load_run};

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::copy::{Engine, UnitReport};
use crate::plan::{Plan, Unit};
use crate::state::ledger::RunLedger;
use crate::state::ledger::lease::Worker;
use crate::state::records::{RunRecord, Trigger};
use crate::state::{StateError, StateStore};

use lifecycle::start;
use work::{Pass, Work};

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

/// The id of the run `trigger` starts: 16 hex digits of sha256(`KIND:REVISION`).
pub fn run_id(trigger: &Trigger) -> String {
    let hash = Sha256::new()
        .chain_update(trigger.kind.as_str().as_bytes())
        .chain_update(b":")
        .chain_update(trigger.revision.as_bytes())
        .finalize();
    hex::encode(&hash[..8])
}

/// A revision for a plan that has none of its own (a local run): 16 hex digits of a hash of
/// every unit's source, digest, destinations, tags and policies. The same manifests give the
/// same revision, so rerunning them resumes the same run; a changed policy starts a new run
/// (a rerun of the recorded one would apply the old policy).
pub fn plan_revision(plan: &Plan) -> String {
    let mut hash = Sha256::new();
    for unit in &plan.units {
        hash.update(unit.source.as_str().as_bytes());
        hash.update(unit.digest.as_str().as_bytes());
        for d in &unit.destinations {
            hash.update(d.repository.as_str().as_bytes());
            for tag in d.tags.iter() {
                hash.update(tag.as_str().as_bytes());
            }
        }
        for policy in &unit.policies {
            hash.update(serde_json::to_vec(policy.as_ref()).unwrap_or_default());
        }
        hash.update(b"\n");
    }
    hex::encode(&hash.finalize()[..8])
}

/// Records the run `trigger` starts (its record, its `units`, and the desired state of the
/// whole `desired` plan), unless it is recorded already; returns its record. What
/// validate-manifest does before enqueuing the units.
pub async fn record_run(
    store: &StateStore,
    units: &[Unit],
    desired: &Plan,
    trigger: &Trigger,
) -> Result<RunRecord, StateError> {
    start(store, &run_id(trigger), units, desired, trigger).await
}

/// Counts run `id`'s unit records and records its status (complete, failed, or still
/// running).
pub async fn conclude(store: &StateStore, id: &str) -> Result<RunRecord, StateError> {
    RunLedger::new(store, id).conclude(&[]).await
}

/// One unit's turn, as a queue message gives it to a worker.
#[derive(Debug)]
pub enum UnitTurn {
    /// Done before, or copied now (successfully or not).
    Finished(UnitOutcome),
    /// Another worker holds its lease (its id): try again later.
    Held(String),
}

/// Works on one unit of run `run` under its lease, without waiting for another holder: what
/// copy-digest does per message.
pub async fn work_unit(
    store: &StateStore,
    engine: &Engine,
    run: &str,
    unit: &Unit,
    options: &RunOptions,
) -> Result<UnitTurn, StateError> {
    let worker = Worker::current();
    let work = Work {
        store,
        engine,
        run,
        worker: &worker,
        options,
    };
    Ok(match work.unit_pass(unit, None).await? {
        Pass::Finished(outcome) => UnitTurn::Finished(outcome),
        Pass::Held(holder) => UnitTurn::Held(holder),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::records::TriggerKind;

    #[test]
    fn run_ids_are_stable_and_differ_by_trigger() {
        let a = Trigger {
            kind: TriggerKind::Cli,
            revision: "abc".to_owned(),
            repository: None,
            parent: None,
        };
        let b = Trigger {
            kind: TriggerKind::Cli,
            revision: "abd".to_owned(),
            repository: None,
            parent: None,
        };
        assert_eq!(run_id(&a), run_id(&a.clone()));
        assert_ne!(run_id(&a), run_id(&b));
        assert_eq!(run_id(&a).len(), 16);
    }
}
