//! sign: one queue message, one promoted unit: sign its digest once and push the signature
//! to every destination; the unit is then final, and the last one of a run enqueues notify.
//!
//! Signing is idempotent (a signature already there is not added again), so a redelivered
//! message writes nothing. Each signed unit leaves `runs/<run>/signatures/<unit>.json`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error_chain::error_chain;
use crate::state::ledger::lease::{self, Claim, Worker};
use crate::state::ledger::{Final, RunLedger};
use crate::state::records::{UnitFailure, now};

use crate::plan::Unit;
use crate::reference::Digest;
use crate::sign::{Provenance, Signer, verify_any};
use crate::state::records::Trigger;

use super::copy::{finalized, run_and_unit};
use super::deps::Deps;
use super::error::StepError;
use super::messages::SignMessage;
use super::progress::{Finalized, record_promoted};

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

/// Signs the unit `message` names with `signer` (the one of [`super::copy::Engines`]).
pub async fn sign(
    message: &SignMessage,
    deps: &Deps,
    signer: Option<&Arc<Signer>>,
) -> Result<SignOutcome, StepError> {
    let signer = signer.ok_or_else(|| StepError::Config {
        variable: "PROMOTER_SIGN_KEY",
        reason: "not set, but a sign message arrived".into(),
    })?;
    let (trigger, planned, unit) = run_and_unit(deps, &message.run, &message.unit).await?;
    let span = tracing::info_span!("sign", run = %message.run, unit = %unit.id, image = %unit.source, digest = %unit.digest);
    async {
        let provenance = provenance(deps, &message.run, &trigger, &unit).await?;
        sign_recorded_unit(message, deps, signer, planned, unit, &provenance).await
    }
    .instrument(span)
    .await
}

/// Where `unit`'s promotion came from, for its promotion record and verification summary:
/// the run, the revision, and (when a staging signature is required) the staging signatures
/// that verify now.
async fn provenance(
    deps: &Deps,
    run: &str,
    trigger: &Trigger,
    unit: &Unit,
) -> Result<Provenance, StepError> {
    let checked = match &deps.required_signature {
        None => None,
        Some(key) => {
            let found = match verify_any(&deps.client, &unit.source, &unit.digest, key).await {
                Ok(found) => found,
                Err(error) if error.is_retryable() => return Err(StepError::Sign(error)),
                Err(error) => {
                    // Copy-digest checked staging already; the summary then names no input.
                    tracing::warn!(error = %error_chain(&error), "staging signatures unreadable now");
                    Vec::new()
                }
            };
            let mut holders: Vec<(String, Digest)> = found
                .iter()
                .map(|f| {
                    (
                        format!("{}@{}", unit.source, f.holder()),
                        f.holder().clone(),
                    )
                })
                .collect();
            holders.dedup();
            Some(holders).filter(|h| !h.is_empty())
        }
    };
    Ok(Provenance {
        run: run.to_owned(),
        revision: trigger.revision.clone(),
        manifest_repository: trigger.repository.clone(),
        checked,
    })
}

/// Signs `unit` of a recorded run (with `planned` units) and records how it went.
async fn sign_recorded_unit(
    message: &SignMessage,
    deps: &Deps,
    signer: &Signer,
    planned: usize,
    unit: Unit,
    provenance: &Provenance,
) -> Result<SignOutcome, StepError> {
    let ledger = RunLedger::new(&deps.store, &message.run);
    // One signer per digest at a time, whatever the run: two workers signing the same digest
    // at once would each find nothing and each add a bundle. The second waits (its message
    // comes back) and then finds everything there.
    let lease_name = format!("sign/{}", unit.digest.hex());
    let mut lease = match lease::acquire(
        &deps.store,
        &lease_name,
        &message.run,
        &Worker::current(),
        deps.settings.lease_ttl,
    )
    .await?
    {
        Claim::Acquired(lease) => lease,
        Claim::HeldBy(holder) => {
            return Err(StepError::Held {
                unit: format!("{} (signing {})", unit.id, unit.digest),
                holder: holder.owner,
            });
        }
    };
    // Renewed while signing: a sign slowed by retries must not let a second signer in.
    let signed = lease
        .hold_while(
            &deps.store,
            deps.settings.lease_ttl,
            // Boxed: the sign future is large, and nested inline it would grow every frame
            // that polls it (debug builds' 2 MiB test threads overflowed).
            Box::pin(signer.sign_unit(&deps.client, &unit, provenance)),
        )
        .await?;
    if let Err(error) = lease.release(&deps.store).await {
        tracing::warn!(error = %error_chain(&error), "the signing lease stays until it expires");
    }
    let mut record = SignatureRecord {
        schema: "promoter.signature/v1".to_owned(),
        unit: unit.id.clone(),
        digest: unit.digest.to_string(),
        added: Vec::new(),
        present: Vec::new(),
        error: None,
        at: now(),
    };
    let how = match signed {
        Err(error) if error.is_retryable() => return Err(StepError::Sign(error)),
        Err(error) => {
            record.error = Some(error_chain(&error));
            tracing::warn!(error = %error_chain(&error), "signing failed for good");
            let failure = UnitFailure {
                message: format!("signing: {}", error_chain(&error)),
                retryable: false,
            };
            ledger.fail_unit(&unit.id, &failure).await?;
            Final::Failed
        }
        Ok(signed) => {
            for at in &signed {
                let list = if at.added {
                    &mut record.added
                } else {
                    &mut record.present
                };
                list.push(at.to_string());
            }
            Final::Done
        }
    };
    ledger.record_signature(&unit.id, &record).await?;
    let marked = ledger.mark_final(&unit.id, how).await?;
    if how == Final::Done {
        record_promoted(deps, &unit).await?;
    }
    Ok(SignOutcome {
        record,
        finalized: finalized(marked, &message.run, &unit.id, planned),
    })
}
