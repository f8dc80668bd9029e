//! `promoter runs list|show|retry|redrive`: on-call commands over the runs recorded in state.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use promoter::copy::CopyOptions;
use promoter::plan::Plan;
use promoter::state::StateStore;
use promoter::state::ledger::promoted::{PromotedUnit, load_promoted};
use promoter::state::records::{RunRecord, RunStatus, UnitRecord};
use promoter::steps::Deps;
use promoter::steps::promote as steps;

use crate::cli::{PromoteOutput, RunsCommand};
use crate::exit::INVALID;
use crate::report::{Counters, Row, report};
use crate::terminal::{clean, when};

/// Runs a `promoter runs` command.
pub fn run(command: RunsCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            RunsCommand::List { state, output } => {
                list(&StateStore::open(&state.url).await?, output).await
            }
            RunsCommand::Show { run, state, output } => {
                show(&StateStore::open(&state.url).await?, &run, output).await
            }
            RunsCommand::Redrive {
                run,
                copy_queue_url,
                state,
            } => {
                let config = crate::config::redrive(&state, copy_queue_url)?;
                redrive(&Deps::build(&config).await?, &run).await
            }
            RunsCommand::Retry {
                run,
                unit,
                key,
                sign_identities,
                state,
                registries,
                output,
            } => {
                let config = crate::config::retry(&state, &registries, key, sign_identities)?;
                retry(&Deps::build(&config).await?, &run, unit.as_deref(), output).await
            }
        }
    })
}

/// `promoter runs retry`: the run's units not done (or the one asked for, even if done)
/// enqueued again and drained through the functions' chain, under the run's own id, leases
/// and trigger; signed by the sign step when a key is given.
async fn retry(
    deps: &Deps,
    run: &str,
    unit: Option<&str>,
    output: PromoteOutput,
) -> anyhow::Result<ExitCode> {
    let Some((record, units)) = steps::load_run(&deps.store, run).await? else {
        anyhow::bail!("no run `{run}` in {}", deps.store.url());
    };
    let plan = Plan {
        units,
        ..Plan::default()
    };
    let started = Instant::now();
    let chained = crate::chain::run(
        deps,
        crate::chain::Drive {
            plan: &plan,
            trigger: record.trigger,
            only: unit,
            parallel: CopyOptions::default().units_in_parallel,
            output,
        },
    )
    .await?;
    // The units this retry did not touch are left out of its report.
    let rows: Vec<Row> = chained
        .rows
        .into_iter()
        .filter(|row| !row.is_done_earlier())
        .collect();
    report(
        output,
        false,
        &rows,
        Some(chained.run),
        Counters {
            client: &deps.client,
            engine: &chained.engines.copy,
            signer: deps.signer.as_deref(),
        },
        started.elapsed(),
    )
}

/// A run still `running` this long after it started has units nobody works on: their messages
/// went to a dead-letter queue (copy-digest's queue gives a message 3 tries of 90 minutes), or
/// were lost.
const STALLED_AFTER_SECONDS: u64 = 6 * 3600;

/// The run's status, `stalled` for a run running past [`STALLED_AFTER_SECONDS`].
fn status(record: &RunRecord) -> String {
    let age = promoter::state::records::now().saturating_sub(record.started_at);
    if record.status == RunStatus::Running && age > STALLED_AFTER_SECONDS {
        "stalled".to_owned()
    } else {
        record.status.to_string()
    }
}

/// `promoter runs redrive`: the run's units not final enqueued again onto the deployed
/// copy-digest queue, its failed units reopened, as validate-manifest does for a new run.
async fn redrive(deps: &Deps, run: &str) -> anyhow::Result<ExitCode> {
    let Some((record, units)) = steps::load_run(&deps.store, run).await? else {
        anyhow::bail!("no run `{}` in {}", clean(run), deps.store.url());
    };
    let plan = Plan {
        units,
        ..Plan::default()
    };
    let outcome = promoter::steps::validate::enqueue_plan(&plan, record.trigger, deps).await?;
    let mut out = std::io::stdout().lock();
    if let promoter::steps::validate::ValidateOutcome::Accepted {
        units, enqueued, ..
    } = outcome
    {
        writeln!(
            out,
            "Run {}: {enqueued} of {units} units enqueued onto copy-digest's queue.",
            clean(run)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports on standard error the records that could not be read, by key.
fn warn_unreadable(unreadable: &[(String, String)]) {
    for (key, error) in unreadable {
        eprintln!("error: {}: {}", clean(key), clean(error));
    }
}

/// Success, or exit code 2 when a record could not be read (everything else was printed, as
/// `ls` does with an unreadable entry).
fn listed(unreadable: &[(String, String)]) -> ExitCode {
    if unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        crate::exit::usage_error()
    }
}

async fn list(store: &StateStore, output: PromoteOutput) -> anyhow::Result<ExitCode> {
    let listing = steps::list_runs(store).await?;
    warn_unreadable(&listing.unreadable);
    let runs = listing.records;
    let mut out = std::io::stdout().lock();
    if output == PromoteOutput::Json {
        serde_json::to_writer(&mut out, &runs)?;
        writeln!(out)?;
        return Ok(listed(&listing.unreadable));
    }
    if runs.is_empty() && listing.unreadable.is_empty() {
        writeln!(out, "No runs in {}.", store.url())?;
    }
    for run in &runs {
        writeln!(
            out,
            "{}  {:<8}  {} units: {} done, {} failed, {} pending  started {}  {} {}",
            clean(&run.id),
            status(run),
            run.units,
            run.counts.done,
            run.counts.failed,
            run.counts.pending,
            when(run.started_at),
            run.trigger.kind,
            clean(&run.trigger.revision),
        )?;
    }
    Ok(listed(&listing.unreadable))
}

async fn show(store: &StateStore, id: &str, output: PromoteOutput) -> anyhow::Result<ExitCode> {
    let Some((run, planned)) = steps::load_run(store, id).await? else {
        eprintln!("error: no run `{}` in {}", clean(id), store.url());
        return Ok(INVALID);
    };
    let listing = steps::list_unit_records(store, id).await?;
    warn_unreadable(&listing.unreadable);
    let records: Vec<UnitRecord> = listing.records;
    // What each unit's digest carries now, whichever run signed it.
    let promoted = load_promoted(store).await?;
    let mut out = std::io::stdout().lock();
    if output == PromoteOutput::Json {
        let carried: serde_json::Map<String, serde_json::Value> = planned
            .iter()
            .filter_map(|u| {
                let p = promoted.get(&u.id)?;
                Some((
                    u.id.clone(),
                    serde_json::json!({"signed": p.signed, "attested": p.attested}),
                ))
            })
            .collect();
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "run": run, "units": records, "promoted": carried }),
        )?;
        writeln!(out)?;
        return Ok(listed(&listing.unreadable));
    }
    writeln!(
        out,
        "Run {} ({} {}): {}, {} units: {} done, {} failed, {} pending. Started {}{}.",
        clean(&run.id),
        run.trigger.kind,
        clean(&run.trigger.revision),
        status(&run),
        run.units,
        run.counts.done,
        run.counts.failed,
        run.counts.pending,
        when(run.started_at),
        run.finished_at
            .map(|t| format!(", finished {}", when(t)))
            .unwrap_or_default(),
    )?;
    for unit in &planned {
        match records.iter().find(|r| r.id == unit.id) {
            Some(r) => write_unit_record(&mut out, r, carried(promoted.get(&unit.id)))?,
            None => writeln!(
                out,
                "  {}  pending  {:<15}  attempts 0  {:>6}  {}@{}",
                clean(&unit.id),
                carried(promoted.get(&unit.id)),
                "-",
                unit.source,
                unit.digest
            )?,
        }
    }
    Ok(listed(&listing.unreadable))
}

/// What the promoted ledger says a unit's digest carries: `signed+attested`, `signed`,
/// `unsigned`, or `-` when it is not recorded as promoted.
fn carried(promoted: Option<&PromotedUnit>) -> &'static str {
    match promoted {
        Some(p) if p.signed && p.attested => "signed+attested",
        Some(p) if p.signed => "signed",
        Some(_) => "unsigned",
        None => "-",
    }
}

/// One unit's line (and its error's) in `runs show`.
fn write_unit_record(out: &mut impl Write, r: &UnitRecord, carried: &str) -> std::io::Result<()> {
    let seconds = r
        .seconds
        .map(|s| format!("{s:.1}s"))
        .unwrap_or_else(|| "-".to_owned());
    writeln!(
        out,
        "  {}  {:<7}  {:<15}  attempts {}  {:>6}  {}@{}",
        clean(&r.id),
        r.status.to_string(),
        carried,
        r.attempts,
        seconds,
        clean(&r.source),
        clean(&r.digest)
    )?;
    if let Some(error) = &r.error {
        let kind = if error.retryable {
            "retryable"
        } else {
            "permanent"
        };
        writeln!(out, "      {kind} error: {}", clean(&error.message))?;
    }
    for warning in r.policy.iter().flat_map(|p| p.warnings()) {
        writeln!(
            out,
            "      policy warning: {}: {}",
            warning.rule.as_str(),
            clean(&warning.detail)
        )?;
    }
    Ok(())
}
