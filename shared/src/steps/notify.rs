//! notify: turns a run's end or an audit alert into a [`Notice`] and sends it to every
//! configured sink.
//!
//! Each sink that took the notice leaves a marker `notifications/<notice-id>/<sink>`, so when
//! one sink is down the message comes back (or lands in the dead-letter queue) and a retry
//! sends it only to the sinks that missed it.

use std::time::SystemTime;

use serde::Serialize;

use crate::audit::AuditRecord;
use crate::error_chain::error_chain;
use crate::manifest::policy::Verdict;
use crate::notify::{CommitState, CommitStatus, Delivery, Notice, NoticeKind};
use crate::state::claim::{self, Claim};
use crate::state::ledger::RunLedger;
use crate::state::records::{self, RunRecord, RunStatus, UnitRecord, UnitStatus};

use super::deps::Deps;
use super::error::StepError;
use super::messages::NotifyMessage;
use super::reconcile::DriftRecord;
use super::validate::InvalidRecord;

/// What notify did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotifyOutcome {
    /// The notice's id.
    pub notice: String,
    /// Sinks it was sent to now.
    pub sent: Vec<String>,
    /// Sinks that had it already (an earlier delivery of this message).
    pub already: Vec<String>,
    /// Sinks it does not concern (e.g. a commit status for an alert).
    pub skipped: Vec<String>,
}

/// `notifications/<notice-id>/<sink>`: the claim of sending a notice to a sink.
pub fn sent_key(notice: &str, sink: &str) -> String {
    format!("notifications/{notice}/{sink}")
}

/// Sends what `message` asks for to every sink.
pub async fn notify(message: &NotifyMessage, deps: &Deps) -> Result<NotifyOutcome, StepError> {
    let notice = match message {
        NotifyMessage::Run { run } => run_notice(deps, run).await?,
        NotifyMessage::Alert { key } => alert_notice(deps, key).await?,
        NotifyMessage::Invalid { key } => invalid_notice(deps, key).await?,
        NotifyMessage::Drift { key } => drift_notice(deps, key).await?,
    };
    let mut outcome = NotifyOutcome {
        notice: notice.id.clone(),
        ..NotifyOutcome::default()
    };
    let sinks = deps.notifier.sink_names();
    let mut failures = Vec::new();
    for sink in &sinks {
        // Claimed before sending, so that two workers holding the same message (an SQS
        // redelivery while the first still runs) do not both send it; a claim whose worker
        // died is taken over after `claim::CLAIM_TIMEOUT`.
        let key = sent_key(&notice.id, sink);
        let claimed = match claim::claim(&deps.store, &key, SystemTime::now()).await? {
            Claim::Taken(version) => version,
            Claim::Handled => {
                outcome.already.push((*sink).to_owned());
                continue;
            }
        };
        let sent = deps.notifier.send(sink, &notice).await;
        if matches!(sent, Ok(Delivery::Sent)) {
            claim::finish(&deps.store, &key, &claimed).await?;
        } else {
            claim::release(&deps.store, &key).await?;
        }
        match sent {
            Ok(Delivery::Sent) => outcome.sent.push((*sink).to_owned()),
            Ok(Delivery::Skipped) => outcome.skipped.push((*sink).to_owned()),
            Err(error) => {
                tracing::warn!(sink, notice = %notice.id, error = %error_chain(&error), "sink failed");
                failures.push(error);
            }
        }
    }
    let retryable = failures.iter().any(|e| e.is_retryable());
    let failed = failures.len();
    match failures.into_iter().next() {
        Some(first) => Err(StepError::Notify {
            failed,
            sinks: sinks.len(),
            first,
            retryable,
        }),
        None => Ok(outcome),
    }
}

async fn run_notice(deps: &Deps, run: &str) -> Result<Notice, StepError> {
    // The run record only: its plan (megabytes in a large run) is not needed here.
    let ledger = RunLedger::new(&deps.store, run);
    let record = ledger
        .run_record()
        .await?
        .ok_or_else(|| StepError::Unknown {
            run: run.to_owned(),
            what: "the run".to_owned(),
        })?;
    let units = ledger.unit_records().await?;
    Ok(summarize(&record, &units))
}

/// The notice summarizing a finished run.
pub fn summarize(record: &RunRecord, units: &[UnitRecord]) -> Notice {
    let failed: Vec<&UnitRecord> = units
        .iter()
        .filter(|u| u.status == UnitStatus::Failed)
        .collect();
    let title = match record.status {
        RunStatus::Complete => format!(
            "Promotion {} complete: {} units promoted",
            record.trigger.revision, record.units
        ),
        RunStatus::Failed => format!(
            "Promotion {} failed: {} of {} units failed",
            record.trigger.revision,
            failed.len().max(record.counts.failed),
            record.units
        ),
        RunStatus::Running => format!(
            "Promotion {} in progress: {} of {} units done",
            record.trigger.revision, record.counts.done, record.units
        ),
    };
    let mut text = format!(
        "run {} ({} {}): {} done, {} failed, {} pending",
        record.id,
        record.trigger.kind,
        record.trigger.revision,
        record.counts.done,
        record.counts.failed,
        record.counts.pending
    );
    for unit in &failed {
        let why = unit.error.as_ref().map_or("", |e| e.message.as_str());
        text.push_str(&format!("\n- {}@{}: {why}", unit.source, unit.digest));
    }
    let warned: Vec<serde_json::Value> = units
        .iter()
        .filter_map(|u| {
            let report = u.policy.as_ref()?;
            let warnings: Vec<&Verdict> = report.warnings().collect();
            if warnings.is_empty() {
                return None;
            }
            for w in &warnings {
                text.push_str(&format!(
                    "\n- policy warning, {}@{}: {}: {}",
                    u.source,
                    u.digest,
                    w.rule.as_str(),
                    w.detail
                ));
            }
            Some(serde_json::json!({
                "unit": u.id, "source": u.source, "digest": u.digest,
                "policy": report.policy, "warnings": warnings,
            }))
        })
        .collect();
    let commit = record
        .trigger
        .repository
        .as_ref()
        .map(|repository| CommitStatus {
            repository: repository.clone(),
            sha: record.trigger.revision.clone(),
            state: match record.status {
                RunStatus::Complete => CommitState::Success,
                RunStatus::Failed => CommitState::Failure,
                RunStatus::Running => CommitState::Pending,
            },
            description: title.clone(),
            target_url: None,
        });
    let failures: Vec<serde_json::Value> = failed
        .iter()
        .map(|u| {
            serde_json::json!({
                "unit": u.id, "source": u.source, "digest": u.digest,
                "error": u.error.as_ref().map(|e| e.message.clone()),
            })
        })
        .collect();
    let mut details = serde_json::json!({
        "schema": "promoter.notice.run/v1",
        "run": record,
        "failures": failures,
    });
    if !warned.is_empty() {
        details["policy_warnings"] = serde_json::Value::Array(warned);
    }
    Notice {
        kind: NoticeKind::RunSummary,
        // A run notified as failed and completed by a later retry is notified again.
        // Each conclusion (a rerun reopening failed units concludes again) is a new notice.
        id: format!(
            "run-{}-{}-{}",
            record.id,
            status_word(record.status),
            record.finished_at.unwrap_or(record.started_at)
        ),
        title,
        text,
        details,
        commit,
    }
}

fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Complete => "complete",
        RunStatus::Failed => "failed",
        RunStatus::Running => "running",
    }
}

async fn alert_notice(deps: &Deps, key: &str) -> Result<Notice, StepError> {
    let (record, _) = records::read::<AuditRecord>(&deps.store, key, "audit record")
        .await?
        .ok_or_else(|| StepError::Unknown {
            run: "-".to_owned(),
            what: format!("audit record {key}"),
        })?;
    Ok(alert(&record))
}

async fn invalid_notice(deps: &Deps, key: &str) -> Result<Notice, StepError> {
    let (record, _) = records::read::<InvalidRecord>(&deps.store, key, "invalid-manifest record")
        .await?
        .ok_or_else(|| StepError::Unknown {
            run: "-".to_owned(),
            what: format!("invalid-manifest record {key}"),
        })?;
    Ok(invalid(&record))
}

async fn drift_notice(deps: &Deps, key: &str) -> Result<Notice, StepError> {
    let (record, _) = records::read::<DriftRecord>(&deps.store, key, "drift record")
        .await?
        .ok_or_else(|| StepError::Unknown {
            run: "-".to_owned(),
            what: format!("drift record {key}"),
        })?;
    Ok(drift(&record, key))
}

/// The notice for drift a reconcile found that only people may judge: one line per tag
/// moved or unknown (at most [`MAX_DRIFT_LINES`]), and what the reconcile repaired.
pub fn drift(record: &DriftRecord, key: &str) -> Notice {
    let mut lines: Vec<String> = record
        .drifted
        .iter()
        .flat_map(|d| {
            let moved = d.moved_tags.iter().map(move |(tag, asked, there)| {
                format!(
                    "{}:{tag} points at {}, the manifests ask for {}",
                    d.repository, there, asked
                )
            });
            let unknown = d.unknown_tags.iter().map(move |(tag, there)| {
                format!("{}:{tag} → {} is in no manifest", d.repository, there)
            });
            moved.chain(unknown)
        })
        .collect();
    let total = lines.len();
    lines.truncate(MAX_DRIFT_LINES);
    if total > MAX_DRIFT_LINES {
        lines.push(format!("… and {} more", total - MAX_DRIFT_LINES));
    }
    lines.push(match &record.run {
        Some(run) => format!(
            "{} units repaired by run {run}; the promoter moves and deletes nothing.",
            record.repairs
        ),
        None => "Nothing to repair; the promoter moves and deletes nothing.".to_owned(),
    });
    Notice {
        kind: NoticeKind::Alert,
        id: format!("drift-{}", claim::segment(key)),
        title: format!(
            "Drift in production against {}: {total} tags to judge",
            record.revision
        ),
        text: lines.join("\n"),
        details: serde_json::to_value(record).unwrap_or(serde_json::Value::Null),
        commit: None,
    }
}

/// Lines of drift a notice carries at most.
pub const MAX_DRIFT_LINES: usize = 50;

/// The notice for invalid manifests on the promoted branch: an alert, and a failure status on
/// the commit when its repository is known.
pub fn invalid(record: &InvalidRecord) -> Notice {
    let problems = if record.total == 1 {
        "1 problem".to_owned()
    } else {
        format!("{} problems", record.total)
    };
    let mut text = record.diagnostics.join("\n");
    if record.total > record.diagnostics.len() {
        text.push_str(&format!(
            "\n… and {} more",
            record.total - record.diagnostics.len()
        ));
    }
    Notice {
        kind: NoticeKind::Alert,
        id: format!("invalid-{}", claim::segment(&record.revision)),
        title: format!(
            "Invalid manifests at {}: nothing promoted ({problems})",
            record.revision
        ),
        text,
        details: serde_json::to_value(record).unwrap_or(serde_json::Value::Null),
        commit: record.repository.as_ref().map(|repository| CommitStatus {
            repository: repository.clone(),
            sha: record.revision.clone(),
            state: CommitState::Failure,
            description: format!("manifests invalid: {problems}, nothing promoted"),
            target_url: None,
        }),
    }
}

/// The notice for an unapproved push.
pub fn alert(record: &AuditRecord) -> Notice {
    Notice {
        kind: NoticeKind::Alert,
        id: format!("alert-{}", record.id),
        title: format!("Unapproved change in {}", record.repository),
        text: record.verdict.to_string(),
        details: serde_json::to_value(record).unwrap_or(serde_json::Value::Null),
        commit: None,
    }
}
