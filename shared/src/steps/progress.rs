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
use crate::state::{StateError, StateStore};
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

/// A unit a step made final: what the batch it was in adds to its run's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// The run.
    pub run: String,
    /// The run's number of units.
    pub planned: usize,
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
        let count = std::str::from_utf8(&current.bytes)
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .ok_or_else(|| StateError::Corrupt {
                url: store.url(),
                key: key.to_owned(),
                expected: "a count",
                reason: "not a decimal number".to_owned(),
            })?
            + added;
        let bytes = Bytes::from(count.to_string());
        if store.update(key, bytes, &current.version).await?.is_some() {
            return Ok(count);
        }
        // Another worker counted at the same time: read again, after a short random pause.
        tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..20))).await;
    }
}

/// Adds the units a batch of messages made final to their runs' counters, and concludes each
/// run whose count reaches its unit count.
pub async fn count_batch<'a>(
    deps: &Deps,
    finalized: impl IntoIterator<Item = &'a Finalized>,
) -> Result<(), StepError> {
    let mut runs: std::collections::BTreeMap<&str, (usize, usize)> =
        std::collections::BTreeMap::new();
    for unit in finalized {
        let entry = runs.entry(unit.run.as_str()).or_insert((unit.planned, 0));
        entry.1 += 1;
    }
    for (run, (planned, added)) in runs {
        let count = increment(&deps.store, &finals_key(run), added).await?;
        if count >= planned {
            conclude_run(deps, run).await?;
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
        let counted = std::str::from_utf8(&current.bytes)
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if counted >= count
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
        let count = std::str::from_utf8(&current.bytes)
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .saturating_sub(1);
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
}
