//! `promoter promote`: validate, plan, observe and copy, recorded in state, with a progress
//! bar or JSON.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use promoter::copy::{CopyOptions, Engine};
use promoter::manifest;
use promoter::plan;
use promoter::steps::Deps;

use crate::cli::PromoteArgs;
use crate::exit::{INVALID, print_diagnostics};
use crate::report::{Counters, Row, progress_bar, report};

/// Runs `promoter promote`.
pub fn run(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(std::slice::from_ref(&args.path))?;
    print_diagnostics(&loaded.diagnostics);
    if !loaded.is_valid() {
        return Ok(INVALID);
    }
    let plan = plan::build(&loaded.manifests, None);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(promote(args, plan))
}

async fn promote(args: PromoteArgs, plan: plan::Plan) -> anyhow::Result<ExitCode> {
    let deps = Deps::build(&crate::config::promote(&args)?).await?;
    let started = Instant::now();
    if !args.dry_run {
        // Every promotion runs the functions' chain; with --no-state over a store in memory
        // (nothing is recorded, production is observed afresh).
        let chained = crate::chain::promote(&args, &plan, &deps).await?;
        return report(
            args.output,
            false,
            &chained.rows,
            (!args.no_state).then_some(chained.run),
            Counters {
                client: &deps.client,
                engine: &chained.engines.copy,
                signer: deps.signer.as_deref(),
            },
            started.elapsed(),
        );
    }
    // A dry run decides what each unit takes from reads only, and writes nothing.
    let options = CopyOptions {
        dry_run: true,
        units_in_parallel: args.parallel_units,
        ..CopyOptions::default()
    };
    let mut engine = Engine::new(Arc::clone(&deps.client), options);
    if let Some(key) = &deps.required_signature {
        engine = engine.requiring_signature(key.clone());
    }
    let bar = progress_bar(args.output, &engine, plan.units.len());
    let rows: Vec<Row> = engine
        .promote(&plan.units)
        .await
        .into_iter()
        .map(Row::Copied)
        .collect();
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    report(
        args.output,
        args.dry_run,
        &rows,
        None,
        Counters {
            client: &deps.client,
            engine: &engine,
            signer: None,
        },
        started.elapsed(),
    )
}
