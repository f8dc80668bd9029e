//! `promoter promote` with state: the functions' chain in this process.
//!
//! The plan is recorded and its units enqueued exactly as validate-manifest does, then the
//! in-process copy, sign and notify queues are drained by the same step handlers the Lambda
//! functions run (several units at a time). What each step returned becomes the command's
//! rows: a unit's copy report, with its signatures added by the sign step.

use std::collections::HashMap;
use std::time::Duration;

use promoter::copy::{Action, CopyError, UnitReport};
use promoter::error_chain::error_chain;
use promoter::plan::Plan;
use promoter::state::ledger::RunLedger;
use promoter::state::records::{RunStatus, Trigger, TriggerKind};
use promoter::steps::copy::{CopyOutcome, Engines, UnitResult};
use promoter::steps::dispatch::{Function, Output};
use promoter::steps::local::{Handled, drain_with};
use promoter::steps::messages::{SignMessage, decode};
use promoter::steps::promote::{conclude, plan_revision, run_id};
use promoter::steps::sign::SignatureRecord;
use promoter::steps::{Deps, StepError, validate};

use crate::cli::{PromoteArgs, PromoteOutput};
use crate::report::{Row, RunInfo, progress_bar};

/// A promotion run through the chain.
pub struct Chained {
    /// One row per planned unit, in the plan's order.
    pub rows: Vec<Row>,
    /// The run.
    pub run: RunInfo,
    /// The engines used (their counters feed the summary).
    pub engines: Engines,
}

/// What a chained run is asked to do.
pub struct Drive<'a> {
    /// The run's plan (all its units).
    pub plan: &'a Plan,
    /// What started it (its id derives from this).
    pub trigger: Trigger,
    /// Only this unit, re-driven even if it is done (`runs retry --unit`).
    pub only: Option<&'a str>,
    /// Units worked on at the same time.
    pub parallel: usize,
    /// For the progress bar.
    pub output: PromoteOutput,
}

/// `promoter promote`'s run: the plan, under a trigger from its revision (given, or a hash of
/// the plan).
pub async fn promote(args: &PromoteArgs, plan: &Plan, deps: &Deps) -> anyhow::Result<Chained> {
    let trigger = Trigger {
        kind: TriggerKind::Cli,
        revision: args.revision.clone().unwrap_or_else(|| plan_revision(plan)),
        repository: None,
        parent: None,
    };
    run(
        deps,
        Drive {
            plan,
            trigger,
            only: None,
            parallel: args.parallel_units,
            output: args.output,
        },
    )
    .await
}

/// Records the run (or reopens it), enqueues its units that are not done and drains the
/// queues with the functions' handlers, as the deployed chain would.
pub async fn run(deps: &Deps, drive: Drive<'_>) -> anyhow::Result<Chained> {
    let Drive {
        plan,
        trigger,
        only,
        parallel,
        output,
    } = drive;
    let run = run_id(&trigger);
    match only {
        Some(unit) => validate::redrive_unit(plan, trigger, unit, deps).await?,
        None => validate::enqueue_plan(plan, trigger, deps).await?,
    };
    finish(deps, &run, plan, parallel, output).await
}

/// Drains the queues of run `run` (already enqueued, of `plan`'s units) with the functions'
/// handlers, and reads back how it ended.
pub async fn finish(
    deps: &Deps,
    run: &str,
    plan: &Plan,
    parallel: usize,
    output: PromoteOutput,
) -> anyhow::Result<Chained> {
    let engines = Engines::new(deps);
    let bar = progress_bar(output, &engines.copy, plan.units.len());
    let drained = drain_with(deps, &engines, parallel.max(1), Duration::from_millis(500)).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    // A unit whose run could not be counted (a corrupt record, say) is reported, not passed
    // over: the run's status would be wrong.
    if let Some(error) = drained.uncounted.into_iter().next() {
        return Err(error.into());
    }
    let rows = rows(plan, drained.handled)?;
    // The batch (or the enqueue) that made the last unit final concluded the run; a run with
    // units given up on is still running, and its counts are brought up to date here.
    let record = match RunLedger::new(&deps.store, run).run_record().await? {
        Some(record) if record.status != RunStatus::Running => record,
        _ => conclude(&deps.store, run).await?,
    };
    Ok(Chained {
        rows,
        run: RunInfo::of_record(&record, &deps.store),
        engines,
    })
}

/// Turns the handled messages into one row per planned unit.
fn rows(plan: &Plan, handled: Vec<Handled>) -> anyhow::Result<Vec<Row>> {
    let mut rows = Rows {
        plan,
        by_unit: HashMap::new(),
    };
    for message in handled {
        match (message.function, message.result) {
            (_, Err(StepError::State(error))) => return Err(error.into()),
            (Function::CopyDigest, Ok(Output::Copy(outcome))) => rows.copied(outcome),
            (Function::CopyDigest, Err(StepError::Copy { unit, source })) => {
                rows.copy_failed(unit, source);
            }
            (Function::Sign, Ok(Output::Sign(outcome))) => rows.signed(outcome.record),
            (Function::Sign, Err(error)) => {
                let unit = decode::<SignMessage>("sign message", &message.body)
                    .map(|m| m.unit)
                    .unwrap_or_default();
                rows.sign_failed(unit, &error_chain(&error));
            }
            (Function::Notify, Err(error)) => {
                eprintln!(
                    "warning: notification not delivered: {}",
                    crate::terminal::clean(&error_chain(&error))
                );
            }
            (_, Ok(_)) => {}
            (function, Err(error)) => {
                anyhow::bail!("{}: {}", function.name(), error_chain(&error));
            }
        }
    }
    Ok(rows.finish())
}

/// The rows of a run's units so far, by unit id.
struct Rows<'p> {
    plan: &'p Plan,
    by_unit: HashMap<String, Row>,
}

impl Rows<'_> {
    /// The source and digest of a planned unit, as text.
    fn names(&self, id: &str) -> (String, String) {
        self.plan
            .units
            .iter()
            .find(|u| u.id == id)
            .map(|u| (u.source.to_string(), u.digest.to_string()))
            .unwrap_or_default()
    }

    /// copy-digest answered: its report, or how the unit was found.
    fn copied(&mut self, outcome: CopyOutcome) {
        let row = match outcome.report {
            Some(report) => Row::Copied(report),
            None => {
                let (source, digest) = self.names(&outcome.unit);
                Row::Done {
                    id: outcome.unit.clone(),
                    source,
                    digest,
                    status: outcome.status,
                }
            }
        };
        self.by_unit.insert(outcome.unit, row);
    }

    /// copy-digest failed for a reason that may pass (and gave up after its retries).
    fn copy_failed(&mut self, unit: String, error: CopyError) {
        let row = match self.plan.units.iter().find(|u| u.id == unit) {
            Some(planned) => Row::Copied(UnitReport {
                id: unit.clone(),
                source: planned.source.clone(),
                digest: planned.digest.clone(),
                actions: Vec::new(),
                error: Some(error),
                seconds: 0.0,
                policy: None,
            }),
            None => Row::Failed {
                id: unit.clone(),
                source: String::new(),
                digest: String::new(),
                error: error_chain(&error),
                actions: Vec::new(),
            },
        };
        self.by_unit.insert(unit, row);
    }

    /// sign answered: its signatures join the unit's copy actions.
    fn signed(&mut self, record: SignatureRecord) {
        let signatures = record
            .added
            .iter()
            .map(|to| (to, true))
            .chain(record.present.iter().map(|to| (to, false)))
            .map(|(to, added)| Action::Sign {
                to: to.clone(),
                added,
            });
        let row = self.by_unit.remove(&record.unit);
        let (source, digest) = self.names(&record.unit);
        let mut actions: Vec<Action> = row.as_ref().map_or_else(Vec::new, |r| r.actions().to_vec());
        actions.extend(signatures);
        let row = match (record.error, row) {
            (Some(error), _) => Row::Failed {
                id: record.unit.clone(),
                source,
                digest,
                error: format!("signing: {error}"),
                actions,
            },
            (None, Some(Row::Copied(mut report))) => {
                report.actions = actions;
                Row::Copied(report)
            }
            (None, Some(row)) => row,
            (None, None) => Row::Done {
                id: record.unit.clone(),
                source,
                digest,
                status: UnitResult::DoneEarlier,
            },
        };
        self.by_unit.insert(record.unit, row);
    }

    /// sign failed for a reason that may pass (and gave up after its retries).
    fn sign_failed(&mut self, unit: String, error: &str) {
        let (source, digest) = self.names(&unit);
        let actions = self
            .by_unit
            .get(&unit)
            .map_or_else(Vec::new, |r| r.actions().to_vec());
        self.by_unit.insert(
            unit.clone(),
            Row::Failed {
                id: unit,
                source,
                digest,
                error: format!("signing: {error}"),
                actions,
            },
        );
    }

    /// One row per planned unit, in the plan's order; a unit nothing was heard of was done
    /// before this run looked.
    fn finish(mut self) -> Vec<Row> {
        self.plan
            .units
            .iter()
            .map(|unit| {
                self.by_unit.remove(&unit.id).unwrap_or_else(|| Row::Done {
                    id: unit.id.clone(),
                    source: unit.source.to_string(),
                    digest: unit.digest.to_string(),
                    status: UnitResult::DoneEarlier,
                })
            })
            .collect()
    }
}
