//! copy-digest: one queue message, one unit: take its lease, copy it to every destination,
//! record the result, and pass it on to signing.
//!
//! A unit another worker holds is returned as [`StepError::Held`] (retryable: the message
//! comes back after its visibility timeout). A copy failing for a reason that may pass is
//! returned as an error too, so the queue retries it (and, after its receive limit, moves it
//! to the dead-letter queue). A permanent failure (tag move, missing source) is recorded in
//! the unit's record and the unit marked final: the message is consumed, not retried forever.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use crate::copy::{CopyOptions, Engine, UnitReport};
use crate::error_chain::error_chain;
use crate::plan::Unit;
use crate::sign::Signer;
use crate::state::ledger::{Final, RunLedger};
use crate::state::records::Trigger;
use crate::steps::promote::{RunOptions, UnitOutcome, UnitTurn, work_unit};

use super::deps::Deps;
use super::error::StepError;
use super::messages::{CopyMessage, SignMessage, encode};
use super::progress::{Finalized, record_promoted};

/// How a unit ended up, for one worker: the one status the functions answer and the CLI
/// prints, serialized once (`copied`, `present`, `done-earlier`, `done-by-other-worker`,
/// `failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitResult {
    /// This worker wrote what was missing.
    Copied,
    /// Nothing was missing.
    Present,
    /// Done before this worker looked.
    DoneEarlier,
    /// Done by another worker while this one waited.
    DoneByOtherWorker,
    /// Failed for good (or, in a report, this time).
    Failed,
}

impl UnitResult {
    /// The status as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitResult::Copied => "copied",
            UnitResult::Present => "present",
            UnitResult::DoneEarlier => "done-earlier",
            UnitResult::DoneByOtherWorker => "done-by-other-worker",
            UnitResult::Failed => "failed",
        }
    }

    /// The status of a unit this worker copied (or tried to), from its report.
    pub fn of_report(report: &UnitReport) -> Self {
        if !report.succeeded() {
            UnitResult::Failed
        } else if report.was_present() {
            UnitResult::Present
        } else {
            UnitResult::Copied
        }
    }
}

impl std::fmt::Display for UnitResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What copy-digest did with one unit.
#[derive(Debug, Serialize)]
pub struct CopyOutcome {
    /// The run.
    pub run: String,
    /// The unit.
    pub unit: String,
    /// How the unit ended up.
    pub status: UnitResult,
    /// Why it failed (permanently).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a sign message was sent.
    pub sign_enqueued: bool,
    /// The engine's report when this worker copied (for the CLI's output).
    #[serde(skip)]
    pub report: Option<UnitReport>,
    /// Set when this message made the unit final: its batch counts it.
    #[serde(skip)]
    pub finalized: Option<Finalized>,
}

/// A run's trigger, its number of units, and the unit a message names.
pub(super) async fn run_and_unit(
    deps: &Deps,
    run: &str,
    unit: &str,
) -> Result<(Trigger, usize, Unit), StepError> {
    let recorded = deps.runs.get(&deps.store, run).await?;
    let found = recorded
        .units
        .get(unit)
        .cloned()
        .ok_or_else(|| StepError::Unknown {
            run: run.to_owned(),
            what: format!("unit {unit}"),
        })?;
    Ok((recorded.trigger.clone(), recorded.planned, found))
}

/// What one batch of messages works with: one transfer engine shared by the batch's units, so
/// a blob several units need moves once (single flight), fresh per batch so that its caches
/// (like staging's tag lists) never outlive a run; and the signer, when a key is configured.
pub struct Engines {
    /// Copies.
    pub copy: Engine,
    /// Signs (the sign step's).
    pub sign: Option<Arc<Signer>>,
}

impl Engines {
    /// The engine over `deps`' client and promotion policy, and `deps`' signer.
    pub fn new(deps: &Deps) -> Self {
        let mut copy = Engine::new(Arc::clone(&deps.client), CopyOptions::default());
        if let Some(key) = &deps.required_signature {
            copy = copy.requiring_signature(key.clone());
        }
        Engines {
            copy,
            sign: deps.signer.clone(),
        }
    }
}

/// Copies the unit `message` names.
pub async fn copy_digest(
    message: &CopyMessage,
    deps: &Deps,
    engine: &Engine,
) -> Result<CopyOutcome, StepError> {
    let (trigger, planned, unit) = run_and_unit(deps, &message.run, &message.unit).await?;
    let span = tracing::info_span!("copy", run = %message.run, unit = %unit.id, image = %unit.source, digest = %unit.digest);
    copy_recorded_unit(message, deps, engine, trigger, planned, unit)
        .instrument(span)
        .await
}

/// Copies `unit` of a recorded run (with `planned` units) under its lease.
async fn copy_recorded_unit(
    message: &CopyMessage,
    deps: &Deps,
    engine: &Engine,
    trigger: Trigger,
    planned: usize,
    unit: Unit,
) -> Result<CopyOutcome, StepError> {
    let options = RunOptions {
        trigger,
        lease_ttl: deps.settings.lease_ttl,
        units_in_parallel: 1,
        poll: Duration::from_secs(1),
    };
    let outcome = match work_unit(&deps.store, engine, &message.run, &unit, &options).await? {
        UnitTurn::Held(holder) => {
            return Err(StepError::Held {
                unit: unit.id.clone(),
                holder,
            });
        }
        UnitTurn::Finished(outcome) => outcome,
    };
    let (status, report) = match outcome {
        UnitOutcome::Copied(mut report) => match report.error.take() {
            Some(error) if error.is_retryable() => {
                return Err(StepError::Copy {
                    unit: unit.id.clone(),
                    source: error,
                });
            }
            Some(error) => {
                let marked = RunLedger::new(&deps.store, &message.run)
                    .mark_final(&unit.id, Final::Failed)
                    .await?;
                tracing::warn!(error = %error_chain(&error), "unit failed for good");
                return Ok(CopyOutcome {
                    run: message.run.clone(),
                    unit: unit.id.clone(),
                    status: UnitResult::Failed,
                    error: Some(error_chain(&error)),
                    sign_enqueued: false,
                    report: Some(UnitReport {
                        error: Some(error),
                        ..report
                    }),
                    finalized: finalized(marked, &message.run, &unit.id, planned),
                });
            }
            None => (UnitResult::of_report(&report), Some(report)),
        },
        UnitOutcome::AlreadyDone => (UnitResult::DoneEarlier, None),
        UnitOutcome::DoneByOther(_) => (UnitResult::DoneByOtherWorker, None),
    };
    let ledger = RunLedger::new(&deps.store, &message.run);
    // A unit done earlier (a redelivered or duplicated message) whose signing is over too (its
    // final marker exists) needs no second sign message: it is only counted, if it is not yet.
    let signed_earlier = report.is_none() && ledger.is_final(&unit.id).await?;
    let mut marked = false;
    let sign_enqueued = if deps.signer.is_some() && !signed_earlier {
        let sign = SignMessage {
            run: message.run.clone(),
            unit: unit.id.clone(),
        };
        deps.queues.sign.send(&encode(&sign)).await?;
        true
    } else {
        marked = ledger.mark_final(&unit.id, Final::Done).await?;
        record_promoted(deps, &unit).await?;
        false
    };
    Ok(CopyOutcome {
        run: message.run.clone(),
        unit: unit.id.clone(),
        status,
        error: None,
        sign_enqueued,
        report,
        finalized: (!sign_enqueued)
            .then(|| finalized(marked, &message.run, &unit.id, planned))
            .flatten(),
    })
}

/// A unit this message brought to its end, for its batch's count (`uncounted`: not counted
/// yet, as [`crate::state::ledger::RunLedger::mark_final`] said).
pub(super) fn finalized(
    uncounted: bool,
    run: &str,
    unit: &str,
    planned: usize,
) -> Option<Finalized> {
    Some(Finalized {
        run: run.to_owned(),
        unit: unit.to_owned(),
        planned,
        uncounted,
    })
}
