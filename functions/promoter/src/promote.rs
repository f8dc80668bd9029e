//! `promoter promote`: validate, plan, observe and copy, with a progress bar or JSON.

use std::io::{IsTerminal, Write};
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use promoter::copy::{Action, CopyOptions, Engine, UnitReport};
use promoter::manifest;
use promoter::plan;
use promoter::registry::auth::docker_config::DockerConfig;
use promoter::registry::auth::ecr::EcrCredentials;
use promoter::registry::auth::google::GoogleCredentials;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::limits::LimitConfig;
use promoter::registry::{Client, ClientConfig};
use serde::Serialize;

use crate::cli::{PromoteArgs, PromoteOutput};
use crate::commands::{INVALID, print_diagnostics};

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
    let client = Arc::new(client(&args).await?);
    let options = CopyOptions {
        dry_run: args.dry_run,
        units_in_parallel: args.parallel_units,
        ..CopyOptions::default()
    };
    let engine = Engine::new(Arc::clone(&client), options);
    let started = Instant::now();
    let bar = progress_bar(&args, &engine, plan.units.len());
    let reports = engine.promote(&plan.units).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let summary = Summary::of(&reports, &client, &engine, started.elapsed());
    let mut stdout = std::io::stdout().lock();
    match args.output {
        PromoteOutput::Json => write_json(&mut stdout, args.dry_run, &summary, &reports)?,
        PromoteOutput::Text => write_text(&mut stdout, args.dry_run, &summary, &reports)?,
    }
    stdout.flush()?;
    Ok(if summary.failed > 0 {
        INVALID
    } else {
        ExitCode::SUCCESS
    })
}

async fn client(args: &PromoteArgs) -> anyhow::Result<Client> {
    let docker = DockerConfig::load().context("reading Docker's config.json")?;
    let config = ClientConfig {
        insecure_hosts: args.insecure_registries.clone(),
        limits: LimitConfig {
            concurrency: args.max_concurrent_requests.max(1),
            requests_per_second: args.max_requests_per_second.and_then(NonZeroU32::new),
        },
        ..ClientConfig::default()
    };
    let sources = CredentialSources {
        docker,
        ecr: Some(EcrCredentials::from_env(args.ecr_registries.clone()).await),
        google: Some(GoogleCredentials::from_env(args.google_registries.clone())),
        ..CredentialSources::default()
    };
    Ok(Client::new(config, sources)?)
}

/// A progress bar on stderr (units, bytes, rate), only on a terminal and with text output.
fn progress_bar(
    args: &PromoteArgs,
    engine: &Engine,
    units: usize,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    if args.output != PromoteOutput::Text || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(units as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units  {msg}",
    )
    .ok()?;
    bar.set_style(style);
    let progress = engine.progress();
    let ticking = bar.clone();
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            let bytes = progress.bytes_read.load(Ordering::Relaxed);
            let rate = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
            ticking.set_position(progress.units_done.load(Ordering::Relaxed));
            ticking.set_message(format!(
                "{} read, {}/s",
                indicatif::HumanBytes(bytes),
                indicatif::HumanBytes(rate as u64)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some((bar, ticker))
}

/// Totals of a promotion.
#[derive(Serialize)]
struct Summary {
    units: usize,
    copied: usize,
    present: usize,
    failed: usize,
    blobs_copied: usize,
    blobs_mounted: usize,
    manifests_written: usize,
    tags_written: usize,
    bytes_read_from_source: u64,
    requests: u64,
    requests_retried: u64,
    seconds: f64,
}

impl Summary {
    fn of(reports: &[UnitReport], client: &Client, engine: &Engine, elapsed: Duration) -> Self {
        let count = |f: &dyn Fn(&Action) -> bool| {
            reports
                .iter()
                .flat_map(|r| &r.actions)
                .filter(|a| f(a))
                .count()
        };
        let failed = reports.iter().filter(|r| !r.succeeded()).count();
        let present = reports.iter().filter(|r| r.was_present()).count();
        Summary {
            units: reports.len(),
            copied: reports.len() - failed - present,
            present,
            failed,
            blobs_copied: count(&|a| matches!(a, Action::CopyBlob { .. })),
            blobs_mounted: count(&|a| matches!(a, Action::MountBlob { .. })),
            manifests_written: count(&|a| matches!(a, Action::PutManifest { .. })),
            tags_written: count(&|a| matches!(a, Action::PutTag { .. })),
            bytes_read_from_source: engine.progress().bytes_read.load(Ordering::Relaxed),
            requests: client.counts.total.load(Ordering::Relaxed),
            requests_retried: client.counts.retried.load(Ordering::Relaxed),
            seconds: elapsed.as_secs_f64(),
        }
    }
}

#[derive(Serialize)]
struct UnitJson<'r> {
    id: &'r str,
    source: &'r str,
    digest: &'r str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    seconds: f64,
    actions: &'r [Action],
}

fn status(report: &UnitReport) -> &'static str {
    if !report.succeeded() {
        "failed"
    } else if report.was_present() {
        "present"
    } else {
        "copied"
    }
}

fn write_json(
    out: &mut dyn Write,
    dry_run: bool,
    summary: &Summary,
    reports: &[UnitReport],
) -> anyhow::Result<()> {
    let units: Vec<UnitJson<'_>> = reports
        .iter()
        .map(|r| UnitJson {
            id: &r.id,
            source: &r.source,
            digest: &r.digest,
            status: status(r),
            error: r.error.as_ref().map(|e| format!("{e:#}")),
            seconds: r.seconds,
            actions: &r.actions,
        })
        .collect();
    let document = serde_json::json!({
        "schema": "promoter.promote/v1",
        "dry_run": dry_run,
        "summary": summary,
        "units": units,
    });
    serde_json::to_writer(&mut *out, &document)?;
    writeln!(out)?;
    Ok(())
}

fn write_text(
    out: &mut dyn Write,
    dry_run: bool,
    s: &Summary,
    reports: &[UnitReport],
) -> anyhow::Result<()> {
    if dry_run {
        writeln!(
            out,
            "Dry run: nothing was written. What a promotion would do:"
        )?;
        for report in reports {
            writeln!(
                out,
                "\n{}@{}  [{}]",
                report.source,
                report.digest,
                status(report)
            )?;
            for action in &report.actions {
                writeln!(out, "  {}", describe(action))?;
            }
        }
        writeln!(out)?;
    }
    let verb = if dry_run { "would be " } else { "" };
    writeln!(
        out,
        "{} units: {} {verb}copied, {} already present, {} failed. Blobs: {} {verb}copied, {} {verb}mounted; {} manifests and {} tags {verb}written; {:.1} MiB read from staging; {} requests ({} retried) in {:.1}s.",
        s.units,
        s.copied,
        s.present,
        s.failed,
        s.blobs_copied,
        s.blobs_mounted,
        s.manifests_written,
        s.tags_written,
        s.bytes_read_from_source as f64 / (1024.0 * 1024.0),
        s.requests,
        s.requests_retried,
        s.seconds,
    )?;
    for report in reports.iter().filter(|r| !r.succeeded()) {
        if let Some(error) = &report.error {
            writeln!(
                out,
                "FAILED {}@{}: {}",
                report.source,
                report.digest,
                error_chain(error)
            )?;
        }
    }
    Ok(())
}

/// An error and its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn describe(action: &Action) -> String {
    match action {
        Action::CopyBlob { digest, size, to } => {
            format!("copy   blob {digest} ({size} bytes) -> {to}")
        }
        Action::MountBlob { digest, to, from } => {
            format!("mount  blob {digest} -> {to} (from {from})")
        }
        Action::PutManifest { digest, to } => format!("write  manifest {digest} -> {to}"),
        Action::PutTag { tag, to } => format!("tag    {to}:{tag}"),
        Action::Present { at } => format!("skip   {at} (already there)"),
    }
}
