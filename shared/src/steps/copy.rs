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

use crate::copy::{CopyOptions, Engine, UnitReport};
use crate::error_chain::error_chain;
use crate::plan::Unit;
use crate::state::records::RunRecord;
use crate::steps::promote::{RunOptions, UnitOutcome, UnitTurn, load_run, work_unit};

use super::deps::Deps;
use super::error::StepError;
use super::messages::{CopyMessage, SignMessage, encode};
use super::progress::{Final, conclude_if_finished, mark_final};

/// What copy-digest did with one unit.
#[derive(Debug, Serialize)]
pub struct CopyOutcome {
    /// The run.
    pub run: String,
    /// The unit.
    pub unit: String,
    /// `copied`, `present` (nothing was missing), `done_earlier`, `done_by_other_worker`
    /// (while this one waited), or `failed`.
    pub status: &'static str,
    /// Why it failed (permanently).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a sign message was sent.
    pub sign_enqueued: bool,
    /// The engine's report when this worker copied (for the CLI's output).
    #[serde(skip)]
    pub report: Option<UnitReport>,
}

/// A run's record and the unit a message names.
pub(super) async fn run_and_unit(
    deps: &Deps,
    run: &str,
    unit: &str,
) -> Result<(RunRecord, Unit), StepError> {
    let (record, units) = load_run(&deps.store, run)
        .await?
        .ok_or_else(|| StepError::Unknown {
            run: run.to_owned(),
            what: "the run".to_owned(),
        })?;
    let unit = units
        .into_iter()
        .find(|u| u.id == unit)
        .ok_or_else(|| StepError::Unknown {
            run: run.to_owned(),
            what: format!("unit {unit}"),
        })?;
    Ok((record, unit))
}

/// The transfer engines of one batch of messages: one engine shared by the batch's units, so
/// a blob several units need moves once (single flight); fresh per batch, so its caches (like
/// staging's tag lists) never outlive a run.
pub struct Engines {
    /// Copies (no signer: signing is the sign step's).
    pub copy: Engine,
    /// Signs, when a key is configured.
    pub sign: Option<Engine>,
}

impl Engines {
    /// Engines over `deps`' client, policy and signer.
    pub fn new(deps: &Deps) -> Self {
        let base = || {
            let mut engine = Engine::new(Arc::clone(&deps.client), CopyOptions::default());
            if let Some(key) = &deps.required_signature {
                engine = engine.requiring_signature(key.clone());
            }
            engine
        };
        Engines {
            copy: base(),
            sign: deps
                .signer
                .as_ref()
                .map(|signer| base().with_shared_signer(Arc::clone(signer))),
        }
    }
}

/// Copies the unit `message` names.
pub async fn copy_digest(
    message: &CopyMessage,
    deps: &Deps,
    engine: &Engine,
) -> Result<CopyOutcome, StepError> {
    let (record, unit) = run_and_unit(deps, &message.run, &message.unit).await?;
    let span = tracing::info_span!("copy", run = %message.run, unit = %unit.id, image = %unit.source, digest = %unit.digest);
    let _entered = span.enter();
    let options = RunOptions {
        trigger: record.trigger.clone(),
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
                mark_final(&deps.store, &message.run, &unit.id, Final::Failed).await?;
                conclude_if_finished(deps, &message.run, record.units).await?;
                tracing::warn!(error = %error_chain(&error), "unit failed for good");
                return Ok(CopyOutcome {
                    run: message.run.clone(),
                    unit: unit.id.clone(),
                    status: "failed",
                    error: Some(error_chain(&error)),
                    sign_enqueued: false,
                    report: Some(UnitReport {
                        error: Some(error),
                        ..report
                    }),
                });
            }
            None if report.was_present() => ("present", Some(report)),
            None => ("copied", Some(report)),
        },
        UnitOutcome::AlreadyDone => ("done_earlier", None),
        UnitOutcome::DoneByOther(_) => ("done_by_other_worker", None),
    };
    let sign_enqueued = if deps.signer.is_some() {
        let sign = SignMessage {
            run: message.run.clone(),
            unit: unit.id.clone(),
        };
        deps.queues.sign.send(&encode(&sign)).await?;
        true
    } else {
        mark_final(&deps.store, &message.run, &unit.id, Final::Done).await?;
        conclude_if_finished(deps, &message.run, record.units).await?;
        false
    };
    Ok(CopyOutcome {
        run: message.run.clone(),
        unit: unit.id.clone(),
        status,
        error: None,
        sign_enqueued,
        report,
    })
}
