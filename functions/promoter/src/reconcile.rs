//! `promoter reconcile`: how production differs from the manifests (the library's
//! [`promoter::drift`]), printed as text or JSON (`promoter.drift/v1`), and repaired through a
//! reconcile run of the functions' chain in this process
//! ([`promoter::steps::reconcile`]), unless `--dry-run`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use promoter::drift::RepositoryDrift;
use promoter::steps::Deps;
use promoter::steps::promote::plan_revision;
use promoter::steps::reconcile::{self, ReconcileOptions, Reconciled};
use promoter::steps::validate::ValidateOutcome;
use promoter::{manifest, plan};

use crate::cli::{PromoteArgs, PromoteOutput};
use crate::exit::{INVALID, print_diagnostics};
use crate::report::{Counters, report};
use crate::terminal::clean;

/// Runs `promoter reconcile PATH`: exit 0 when production is as asked or was repaired, 1
/// when drift remains (any drift, in a dry run) or a repair failed.
pub fn run(args: PromoteArgs, signatures: bool) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(std::slice::from_ref(&args.path))?;
    if !loaded.is_valid() {
        print_diagnostics(&loaded.diagnostics);
        return Ok(INVALID);
    }
    let plan = plan::build(&loaded.manifests, None);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(reconcile_and_repair(args, signatures, plan))
}

async fn reconcile_and_repair(
    args: PromoteArgs,
    signatures: bool,
    plan: plan::Plan,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let deps = Deps::build(&crate::config::promote(&args)?).await?;
    let revision = args
        .revision
        .clone()
        .unwrap_or_else(|| plan_revision(&plan));
    let options = ReconcileOptions {
        dry_run: args.dry_run,
    };
    let signatures = signatures || deps.signer.is_some();
    let reconciled =
        reconcile::reconcile(&plan.units, &revision, options, signatures, &deps).await?;
    let repair = match &reconciled.repair {
        Some(ValidateOutcome::Accepted { run, .. }) => {
            let repairs = plan::Plan {
                units: promoter::drift::repairs(&plan.units, &reconciled.record.drifted),
                ..plan::Plan::default()
            };
            let chained =
                crate::chain::finish(&deps, run, &repairs, args.parallel_units, args.output)
                    .await?;
            Some(chained)
        }
        _ => {
            if reconciled.key.is_some() {
                // The drift alert, through the notify step and its sinks.
                promoter::steps::local::drain(&deps, 1, std::time::Duration::from_millis(500))
                    .await;
            }
            None
        }
    };
    print_drift(
        args.output,
        &reconciled,
        signatures,
        repair.as_ref().map(|c| &c.run),
    )?;
    let repaired = match (&repair, args.output) {
        (Some(chained), PromoteOutput::Text) => {
            report(
                PromoteOutput::Text,
                false,
                &chained.rows,
                None,
                Counters {
                    client: &deps.client,
                    engine: &chained.engines.copy,
                    signer: deps.signer.as_deref(),
                },
                started.elapsed(),
            )? == ExitCode::SUCCESS
        }
        (Some(chained), PromoteOutput::Json) => chained.rows.iter().all(|r| !r.failed()),
        (None, _) => true,
    };
    let left = if args.dry_run {
        reconciled.record.drifted.len()
    } else {
        reconciled.record.for_people()
    };
    Ok(if repaired && left == 0 {
        ExitCode::SUCCESS
    } else {
        INVALID
    })
}

/// Prints the drift report (and the repair run's id and status, when there was one).
fn print_drift(
    output: PromoteOutput,
    reconciled: &Reconciled,
    signatures: bool,
    repair: Option<&crate::report::RunInfo>,
) -> anyhow::Result<()> {
    let record = &reconciled.record;
    let drifted = &record.drifted;
    let count = |f: fn(&RepositoryDrift) -> usize| drifted.iter().map(f).sum::<usize>();
    let summary = serde_json::json!({
        "repositories": record.repositories,
        "drifted": drifted.len(),
        "missing": count(|d| d.missing.len()),
        "missing_tags": count(|d| d.missing_tags.len()),
        "moved_tags": count(|d| d.moved_tags.len()),
        "unknown_tags": count(|d| d.unknown_tags.len()),
        "unsigned": count(|d| d.unsigned.len()),
        "requests": record.requests,
        "repairs": record.repairs,
    });
    let mut out = std::io::stdout().lock();
    match output {
        PromoteOutput::Json => {
            let report = serde_json::json!({
                "schema": "promoter.drift/v1",
                "revision": record.revision,
                "summary": summary,
                "repositories": drifted,
                "record": reconciled.key,
                "repair": repair,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        PromoteOutput::Text => {
            for drift in drifted {
                writeln!(out, "{}", clean(&describe(drift)))?;
            }
            writeln!(
                out,
                "Drift in {} of {} repositories: {} missing digests, {} missing tags, {} moved tags, {} unknown tags{} ({} requests).",
                drifted.len(),
                record.repositories,
                summary["missing"],
                summary["missing_tags"],
                summary["moved_tags"],
                summary["unknown_tags"],
                if signatures {
                    format!(", {} unsigned digests", summary["unsigned"])
                } else {
                    String::new()
                },
                record.requests,
            )?;
            if record.repairs > 0 {
                let action = if reconciled.repair.is_some() {
                    "Repairing"
                } else {
                    "Would repair"
                };
                let run = record
                    .run
                    .as_ref()
                    .map(|run| format!(" (reconcile run {run})"))
                    .unwrap_or_default();
                writeln!(out, "{action} {} units{run}.", record.repairs)?;
            }
            if record.for_people() > 0 {
                writeln!(
                    out,
                    "Moved and unknown tags are for people to judge: the promoter never moves or deletes."
                )?;
            }
        }
    }
    Ok(())
}

/// One repository's drift on one line.
fn describe(drift: &RepositoryDrift) -> String {
    let mut parts = Vec::new();
    for digest in &drift.missing {
        parts.push(format!("missing {}", digest.short()));
    }
    for (tag, digest) in &drift.missing_tags {
        parts.push(format!("missing tag {tag} (→ {})", digest.short()));
    }
    for (tag, asked, there) in &drift.moved_tags {
        parts.push(format!(
            "moved tag {tag} (asked {}, there {})",
            asked.short(),
            there.short()
        ));
    }
    for (tag, there) in &drift.unknown_tags {
        parts.push(format!("unknown tag {tag} (→ {})", there.short()));
    }
    for digest in &drift.unsigned {
        parts.push(format!("unsigned {}", digest.short()));
    }
    format!("{}: {}", drift.repository, parts.join("; "))
}
