//! Reconcile: production read by inventory and repaired toward the desired state, without
//! deleting anything or moving a tag.
//!
//! [`reconcile`] reads every destination repository of the desired units the cheap way
//! ([`crate::drift`]: one tag listing per repository, HEADs only where the listing cannot
//! answer), then, unless it is a dry run:
//!
//! - records the drift report (`drift/<time>-<revision>.json`, [`DriftRecord`]) whenever there
//!   is drift;
//! - takes out of the promoted ledger what it found untrue (so a repair that fails is planned
//!   again by the next merge too), then starts a **reconcile run** of the repairs ([`crate::drift::repairs`]: digests missing, tags
//!   missing, digests present but unsigned, each unit with only the destinations and tags it
//!   lacks) and enqueues it like any run, so copy-digest copies what is missing and the sign
//!   step signs (a unit found present is only signed). The run's trigger is
//!   `reconcile` with revision `DESIRED.reconcile-TIME`: each reconcile is a run of its own (a
//!   crashed one is simply done again by the next), and it records no desired state, so audit
//!   keeps judging against the revision reconciled;
//! - enqueues a drift alert for what only people may judge (a tag pointing elsewhere, a tag
//!   nobody asked for).
//!
//! The scheduled reconcile ([`scheduled`], an EventBridge Scheduler event `{"reconcile": {}}`
//! to validate-manifest) reconciles against `desired/current`; `promoter reconcile PATH`
//! against the manifests it is given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::drift::{self, RepositoryDrift};
use crate::plan::incremental::fingerprint;
use crate::plan::{Destination, Unit, unit_id};
use crate::reference::{Digest, Repository, Tag};
use crate::state::claim::segment;
use crate::state::ledger::promoted::forget_promoted;
use crate::state::records::{self, DesiredIndex, Trigger, TriggerKind, now};

use super::audit::current_desired;
use super::deps::Deps;
use super::error::{StepError, malformed};
use super::messages::{NotifyMessage, encode};
use super::validate::{ValidateOutcome, enqueue_repairs};

/// The scheduled reconcile's payload: `{"reconcile": {"dry_run": false}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// What to do.
    pub reconcile: ReconcileOptions,
}

/// How a reconcile proceeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileOptions {
    /// Report only: record, enqueue and alert nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `drift/<time>-<revision>.json`: what a reconcile found and what it started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRecord {
    /// `promoter.drift/v1`.
    pub schema: String,
    /// The desired revision reconciled against.
    pub revision: String,
    /// When production was read (seconds since the epoch).
    pub observed_at: u64,
    /// Repositories read.
    pub repositories: usize,
    /// The repositories that differ, each with how.
    pub drifted: Vec<RepositoryDrift>,
    /// Units enqueued to repair what is missing or unsigned.
    pub repairs: usize,
    /// The reconcile run that repairs them, when one was started.
    pub run: Option<String>,
    /// Registry requests the reading took.
    pub requests: u64,
}

impl DriftRecord {
    /// Tags pointing elsewhere and tags nobody asked for: what only people may judge.
    pub fn for_people(&self) -> usize {
        self.drifted
            .iter()
            .map(|d| d.moved_tags.len() + d.unknown_tags.len())
            .sum()
    }
}

/// What a reconcile did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// The report.
    pub record: DriftRecord,
    /// Where it is recorded (not in a dry run or without drift).
    pub key: Option<String>,
    /// The repair run's enqueue, when one was started.
    pub repair: Option<ValidateOutcome>,
}

/// The scheduled reconcile: against the desired state `desired/current` names.
pub async fn scheduled(request: &ReconcileRequest, deps: &Deps) -> Result<Reconciled, StepError> {
    let desired = current_desired(deps).await?;
    if desired.revision.is_empty() {
        tracing::info!("no desired state recorded yet: nothing to reconcile");
    }
    let units = units_of(&desired)?;
    // Signatures are checked when the chain signs (validate-manifest has no key of its own).
    let signatures = deps.signer.is_some()
        || deps
            .settings
            .chain_signing
            .is_some_and(|needs| needs.signature);
    reconcile(
        &units,
        &desired.revision,
        request.reconcile,
        signatures,
        deps,
    )
    .await
}

/// Reads production for `units` (the desired state of `revision`; with `signatures`, which
/// digests are unsigned too), reports its drift and, unless `options.dry_run`, starts the
/// repairs and alerts (see the module's docs).
pub async fn reconcile(
    units: &[Unit],
    revision: &str,
    options: ReconcileOptions,
    signatures: bool,
    deps: &Deps,
) -> Result<Reconciled, StepError> {
    let before = deps.client.counts.total.load(Ordering::Relaxed);
    let drifts = drift::reconcile(&deps.client, units, signatures).await?;
    let requests = deps.client.counts.total.load(Ordering::Relaxed) - before;
    let repositories = drifts.len();
    let drifted: Vec<RepositoryDrift> = drifts.into_iter().filter(|d| !d.is_empty()).collect();
    let repairs = drift::repairs(units, &drifted);
    let observed_at = now();
    let mut record = DriftRecord {
        schema: "promoter.drift/v1".to_owned(),
        revision: revision.to_owned(),
        observed_at,
        repositories,
        drifted,
        repairs: repairs.len(),
        run: None,
        requests,
    };
    if options.dry_run || record.drifted.is_empty() {
        return Ok(Reconciled {
            record,
            key: None,
            repair: None,
        });
    }
    let repair = if repairs.is_empty() {
        None
    } else {
        let trigger = Trigger {
            kind: TriggerKind::Reconcile,
            revision: format!("{revision}.reconcile-{}", stamp(observed_at)),
            repository: None,
            parent: None,
        };
        forget_repaired(units, &repairs, &record.drifted, deps).await?;
        let outcome = enqueue_repairs(&repairs, trigger, deps).await?;
        if let ValidateOutcome::Accepted { run, .. } = &outcome {
            record.run = Some(run.clone());
        }
        Some(outcome)
    };
    let key = format!(
        "drift/{}-{}.json",
        stamp(observed_at),
        segment(if revision.is_empty() {
            "none"
        } else {
            revision
        })
    );
    deps.store.create(&key, records::encode(&record)).await?;
    if record.for_people() > 0 {
        let message = NotifyMessage::Drift { key: key.clone() };
        deps.queues.notify.send(&encode(&message)).await?;
    }
    tracing::info!(
        revision,
        drifted = record.drifted.len(),
        repairs = record.repairs,
        for_people = record.for_people(),
        requests,
        "reconciled"
    );
    Ok(Reconciled {
        record,
        key: Some(key),
        repair,
    })
}

/// Takes out of the promoted ledger what the reconcile found untrue of each unit it repairs
/// (its drifted destinations, and its signatures where it is unsigned), so that a repair that
/// fails is planned again by the next merge as well as by the next reconcile.
async fn forget_repaired(
    units: &[Unit],
    repairs: &[Unit],
    drifted: &[RepositoryDrift],
    deps: &Deps,
) -> Result<(), StepError> {
    for repair in repairs {
        let Some(unit) = units.iter().find(|u| u.id == repair.id) else {
            continue;
        };
        let repositories: Vec<&str> = repair
            .destinations
            .iter()
            .map(|d| d.repository.as_str())
            .collect();
        let fingerprints: Vec<String> = unit
            .destinations
            .iter()
            .filter(|d| repositories.contains(&d.repository.as_str()))
            .map(fingerprint)
            .collect();
        let unsigned = drifted.iter().any(|d| {
            repositories.contains(&d.repository.as_str()) && d.unsigned.contains(&unit.digest)
        });
        forget_promoted(&deps.store, &unit.id, &fingerprints, unsigned).await?;
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` of `seconds` since the epoch (UTC): RFC 3339's figures only, so the
/// revision and key stay plain.
fn stamp(seconds: u64) -> String {
    crate::sign::attest::rfc3339(seconds)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// The units a desired state asks for: one per (source repository, digest), with every
/// destination repository and its tags, as the planner makes them.
pub fn units_of(desired: &DesiredIndex) -> Result<Vec<Unit>, StepError> {
    let bad = |e: &dyn std::fmt::Display| malformed("desired index", e.to_string());
    let mut units: BTreeMap<(String, String), Unit> = BTreeMap::new();
    for (repository, digests) in &desired.repositories {
        let Some(source) = desired.sources.get(repository) else {
            tracing::warn!(%repository, "desired index names no source: not reconciled");
            continue;
        };
        let source: Repository = source.parse().map_err(|e| bad(&e))?;
        let destination: Repository = repository.parse().map_err(|e| bad(&e))?;
        for (digest, tags) in digests {
            let digest: Digest = digest.parse().map_err(|e| bad(&e))?;
            let mut tags: Vec<Tag> = tags
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
            tags.sort();
            tags.dedup();
            units
                .entry((source.to_string(), digest.to_string()))
                .or_insert_with(|| Unit {
                    id: unit_id(&source, &digest),
                    source: source.clone(),
                    digest: digest.clone(),
                    destinations: Vec::new(),
                    policies: desired
                        .policies
                        .get(source.as_str())
                        .into_iter()
                        .flatten()
                        .cloned()
                        .map(Arc::new)
                        .collect(),
                })
                .destinations
                .push(Destination {
                    repository: destination.clone(),
                    tags: tags.into(),
                });
        }
    }
    Ok(units.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(1_796_558_400), "20261206T120000Z");
        assert_eq!(stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn a_desired_index_gives_back_the_planners_units() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let desired = DesiredIndex {
            schema: "promoter.desired/v1".to_owned(),
            revision: "r1".to_owned(),
            repositories: BTreeMap::from([
                (
                    "eu.example/app".to_owned(),
                    BTreeMap::from([(digest.clone(), vec!["v1".to_owned()])]),
                ),
                (
                    "us.example/app".to_owned(),
                    BTreeMap::from([(digest.clone(), vec!["v1".to_owned(), "latest".to_owned()])]),
                ),
                ("orphan.example/app".to_owned(), BTreeMap::new()),
            ]),
            sources: BTreeMap::from([
                (
                    "eu.example/app".to_owned(),
                    "staging.example/app".to_owned(),
                ),
                (
                    "us.example/app".to_owned(),
                    "staging.example/app".to_owned(),
                ),
            ]),
            policies: BTreeMap::new(),
        };
        let units = units_of(&desired).expect("valid");
        assert_eq!(units.len(), 1);
        let unit = &units[0];
        let source: Repository = "staging.example/app".parse().expect("repository");
        assert_eq!(unit.id, unit_id(&source, &unit.digest));
        let shown: Vec<(String, Vec<String>)> = unit
            .destinations
            .iter()
            .map(|d| {
                (
                    d.repository.to_string(),
                    d.tags.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("eu.example/app".to_owned(), vec!["v1".to_owned()]),
                (
                    "us.example/app".to_owned(),
                    vec!["latest".to_owned(), "v1".to_owned()]
                ),
            ]
        );
    }
}
