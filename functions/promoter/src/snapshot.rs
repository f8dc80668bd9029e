//! `promoter snapshot`: prints what a registry holds under a prefix.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use promoter::reference::Repository;
use promoter::snapshot::{self, Options};

use crate::cli::{RegistryArgs, SnapshotOutput};
use crate::config::client;

/// Runs `promoter snapshot PREFIX`.
pub fn run(
    prefix: &str,
    output: SnapshotOutput,
    all: bool,
    registries: &RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let prefix: Repository = prefix.trim_end_matches('/').parse().with_context(|| {
        format!("`{prefix}` is not REGISTRY/PREFIX (e.g. gcr.io/k8s-staging-foo)")
    })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let images = runtime.block_on(async {
        let client = client(registries).await?;
        anyhow::Ok(snapshot::snapshot(&client, &prefix, Options { all }).await?)
    })?;
    let text = match output {
        SnapshotOutput::Yaml => snapshot::images_yaml(&images),
        SnapshotOutput::Csv => snapshot::csv(&images),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the snapshot")?;
    Ok(ExitCode::SUCCESS)
}
