//! sign: one queue message, one promoted unit: sign its digest once and push the signature
//! to every destination; the unit is then final, and the last one of a run enqueues notify.
//!
//! Signing is idempotent (a signature already there is not added again), so a redelivered
//! message writes nothing. Each signed unit leaves `runs/<run>/signatures/<unit>.json`.

use serde::{Deserialize, Serialize};

use crate::copy::Action;
use crate::error_chain::error_chain;
use crate::state::records::{
    self, UnitFailure, UnitRecord, UnitStatus, encode as encode_record, now, unit_key,
};

use crate::copy::Engine;

use super::copy::{finalized, run_and_unit};
use super::deps::Deps;
use super::error::StepError;
use super::messages::SignMessage;
use super::progress::{Final, Finalized, mark_final};

/// `runs/<run>/signatures/<unit>.json`: how signing a unit went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    /// `promoter.signature/v1`.
    pub schema: String,
    /// The unit.
    pub unit: String,
    /// The signed digest.
    pub digest: String,
    /// Destinations (and index children) where a signature was added now.
    pub added: Vec<String>,
    /// Destinations that already had it.
    pub present: Vec<String>,
    /// Why signing failed for good, if it did.
    pub error: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

/// What sign did with one unit: its signature record (what the function returns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignOutcome {
    /// The record written to state.
    #[serde(flatten)]
    pub record: SignatureRecord,
    /// Set when this message made the unit final: its batch counts it.
    #[serde(skip)]
    pub finalized: Option<Finalized>,
}

/// Records a unit whose signing failed for good as failed (its copy succeeded), so the run is
/// counted failed, not complete.
async fn fail_unit_record(
    deps: &Deps,
    run: &str,
    unit: &str,
    error: &str,
) -> Result<(), StepError> {
    let key = unit_key(run, unit);
    for _ in 0..5 {
        let Some((mut record, version)) =
            records::read::<UnitRecord>(&deps.store, &key, "unit record").await?
        else {
            return Ok(());
        };
        record.status = UnitStatus::Failed;
        record.error = Some(UnitFailure {
            message: format!("signing: {error}"),
            retryable: false,
        });
        if deps
            .store
            .update(&key, encode_record(&record), &version)
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// `runs/<run>/signatures/<unit>.json`.
pub fn signature_key(run: &str, unit: &str) -> String {
    format!("runs/{run}/signatures/{unit}.json")
}

/// Signs the unit `message` names with `engine` (one with a signer: [`super::copy::Engines`]).
pub async fn sign(
    message: &SignMessage,
    deps: &Deps,
    engine: Option<&Engine>,
) -> Result<SignOutcome, StepError> {
    let engine = engine.ok_or_else(|| StepError::Config {
        variable: "PROMOTER_SIGN_KEY",
        reason: "not set, but a sign message arrived".into(),
    })?;
    let (_, planned, unit) = run_and_unit(deps, &message.run, &message.unit).await?;
    let span = tracing::info_span!("sign", run = %message.run, unit = %unit.id, image = %unit.source, digest = %unit.digest);
    let _entered = span.enter();
    let report = engine.sign_unit(&unit).await;
    let mut record = SignatureRecord {
        schema: "promoter.signature/v1".to_owned(),
        unit: unit.id.clone(),
        digest: unit.digest.to_string(),
        added: Vec::new(),
        present: Vec::new(),
        error: None,
        at: now(),
    };
    for action in &report.actions {
        if let Action::Sign { to, added } = action {
            if *added {
                record.added.push(to.clone());
            } else {
                record.present.push(to.clone());
            }
        }
    }
    let how = match report.error {
        Some(error) if error.is_retryable() => {
            return Err(StepError::Copy {
                unit: unit.id.clone(),
                source: error,
            });
        }
        Some(error) => {
            record.error = Some(error_chain(&error));
            tracing::warn!(error = %error_chain(&error), "signing failed for good");
            fail_unit_record(deps, &message.run, &unit.id, &error_chain(&error)).await?;
            Final::Failed
        }
        None => Final::Done,
    };
    let key = signature_key(&message.run, &unit.id);
    let bytes = encode_record(&record);
    if deps.store.create(&key, bytes.clone()).await?.is_none()
        && let Some(current) = deps.store.get(&key).await?
    {
        deps.store.update(&key, bytes, &current.version).await?;
    }
    let marked = mark_final(&deps.store, &message.run, &unit.id, how).await?;
    Ok(SignOutcome {
        record,
        finalized: finalized(marked, &message.run, planned),
    })
}
