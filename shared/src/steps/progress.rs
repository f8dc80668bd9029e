//! How far a run chained through queues is, and concluding it exactly once.
//!
//! A unit is *final* when nothing more will happen to it: copied and signed (or copied, when
//! signing is off), or failed for a reason that retrying will not fix. Each final unit leaves a
//! marker `runs/<run>/final/<unit>`; counting them is one listing (no per-unit reads), so the
//! worker that finishes the last unit sees it and enqueues the run's notification. A marker
//! `runs/<run>/notified` records that the notification was enqueued, so a redelivered message
//! does not enqueue it again (and the notify step is itself idempotent per sink).

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

/// Marks `unit` of `run` final (idempotent).
pub async fn mark_final(
    store: &StateStore,
    run: &str,
    unit: &str,
    how: Final,
) -> Result<(), StateError> {
    let text = match how {
        Final::Done => "done",
        Final::Failed => "failed",
    };
    if how == Final::Failed {
        store
            .create(&failed_key(run, unit), Bytes::from_static(b"failed"))
            .await?;
    }
    store
        .create(&final_key(run, unit), Bytes::from_static(text.as_bytes()))
        .await?;
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
    store.delete(&notified_key(run)).await
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

/// When every one of `run`'s units is final, records the run's status and enqueues its
/// notification (once); returns the run record then.
pub async fn conclude_if_finished(
    deps: &Deps,
    run: &str,
    planned: usize,
) -> Result<Option<RunRecord>, StepError> {
    if final_units(&deps.store, run).await?.len() < planned {
        return Ok(None);
    }
    let record = conclude(&deps.store, run).await?;
    if deps.store.get(&notified_key(run)).await?.is_none() {
        deps.queues
            .notify
            .send(&encode(&NotifyMessage::Run {
                run: run.to_owned(),
            }))
            .await?;
        deps.store
            .create(&notified_key(run), Bytes::from_static(b"enqueued"))
            .await?;
        tracing::info!(run, status = ?record.status, "run finished; notification enqueued");
    }
    Ok(Some(record))
}
