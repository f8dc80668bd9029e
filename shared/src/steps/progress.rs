//! How far a run chained through queues is, and concluding it exactly once.
//!
//! A unit is *final* when nothing more will happen to it: copied and signed (or copied, when
//! signing is off), or failed for a reason that retrying will not fix. Each final unit leaves a
//! marker `runs/<run>/final/<unit>`; counting them is one listing (no per-unit reads), so the
//! worker that finishes the last unit sees it and enqueues the run's notification. A marker
//! `runs/<run>/notified`, claimed by a conditional create before the notification is enqueued,
//! makes it enqueued once: by one of several workers finishing the last units at the same
//! moment, and not again by a redelivered message (the notify step is also idempotent per
//! sink).

use bytes::Bytes;

use crate::state::records::RunRecord;
use crate::state::{Object, StateError, StateStore};
use crate::steps::promote::conclude;

use super::deps::Deps;
use super::error::StepError;
use super::messages::{NotifyMessage, encode};

/// How a unit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Final {
    /// Promoted (and signed, when signing is on).
    Done,
    /// Failed for good (tag move, missing source, …); its record says why.
    Failed,
}

/// `runs/<run>/final/<unit>`.
pub fn final_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/final/{unit}")
}

/// `runs/<run>/failed/<unit>`: also written for a unit final by failure, so that a new
/// enqueue of the run (a rerun, a redelivered webhook) can try it again.
pub fn failed_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/failed/{unit}")
}

/// `runs/<run>/notified`.
pub fn notified_key(run: &str) -> String {
    format!("runs/{run}/notified")
}

/// `runs/<run>/finals`: how many units were marked final (a decimal count).
pub fn finals_key(run: &str) -> String {
    format!("runs/{run}/finals")
}

/// A unit a step brought to its end: what the batch it was in adds to its run's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// The run.
    pub run: String,
    /// The run's number of units.
    pub planned: usize,
    /// This message marked it final; false for a redelivered message that found it marked
    /// (its first delivery may have stopped before counting it, so the batch then counts the
    /// markers instead).
    pub fresh: bool,
}

/// Marks `unit` of `run` final (idempotent); true when this call marked it (then count it,
/// with [`count_batch`]).
pub async fn mark_final(
    store: &StateStore,
    run: &str,
    unit: &str,
    how: Final,
) -> Result<bool, StateError> {
    let text = match how {
        Final::Done => "done",
        Final::Failed => "failed",
    };
    if how == Final::Failed {
        store
            .create(&failed_key(run, unit), Bytes::from_static(b"failed"))
            .await?;
    }
    let created = store
        .create(&final_key(run, unit), Bytes::from_static(text.as_bytes()))
        .await?;
    Ok(created.is_some())
}

/// The count a counter object holds; one that is not a decimal number is reported, never
/// silently replaced.
fn count_of(store: &StateStore, key: &str, object: &Object) -> Result<usize, StateError> {
    std::str::from_utf8(&object.bytes)
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
        .ok_or_else(|| StateError::Corrupt {
            url: store.url(),
            key: key.to_owned(),
            expected: "a count",
            reason: "not a decimal number".to_owned(),
        })
}

/// Adds `added` to the counter at `key` with conditional writes; returns the new count.
async fn increment(store: &StateStore, key: &str, added: usize) -> Result<usize, StateError> {
    loop {
        let Some(current) = store.get(key).await? else {
            if store
                .create(key, Bytes::from(added.to_string()))
                .await?
                .is_some()
            {
                return Ok(added);
            }
            continue;
        };
        let count = count_of(store, key, &current)? + added;
        let bytes = Bytes::from(count.to_string());
        if store.update(key, bytes, &current.version).await?.is_some() {
            return Ok(count);
        }
        // Another worker counted at the same time: read again, after a short random pause.
        tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..20))).await;
    }
}

/// Adds the units a batch of messages made final to their runs' counters, and concludes each
/// run whose count reaches its unit count. A run with a unit a redelivered message found final
/// is checked by counting its markers (its first delivery may have died before counting).
pub async fn count_batch<'a>(
    deps: &Deps,
    finalized: impl IntoIterator<Item = &'a Finalized>,
) -> Result<(), StepError> {
    // run → (planned, fresh units, any redelivered)
    let mut runs: std::collections::BTreeMap<&str, (usize, usize, bool)> =
        std::collections::BTreeMap::new();
    for unit in finalized {
        let entry = runs
            .entry(unit.run.as_str())
            .or_insert((unit.planned, 0, false));
        if unit.fresh {
            entry.1 += 1;
        } else {
            entry.2 = true;
        }
    }
    for (run, (planned, added, redelivered)) in runs {
        let count = if added > 0 {
            increment(&deps.store, &finals_key(run), added).await?
        } else {
            0
        };
        if count >= planned {
            conclude_run(deps, run).await?;
        } else if redelivered {
            conclude_if_finished(deps, run, planned).await?;
        }
    }
    Ok(())
}

/// The units of `run` marked final.
pub async fn final_units(store: &StateStore, run: &str) -> Result<Vec<String>, StateError> {
    units_under(store, &format!("runs/{run}/final/")).await
}

/// The units of `run` final by failure.
pub async fn failed_units(store: &StateStore, run: &str) -> Result<Vec<String>, StateError> {
    units_under(store, &format!("runs/{run}/failed/")).await
}

/// Makes a unit final by failure pending again (it is about to be retried), and lets the run
/// be notified again when it ends.
pub async fn reopen(store: &StateStore, run: &str, unit: &str) -> Result<(), StateError> {
    store.delete(&final_key(run, unit)).await?;
    store.delete(&failed_key(run, unit)).await?;
    decrement(store, &finals_key(run)).await?;
    store.delete(&notified_key(run)).await
}

/// Raises `run`'s counter of final units to `count` when it is below (a worker that died
/// between its marker and its increment left it short); a rerun calls this with the markers it
/// listed.
pub async fn raise_finals(store: &StateStore, run: &str, count: usize) -> Result<(), StateError> {
    let key = finals_key(run);
    let bytes = Bytes::from(count.to_string());
    loop {
        let Some(current) = store.get(&key).await? else {
            if count == 0 || store.create(&key, bytes.clone()).await?.is_some() {
                return Ok(());
            }
            continue;
        };
        if count_of(store, &key, &current)? >= count
            || store
                .update(&key, bytes.clone(), &current.version)
                .await?
                .is_some()
        {
            return Ok(());
        }
    }
}

/// Takes one from the counter at `key` (when there is one).
async fn decrement(store: &StateStore, key: &str) -> Result<(), StateError> {
    while let Some(current) = store.get(key).await? {
        let count = count_of(store, key, &current)?.saturating_sub(1);
        if store
            .update(key, Bytes::from(count.to_string()), &current.version)
            .await?
            .is_some()
        {
            break;
        }
    }
    Ok(())
}

async fn units_under(store: &StateStore, prefix: &str) -> Result<Vec<String>, StateError> {
    let prefix = prefix.to_owned();
    Ok(store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

/// When every one of `run`'s units is final (counting the markers: a listing), records the
/// run's status and enqueues its notification (once); returns the run record then.
pub async fn conclude_if_finished(
    deps: &Deps,
    run: &str,
    planned: usize,
) -> Result<Option<RunRecord>, StepError> {
    if final_units(&deps.store, run).await?.len() < planned {
        return Ok(None);
    }
    conclude_run(deps, run).await.map(Some)
}

/// Records the run's status from its unit records and enqueues its notification (once).
async fn conclude_run(deps: &Deps, run: &str) -> Result<RunRecord, StepError> {
    let record = conclude(&deps.store, run).await?;
    if record.status == crate::state::records::RunStatus::Running {
        // The counter ran ahead of the unit records (a rerun's recount beside a batch still
        // counting): the unit that really ends the run concludes it.
        return Ok(record);
    }
    // Claim the marker first (a conditional create): workers finishing the last units at the
    // same moment all get here, and only the one that wins the create enqueues the notice.
    let claimed = deps
        .store
        .create(&notified_key(run), Bytes::from_static(b"enqueued"))
        .await?;
    if claimed.is_some() {
        let sent = deps
            .queues
            .notify
            .send(&encode(&NotifyMessage::Run {
                run: run.to_owned(),
            }))
            .await;
        if let Err(error) = sent {
            // Not enqueued: let the redelivered message claim it again.
            deps.store.delete(&notified_key(run)).await?;
            return Err(error.into());
        }
        tracing::info!(run, status = ?record.status, "run finished; notification enqueued");
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test]
    async fn each_unit_is_counted_once_and_a_retried_one_uncounted() {
        let store = StateStore::from(MemoryStore::default());
        assert_eq!(
            mark_final(&store, "r", "a", Final::Done).await.ok(),
            Some(true)
        );
        assert_eq!(
            mark_final(&store, "r", "a", Final::Done).await.ok(),
            Some(false)
        );
        assert_eq!(
            mark_final(&store, "r", "b", Final::Failed).await.ok(),
            Some(true)
        );
        assert_eq!(increment(&store, &finals_key("r"), 2).await.ok(), Some(2));
        assert_eq!(
            failed_units(&store, "r").await.ok(),
            Some(vec!["b".to_owned()])
        );
        reopen(&store, "r", "b").await.ok();
        assert!(failed_units(&store, "r").await.is_ok_and(|u| u.is_empty()));
        assert_eq!(
            final_units(&store, "r").await.ok(),
            Some(vec!["a".to_owned()])
        );
        // Reopening uncounted b: a + b counted, then b again.
        assert_eq!(
            mark_final(&store, "r", "b", Final::Done).await.ok(),
            Some(true)
        );
        assert_eq!(increment(&store, &finals_key("r"), 1).await.ok(), Some(2));
        // A rerun that lists more markers than counted raises the counter, never lowers it.
        raise_finals(&store, "r", 5).await.ok();
        raise_finals(&store, "r", 3).await.ok();
        assert_eq!(increment(&store, &finals_key("r"), 1).await.ok(), Some(6));
    }

    /// A store holding run `r` of two units, both recorded done.
    async fn two_done_units() -> Deps {
        use crate::state::records::{
            Counts, RunStatus, Trigger, TriggerKind, encode, run_key, unit_key,
        };
        let deps = Deps {
            store: StateStore::from(MemoryStore::default()),
            client: std::sync::Arc::new(
                crate::registry::Client::new(
                    crate::registry::ClientConfig::default(),
                    crate::registry::auth::session::CredentialSources::default(),
                )
                .expect("a client"),
            ),
            queues: super::super::Queues::in_memory(),
            signer: None,
            required_signature: None,
            notifier: crate::notify::Notifier::new(Vec::new(), None),
            settings: super::super::Settings::default(),
            http: reqwest::Client::new(),
        };
        let run = RunRecord {
            schema: "promoter.run/v1".into(),
            id: "r".into(),
            trigger: Trigger {
                kind: TriggerKind::Revision,
                revision: "rev".into(),
                repository: None,
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

    fn finalized(fresh: bool) -> Finalized {
        Finalized {
            run: "r".into(),
            planned: 2,
            fresh,
        }
    }

    #[tokio::test]
    async fn a_batch_that_died_before_counting_is_concluded_by_its_redelivery() {
        let deps = two_done_units().await;
        // The first delivery marked both units final, then died before counting them.
        for unit in ["a", "b"] {
            assert_eq!(
                mark_final(&deps.store, "r", unit, Final::Done).await.ok(),
                Some(true)
            );
        }
        // The redelivered messages find them marked: the batch counts the markers instead.
        count_batch(&deps, [&finalized(false), &finalized(false)])
            .await
            .expect("counted");
        let notices = deps.queues.notify.receive(10).await.expect("receive");
        assert_eq!(notices.len(), 1, "the run's notice, once");
        // Delivered yet again: concluded already, nothing more.
        count_batch(&deps, [&finalized(false)])
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
        let key = crate::state::records::unit_key("r", "b");
        let current = deps
            .store
            .get(&key)
            .await
            .ok()
            .flatten()
            .expect("b's record");
        let bytes = Bytes::from(serde_json::to_vec(&running).unwrap_or_default());
        deps.store.update(&key, bytes, &current.version).await.ok();
        count_batch(&deps, [&finalized(true), &finalized(true)])
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
