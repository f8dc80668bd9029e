//! `promoter reconcile`: prints how production differs from the manifests (the library's
//! [`promoter::drift`]), as text or JSON (`promoter.drift/v1`).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use promoter::drift::{self, RepositoryDrift};
use promoter::{manifest, plan};

use crate::cli::{PromoteOutput, RegistryArgs};
use crate::config::client;
use crate::exit::{INVALID, print_diagnostics};
use crate::terminal::clean;

/// Runs `promoter reconcile PATH`: exit 0 without drift, 1 with.
pub fn run(
    path: &Path,
    output: PromoteOutput,
    signatures: bool,
    registries: &RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(&[path.to_path_buf()])?;
    if !loaded.is_valid() {
        print_diagnostics(&loaded.diagnostics);
        return Ok(INVALID);
    }
    let plan = plan::build(&loaded.manifests, None);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (drifts, requests) = runtime.block_on(async {
        let client = client(registries).await?;
        let drifts = drift::reconcile(&client, &plan.units, signatures).await?;
        let requests = client
            .counts
            .total
            .load(std::sync::atomic::Ordering::Relaxed);
        anyhow::Ok((drifts, requests))
    })?;
    let total = drifts.len();
    let drifted: Vec<&RepositoryDrift> = drifts.iter().filter(|d| !d.is_empty()).collect();
    let count = |f: fn(&RepositoryDrift) -> usize| drifted.iter().map(|d| f(d)).sum::<usize>();
    let summary = serde_json::json!({
        "repositories": total,
        "drifted": drifted.len(),
        "missing": count(|d| d.missing.len()),
        "missing_tags": count(|d| d.missing_tags.len()),
        "moved_tags": count(|d| d.moved_tags.len()),
        "unknown_tags": count(|d| d.unknown_tags.len()),
        "unsigned": count(|d| d.unsigned.len()),
        "requests": requests,
    });
    let mut out = std::io::stdout().lock();
    match output {
        PromoteOutput::Json => {
            let report = serde_json::json!({
                "schema": "promoter.drift/v1",
                "summary": summary,
                "repositories": drifted,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        PromoteOutput::Text => {
            for drift in &drifted {
                writeln!(out, "{}", clean(&describe(drift)))?;
            }
            writeln!(
                out,
                "Drift in {} of {total} repositories: {} missing digests, {} missing tags, {} moved tags, {} unknown tags{} ({requests} requests).",
                drifted.len(),
                summary["missing"],
                summary["missing_tags"],
                summary["moved_tags"],
                summary["unknown_tags"],
                if signatures {
                    format!(", {} unsigned digests", summary["unsigned"])
                } else {
                    String::new()
                },
            )?;
            if !drifted.is_empty() {
                writeln!(
                    out,
                    "`promoter promote PATH --full` copies what is missing (and, with --key, signs what is unsigned); moved and unknown tags are for people to judge (the promoter never moves or deletes)."
                )?;
            }
        }
    }
    Ok(if drifted.is_empty() {
        ExitCode::SUCCESS
    } else {
        INVALID
    })
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
