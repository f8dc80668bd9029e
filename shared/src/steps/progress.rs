//! How far a run chained through queues is, and concluding it.
//!
//! A unit is *final* when nothing more will happen to it: copied and signed (or copied, when
//! signing is off), or failed for a reason that retrying will not fix. The ledger keeps a
//! marker per final unit and a counter of them (see [`crate::state::ledger`] for the
//! protocol); the batch of messages that brings the counter to the run's unit count, or a
//! redelivered message whose unit was already final, lists the markers and, when every unit is
//! final, concludes the run and enqueues its notification unless it was enqueued already.

use crate::plan::{Unit, incremental};
use crate::state::ledger::RunLedger;
use crate::state::ledger::promoted;
use crate::state::records::{RunRecord, RunStatus};

use super::deps::Deps;
use super::error::StepError;
use super::messages::{NotifyMessage, encode};

/// A unit a step brought to its end: what the batch it was in adds to its run's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// The run.
    pub run: String,
    /// The unit.
    pub unit: String,
    /// The run's number of units.
    pub planned: usize,
    /// Not counted yet (this message marked it final, or an earlier delivery did and died
    /// before counting it); false for a redelivered message of a counted unit, whose first
    /// delivery may have died before concluding the run, so the batch checks the markers.
    pub uncounted: bool,
}

/// Records in the promoted ledger that `unit` is in every one of its destinations with its
/// tags (and signed, when signing is on): what a unit final by success leaves for later runs,
/// which then leave it out.
pub async fn record_promoted(deps: &Deps, unit: &Unit) -> Result<(), StepError> {
    promoted::record_promoted(
        &deps.store,
        &unit.id,
        &incremental::fingerprints(unit),
        deps.signer.is_some(),
        deps.signer
            .as_ref()
            .is_some_and(|s| s.attaches_attestations()),
    )
    .await?;
    Ok(())
}

/// Adds the units a batch of messages made final to their runs' counters, and concludes each
/// run whose count reaches its unit count, or which a redelivered message of a counted unit
/// belongs to (checked by listing its markers).
pub async fn count_batch<'a>(
    deps: &Deps,
    finalized: impl IntoIterator<Item = &'a Finalized>,
) -> Result<(), StepError> {
    // run → (planned, uncounted units, any counted one redelivered)
    let mut runs: std::collections::BTreeMap<&str, (usize, Vec<&str>, bool)> =
        std::collections::BTreeMap::new();
    for unit in finalized {
        let entry = runs
            .entry(unit.run.as_str())
            .or_insert((unit.planned, Vec::new(), false));
        if unit.uncounted {
            entry.1.push(&unit.unit);
        } else {
            entry.2 = true;
        }
    }
    for (run, (planned, uncounted, redelivered)) in runs {
        let ledger = RunLedger::new(&deps.store, run);
        let count = if uncounted.is_empty() {
            0
        } else {
            ledger.count_finals(&uncounted).await?
        };
        if count >= planned || redelivered {
            conclude_if_finished(deps, run, planned).await?;
        }
    }
    Ok(())
}

/// When every one of `run`'s units is final (counting the markers: a listing), records the
/// run's status and enqueues its notification (unless enqueued already); returns the run
/// record then.
pub async fn conclude_if_finished(
    deps: &Deps,
    run: &str,
    planned: usize,
) -> Result<Option<RunRecord>, StepError> {
    let ledger = RunLedger::new(&deps.store, run);
    if ledger.final_units().await?.len() < planned {
        return Ok(None);
    }
    let record = ledger.conclude(&[]).await?;
    if record.status == RunStatus::Running {
        // Every unit is final but a record lags (a redelivered copy still writing it): the
        // message that writes it concludes the run.
        return Ok(Some(record));
    }
    // Enqueue, then mark: a worker dying in between leaves no marker, so a redelivery
    // enqueues again; workers finishing the last units together may both enqueue, and the
    // notify step sends each notice once per sink.
    if !ledger.notified().await? {
        deps.queues
            .notify
            .send(&encode(&NotifyMessage::Run {
                run: run.to_owned(),
            }))
            .await?;
        ledger.mark_notified().await?;
        tracing::info!(run, status = ?record.status, "run finished; notification enqueued");
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ledger::Final;
    use bytes::Bytes;

    /// A store holding run `r` of two units, both recorded done.
    async fn two_done_units() -> Deps {
        use crate::state::ledger::{run_key, unit_key};
        use crate::state::records::{Counts, RunStatus, Trigger, TriggerKind, encode};
        let deps = Deps::in_memory();
        let run = RunRecord {
            schema: "promoter.run/v1".into(),
            id: "r".into(),
            trigger: Trigger {
                kind: TriggerKind::Revision,
                revision: "rev".into(),
                repository: None,
                parent: None,
            },
            units: 2,
            started_at: 1,
            finished_at: None,
            status: RunStatus::Running,
            counts: Counts::default(),
        };
        deps.store.create(&run_key("r"), encode(&run)).await.ok();
        for unit in ["a", "b"] {
            let record = serde_json::json!({
                "schema": "promoter.unit/v1", "run": "r", "id": unit, "source": "s",
                "digest": "d", "status": "done", "attempts": 1, "worker": "w",
                "started_at": 1, "finished_at": 2, "seconds": 1.0, "writes": 1, "bytes": 1,
                "error": null,
            });
            let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
            deps.store.create(&unit_key("r", unit), bytes).await.ok();
        }
        deps
    }

    fn finalized(unit: &str, uncounted: bool) -> Finalized {
        Finalized {
            run: "r".into(),
            unit: unit.into(),
            planned: 2,
            uncounted,
        }
    }

    #[tokio::test]
    async fn a_batch_that_died_before_counting_is_concluded_by_its_redelivery() {
        let deps = two_done_units().await;
        // The first delivery marked both units final, then died before counting them.
        for unit in ["a", "b"] {
            assert_eq!(
                RunLedger::new(&deps.store, "r")
                    .mark_final(unit, Final::Done)
                    .await
                    .ok(),
                Some(true)
            );
        }
        // The redelivered messages find them marked but not counted: they count them.
        for unit in ["a", "b"] {
            assert_eq!(
                RunLedger::new(&deps.store, "r")
                    .mark_final(unit, Final::Done)
                    .await
                    .ok(),
                Some(true)
            );
        }
        count_batch(&deps, [&finalized("a", true), &finalized("b", true)])
            .await
            .expect("counted");
        let notices = deps.queues.notify.receive(10).await.expect("receive");
        assert_eq!(notices.len(), 1, "the run's notice, once");
        // Delivered yet again: counted and concluded already, nothing more.
        assert_eq!(
            RunLedger::new(&deps.store, "r")
                .mark_final("a", Final::Done)
                .await
                .ok(),
            Some(false)
        );
        count_batch(&deps, [&finalized("a", false)])
            .await
            .expect("counted");
        assert!(
            deps.queues
                .notify
                .receive(10)
                .await
                .is_ok_and(|m| m.is_empty())
        );
    }

    #[tokio::test]
    async fn a_counter_ahead_of_the_records_does_not_announce_the_run() {
        let deps = two_done_units().await;
        // Unit b's record says running: the run is not over, whatever the counter says.
        let running = serde_json::json!({
            "schema": "promoter.unit/v1", "run": "r", "id": "b", "source": "s", "digest": "d",
            "status": "running", "attempts": 1, "worker": "w", "started_at": 1,
            "finished_at": null, "seconds": null, "writes": 0, "bytes": 0, "error": null,
        });
        let key = crate::state::ledger::unit_key("r", "b");
        let current = deps
            .store
            .get(&key)
            .await
            .ok()
            .flatten()
            .expect("b's record");
        let bytes = Bytes::from(serde_json::to_vec(&running).unwrap_or_default());
        deps.store.update(&key, bytes, &current.version).await.ok();
        count_batch(&deps, [&finalized("a", true), &finalized("b", true)])
            .await
            .expect("counted");
        assert!(
            deps.queues
                .notify
                .receive(10)
                .await
                .is_ok_and(|m| m.is_empty())
        );
    }
}
