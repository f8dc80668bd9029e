//! What a promotion did, for people and for scripts: one row per unit, a summary, a progress
//! bar; text or JSON (`promoter.promote/v1`). Shared by `promote` and `runs retry`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use promoter::copy::{Action, Engine, UnitReport};
use promoter::error_chain::error_chain;
use promoter::manifest::policy::Report;
use promoter::registry::Client;
use promoter::state::StateStore;
use promoter::steps::copy::UnitResult;
use serde::Serialize;

use crate::cli::PromoteOutput;
use crate::exit::INVALID;
use crate::terminal::clean;

/// Prints the result; exit code 1 when a unit failed.
pub fn report(
    output: PromoteOutput,
    dry_run: bool,
    rows: &[Row],
    run: Option<RunInfo>,
    counters: Counters<'_>,
    elapsed: Duration,
) -> anyhow::Result<ExitCode> {
    let summary = Summary::of(rows, run, counters, elapsed);
    let mut stdout = std::io::stdout().lock();
    match output {
        PromoteOutput::Json => write_json(&mut stdout, dry_run, &summary, rows)?,
        PromoteOutput::Text => write_text(&mut stdout, dry_run, &summary, rows)?,
    }
    stdout.flush()?;
    Ok(if summary.failed > 0 {
        INVALID
    } else {
        ExitCode::SUCCESS
    })
}

/// One unit's line in the result.
pub enum Row {
    /// This process copied it (or tried).
    Copied(UnitReport),
    /// Done before this process looked, or by another worker.
    Done {
        /// The unit.
        id: String,
        /// Source repository.
        source: String,
        /// Digest.
        digest: String,
        /// [`UnitResult::DoneEarlier`] or [`UnitResult::DoneByOtherWorker`].
        status: UnitResult,
    },
    /// Failed after the copy (signing), or given up on by the chain.
    Failed {
        /// The unit.
        id: String,
        /// Source repository.
        source: String,
        /// Digest.
        digest: String,
        /// Why.
        error: String,
        /// What was done before it failed.
        actions: Vec<Action>,
    },
}

impl Row {
    /// True for a unit done before this process looked at it.
    pub fn is_done_earlier(&self) -> bool {
        matches!(
            self,
            Row::Done {
                status: UnitResult::DoneEarlier,
                ..
            }
        )
    }

    /// True for a unit that failed.
    pub fn failed(&self) -> bool {
        matches!(self.status(), UnitResult::Failed)
    }

    fn status(&self) -> UnitResult {
        match self {
            Row::Copied(report) => UnitResult::of_report(report),
            Row::Done { status, .. } => *status,
            Row::Failed { .. } => UnitResult::Failed,
        }
    }

    /// The unit's policy report, when this worker checked one.
    pub fn policy(&self) -> Option<&Report> {
        match self {
            Row::Copied(report) => report.policy.as_deref(),
            _ => None,
        }
    }

    /// What was done to the unit.
    pub fn actions(&self) -> &[Action] {
        match self {
            Row::Copied(r) => &r.actions,
            Row::Done { .. } => &[],
            Row::Failed { actions, .. } => actions,
        }
    }

    fn names(&self) -> (&str, &str, &str) {
        match self {
            Row::Copied(r) => (&r.id, r.source.as_str(), r.digest.as_str()),
            Row::Done {
                id, source, digest, ..
            }
            | Row::Failed {
                id, source, digest, ..
            } => (id, source, digest),
        }
    }
}

/// The run a promotion was recorded as.
#[derive(Serialize)]
pub struct RunInfo {
    id: String,
    status: String,
    state: String,
    state_requests: u64,
}

impl RunInfo {
    /// From a run's record.
    pub fn of_record(record: &promoter::state::records::RunRecord, store: &StateStore) -> Self {
        RunInfo {
            id: record.id.clone(),
            status: record.status.to_string(),
            state: store.url(),
            state_requests: store.requests(),
        }
    }
}

/// A progress bar on stderr (units, bytes, rate), only on a terminal and with text output.
pub fn progress_bar(
    output: PromoteOutput,
    engine: &Engine,
    units: usize,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    if output != PromoteOutput::Text || !std::io::stderr().is_terminal() {
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

/// Where a promotion's counts are read: the registry client, the copy engine, the signer.
#[derive(Clone, Copy)]
pub struct Counters<'a> {
    /// The registry client (requests).
    pub client: &'a Client,
    /// The copy engine (bytes read).
    pub engine: &'a Engine,
    /// The signer, when signing (signing operations).
    pub signer: Option<&'a promoter::sign::Signer>,
}

/// Totals of a promotion.
#[derive(Serialize)]
struct Summary {
    units: usize,
    copied: usize,
    present: usize,
    done_earlier: usize,
    done_by_other_worker: usize,
    failed: usize,
    blobs_copied: usize,
    blobs_mounted: usize,
    manifests_written: usize,
    tags_written: usize,
    signatures_added: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_operations: Option<u64>,
    bytes_read_from_source: u64,
    requests: u64,
    requests_retried: u64,
    seconds: f64,
    /// Units whose policy had a `warn` rule fail (promoted, and reported).
    policy_warnings: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<RunInfo>,
}

impl Summary {
    fn of(rows: &[Row], run: Option<RunInfo>, counters: Counters<'_>, elapsed: Duration) -> Self {
        let Counters {
            client,
            engine,
            signer,
        } = counters;
        let count = |f: &dyn Fn(&Action) -> bool| {
            rows.iter().flat_map(Row::actions).filter(|a| f(a)).count()
        };
        let with = |status: UnitResult| rows.iter().filter(|r| r.status() == status).count();
        Summary {
            units: rows.len(),
            copied: with(UnitResult::Copied),
            present: with(UnitResult::Present),
            done_earlier: with(UnitResult::DoneEarlier),
            done_by_other_worker: with(UnitResult::DoneByOtherWorker),
            failed: with(UnitResult::Failed),
            blobs_copied: count(&|a| matches!(a, Action::CopyBlob { .. })),
            blobs_mounted: count(&|a| matches!(a, Action::MountBlob { .. })),
            manifests_written: count(&|a| matches!(a, Action::PutManifest { .. })),
            tags_written: count(&|a| matches!(a, Action::PutTag { .. })),
            signatures_added: count(&|a| matches!(a, Action::Sign { added: true, .. })),
            signing_operations: signer.map(promoter::sign::Signer::operations),
            bytes_read_from_source: engine.progress().bytes_read.load(Ordering::Relaxed),
            requests: client.counts.total.load(Ordering::Relaxed),
            requests_retried: client.counts.retried.load(Ordering::Relaxed),
            seconds: elapsed.as_secs_f64(),
            policy_warnings: rows
                .iter()
                .filter(|r| r.policy().is_some_and(|p| p.warnings().next().is_some()))
                .count(),
            run,
        }
    }
}

#[derive(Serialize)]
struct UnitJson<'r> {
    id: &'r str,
    source: &'r str,
    digest: &'r str,
    status: UnitResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    actions: &'r [Action],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'r Report>,
}

fn write_json(
    out: &mut dyn Write,
    dry_run: bool,
    summary: &Summary,
    rows: &[Row],
) -> anyhow::Result<()> {
    let units: Vec<UnitJson<'_>> = rows
        .iter()
        .map(|row| {
            let (id, source, digest) = row.names();
            let (error, seconds) = match row {
                Row::Copied(r) => (r.error.as_ref().map(|e| error_chain(e)), Some(r.seconds)),
                Row::Done { .. } => (None, None),
                Row::Failed { error, .. } => (Some(error.clone()), None),
            };
            UnitJson {
                id,
                source,
                digest,
                status: row.status(),
                error,
                seconds,
                actions: row.actions(),
                policy: row.policy(),
            }
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

fn write_text(out: &mut dyn Write, dry_run: bool, s: &Summary, rows: &[Row]) -> anyhow::Result<()> {
    if dry_run {
        writeln!(
            out,
            "Dry run: nothing was written. What a promotion would do:"
        )?;
        for row in rows {
            let (_, source, digest) = row.names();
            writeln!(out, "\n{source}@{digest}  [{}]", row.status())?;
            for action in row.actions() {
                writeln!(out, "  {}", describe(action))?;
            }
        }
        writeln!(out)?;
    }
    let verb = if dry_run { "would be " } else { "" };
    let earlier = match (s.done_earlier, s.done_by_other_worker) {
        (0, 0) => String::new(),
        (a, b) => format!(" {a} done by an earlier attempt, {b} by another worker,"),
    };
    writeln!(
        out,
        "{} units: {} {verb}copied, {} already present,{earlier} {} failed. Blobs: {} {verb}copied, {} {verb}mounted; {} manifests and {} tags {verb}written; {:.1} MiB read from staging; {} requests ({} retried) in {:.1}s.",
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
    if s.signatures_added > 0 {
        writeln!(out, "{} signatures {verb}added.", s.signatures_added)?;
    }
    if let Some(run) = &s.run {
        writeln!(
            out,
            "Run {} is {} (state: {}, {} state requests).",
            run.id, run.status, run.state, run.state_requests
        )?;
    }
    for row in rows {
        let (_, source, digest) = row.names();
        let error = match row {
            Row::Copied(report) => report.error.as_ref().map(|e| error_chain(e)),
            Row::Failed { error, .. } => Some(error.clone()),
            Row::Done { .. } => None,
        };
        if let Some(error) = error {
            writeln!(out, "FAILED {source}@{digest}: {}", clean(&error))?;
        }
        for warning in row.policy().into_iter().flat_map(Report::warnings) {
            writeln!(
                out,
                "POLICY WARNING {source}@{digest}: {}: {}",
                warning.rule.as_str(),
                clean(&warning.detail)
            )?;
        }
    }
    Ok(())
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
        Action::CopyArtifact { tag, to } => format!("carry  {to}:{tag}"),
        Action::Sign { to, added: true } => format!("sign   {to}"),
        Action::Sign { to, added: false } => format!("signed {to} (already)"),
    }
}
