//! `promoter runs list|show|retry`: on-call commands over the runs recorded in state.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use promoter::copy::{Action, CopyOptions, Engine};
use promoter::error_chain::error_chain;
use promoter::plan::Unit;
use promoter::registry::Client;
use promoter::sign::{KeySource, Signer};
use promoter::state::StateStore;
use promoter::state::records::{RunRecord, TriggerKind, UnitRecord};
use promoter::steps::promote as steps;

use crate::cli::{PromoteOutput, RunsCommand};
use crate::commands::INVALID;
use crate::promote::{Row, RunInfo, client, report, rows_of, run_options};

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
            RunsCommand::Retry {
                run,
                unit,
                key,
                sign_identities,
                state,
                registries,
                output,
            } => {
                let store = StateStore::open(&state.url).await?;
                let client = Arc::new(client(&registries).await?);
                let engine = Engine::new(Arc::clone(&client), CopyOptions::default());
                let signer = match &key {
                    Some(key) => {
                        Some(Signer::new(KeySource::open(key).await?, sign_identities).await?)
                    }
                    None => None,
                };
                let options = run_options(
                    &state,
                    TriggerKind::Cli,
                    String::new(),
                    CopyOptions::default().units_in_parallel,
                );
                let started = Instant::now();
                let Some(outcome) =
                    steps::retry(&store, &engine, &run, unit.as_deref(), &options).await?
                else {
                    anyhow::bail!("no run `{run}` in {}", store.url());
                };
                let units = steps::load_run(&store, &run)
                    .await?
                    .map(|(_, units)| units)
                    .unwrap_or_default();
                let info = RunInfo::of(&outcome, &store);
                let mut rows = rows_of(outcome, &units);
                if let Some(signer) = &signer {
                    sign_copied(signer, &client, &units, &mut rows).await;
                }
                report(
                    output,
                    false,
                    &rows,
                    Some(info),
                    &client,
                    &engine,
                    started.elapsed(),
                )
            }
        }
    })
}

/// Signs each unit this retry copied, in every destination, and adds where each signature
/// went to its row; a unit whose signing fails is reported failed.
async fn sign_copied(signer: &Signer, client: &Client, units: &[Unit], rows: &mut [Row]) {
    for row in rows.iter_mut() {
        let Row::Copied(report) = row else { continue };
        if !report.succeeded() {
            continue;
        }
        let Some(unit) = units.iter().find(|u| u.id == report.id) else {
            continue;
        };
        match signer.sign_unit(client, unit).await {
            Ok(signed) => report.actions.extend(signed.iter().map(Action::from)),
            Err(error) => {
                *row = Row::Failed {
                    id: unit.id.clone(),
                    source: unit.source.to_string(),
                    digest: unit.digest.to_string(),
                    error: format!("signing: {}", error_chain(&error)),
                    actions: report.actions.clone(),
                };
            }
        }
    }
}

fn when(unix: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix))
}

fn status(record: &RunRecord) -> String {
    format!("{:?}", record.status).to_lowercase()
}

async fn list(store: &StateStore, output: PromoteOutput) -> anyhow::Result<ExitCode> {
    let runs = steps::list_runs(store).await?;
    let mut out = std::io::stdout().lock();
    if output == PromoteOutput::Json {
        serde_json::to_writer(&mut out, &runs)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        writeln!(out, "No runs in {}.", store.url())?;
    }
    for run in &runs {
        writeln!(
            out,
            "{}  {:<8}  {} units: {} done, {} failed, {} pending  started {}  {} {}",
            run.id,
            status(run),
            run.units,
            run.counts.done,
            run.counts.failed,
            run.counts.pending,
            when(run.started_at),
            run.trigger.kind,
            run.trigger.revision,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &StateStore, id: &str, output: PromoteOutput) -> anyhow::Result<ExitCode> {
    let Some((run, planned)) = steps::load_run(store, id).await? else {
        eprintln!("error: no run `{id}` in {}", store.url());
        return Ok(INVALID);
    };
    let records: Vec<UnitRecord> = steps::unit_records(store, id).await?;
    let mut out = std::io::stdout().lock();
    if output == PromoteOutput::Json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "run": run, "units": records }),
        )?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "Run {} ({} {}): {}, {} units: {} done, {} failed, {} pending. Started {}{}.",
        run.id,
        run.trigger.kind,
        run.trigger.revision,
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
            Some(r) => {
                let status = format!("{:?}", r.status).to_lowercase();
                let seconds = r
                    .seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".to_owned());
                writeln!(
                    out,
                    "  {}  {:<7}  attempts {}  {:>6}  {}@{}",
                    r.id, status, r.attempts, seconds, r.source, r.digest
                )?;
                if let Some(error) = &r.error {
                    let kind = if error.retryable {
                        "retryable"
                    } else {
                        "permanent"
                    };
                    writeln!(out, "      {kind} error: {}", error.message)?;
                }
            }
            None => writeln!(
                out,
                "  {}  pending  attempts 0  {:>6}  {}@{}",
                unit.id, "-", unit.source, unit.digest
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
