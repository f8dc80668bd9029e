//! Runs each subcommand: load, check, plan, print.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use futures_util::StreamExt as _;
use promoter::manifest::{self, Loaded};
use promoter::plan::{self, Checked, render};

use crate::cli::{Cli, Command, Output, RegistryArgs};
use crate::exit::{INVALID, print_diagnostics};

/// Runs the command; `Err` is a usage error (exit 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Plan {
            path,
            base,
            allow_removal,
            output,
            registries,
        } => plan(path, base, allow_removal, output, &registries),
        Command::Promote(args) => crate::promote::run(args),
        Command::Runs(command) => crate::runs::run(command),
        Command::Invoke { function, event } => crate::functions::invoke(function, &event),
        Command::Audit(crate::cli::AuditCommand::Serve { listen }) => {
            crate::functions::serve_audit(listen)
        }
        Command::Keys(command) => crate::signing::keys(command),
        Command::Reconcile { signatures, args } => crate::reconcile::run(args, signatures),
        Command::Manifest(crate::cli::ManifestCommand::Add {
            path,
            project,
            image,
            tags,
            digest,
            all_new,
            tag_pattern,
            commit,
            pull_request,
            github_repository,
            base_branch,
            registries,
        }) => crate::manifest_add::run(&crate::manifest_add::Request {
            path,
            project,
            image,
            tags,
            digest,
            new_tags: all_new.then_some(tag_pattern).flatten(),
            commit,
            pull_request: pull_request.then_some(crate::manifest_add::PullRequest {
                repository: github_repository,
                base: base_branch,
            }),
            registries,
        }),
        Command::Verify {
            image,
            key,
            reference,
            attestations,
            registries,
        } => crate::signing::verify(
            &image,
            &key,
            reference.as_deref(),
            attestations,
            &registries,
        ),
        Command::Snapshot {
            prefix,
            output,
            all,
            registries,
        } => crate::snapshot::run(&prefix, output, all, &registries),
    }
}

fn validate(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(paths)?;
    print_diagnostics(&loaded.diagnostics);
    if !loaded.is_valid() {
        return Ok(INVALID);
    }
    let digests: usize = loaded
        .manifests
        .iter()
        .flat_map(|m| &m.images)
        .map(|i| i.digests.len())
        .sum();
    println!(
        "OK: {} manifests, {} images, {digests} digests.",
        loaded.manifests.len(),
        loaded
            .manifests
            .iter()
            .map(|m| m.images.len())
            .sum::<usize>(),
    );
    Ok(ExitCode::SUCCESS)
}

fn plan(
    path: PathBuf,
    base: Option<PathBuf>,
    allow_removal: bool,
    output: Output,
    registries: &RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let current = manifest::load(&[path])?;
    print_diagnostics(&current.diagnostics);
    if !current.is_valid() {
        return Ok(INVALID);
    }
    let base = match base {
        Some(base) => Some(load_base(base)?),
        None => None,
    };
    let base = match &base {
        Some(Ok(loaded)) => Some(loaded.manifests.as_slice()),
        Some(Err(code)) => return Ok(*code),
        None => None,
    };
    let mut plan = plan::build(&current.manifests, base);
    if !allow_removal && !plan.removals.is_empty() {
        print_diagnostics(&plan::removal_diagnostics(&plan.removals));
        return Ok(INVALID);
    }
    plan.checked = check_policies(&plan, registries)?;
    let format = match output {
        Output::Text => render::Format::Text,
        Output::Json => render::Format::Json,
        Output::Markdown => render::Format::Markdown,
    };
    let mut stdout = io::stdout().lock();
    match render::render(&plan, format, &mut stdout).and_then(|()| stdout.flush()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing the plan"),
        _ if plan.policy_refuses() => Ok(INVALID),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Digests checked against their policy at the same time by `plan`.
const POLICY_CHECKS_AT_ONCE: usize = 8;

/// Checks each new digest of a project with a policy in staging (none: no registry is read).
fn check_policies(plan: &plan::Plan, registries: &RegistryArgs) -> anyhow::Result<Vec<Checked>> {
    let units: Vec<&plan::Unit> = plan.units_to_check().collect();
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = crate::config::client(registries).await?;
        // A few digests at a time: a release of many digests is read in a fraction of the
        // time, and staging sees at most this many checks at once.
        let results: Vec<anyhow::Result<Option<Checked>>> = futures_util::stream::iter(units)
            .map(|unit| {
                let client = &client;
                async move {
                    let report = promoter::policy::check_all(
                        client,
                        &unit.source,
                        &unit.digest,
                        &unit.policies,
                    )
                    .await
                    .with_context(|| {
                        format!(
                            "checking {}@{} against its policy",
                            unit.source, unit.digest
                        )
                    })?;
                    Ok(report.map(|report| Checked {
                        source: unit.source.clone(),
                        digest: unit.digest.clone(),
                        report,
                    }))
                }
            })
            .buffered(POLICY_CHECKS_AT_ONCE)
            .collect()
            .await;
        let mut checked = Vec::with_capacity(results.len());
        for result in results {
            checked.extend(result?);
        }
        anyhow::Ok(checked)
    })
}

/// Loads the base manifests; `Err(exit code)` when they are invalid (reported on stderr).
fn load_base(path: PathBuf) -> anyhow::Result<Result<Loaded, ExitCode>> {
    let loaded = manifest::load(std::slice::from_ref(&path))
        .with_context(|| format!("reading the base manifests (--base {})", path.display()))?;
    if loaded.is_valid() {
        return Ok(Ok(loaded));
    }
    print_diagnostics(&loaded.diagnostics);
    eprintln!(
        "error: the base manifests (--base) are invalid; fix them first or plan without --base"
    );
    Ok(Err(INVALID))
}
