//! `promoter keys generate` and `promoter verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use promoter::registry::Repository;
use promoter::sign::{self, keys::SigningKey, keys::VerifyingKey};

use crate::cli::{KeysCommand, RegistryArgs};
use crate::commands::INVALID;
use crate::promote::client;

/// Runs a `promoter keys` command.
pub fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { prefix } => {
            let (private, public) = SigningKey::generate(&prefix)?;
            println!(
                "Private key written to {} (keep it secret).",
                private.display()
            );
            println!("Public key written to {}.", public.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Splits `HOST/REPO:TAG` or `HOST/REPO@DIGEST`.
fn split_reference(image: &str) -> anyhow::Result<(Repository, String)> {
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (name, digest.to_owned()),
        None => {
            let slash = image.rfind('/').unwrap_or(0);
            match image[slash..].rfind(':') {
                Some(colon) => (
                    &image[..slash + colon],
                    image[slash + colon + 1..].to_owned(),
                ),
                None => (image, "latest".to_owned()),
            }
        }
    };
    Ok((Repository::parse(name)?, reference))
}

/// Runs `promoter verify`: exit 0 when a valid signature by `key` exists for the image.
pub fn verify(
    image: &str,
    key: &Path,
    signed_as: Option<&str>,
    registries: &RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let public = VerifyingKey::from_pem_file(key)?;
    let (repository, reference) = split_reference(image)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = client(registries).await?;
        let digest = if reference.starts_with("sha256:") {
            reference
        } else {
            match client.resolve(&repository, &reference).await? {
                Some(digest) => digest,
                None => {
                    eprintln!("error: {repository}:{reference} does not exist");
                    return Ok(INVALID);
                }
            }
        };
        let mut payloads = sign::verify(&client, &repository, &digest, &public).await?;
        if let Some(wanted) = signed_as {
            payloads.retain(|p| p.critical.identity.docker_reference == wanted);
        }
        if payloads.is_empty() {
            eprintln!(
                "error: no valid signature by {} for {repository}@{digest}",
                key.display()
            );
            return Ok(INVALID);
        }
        for payload in &payloads {
            println!(
                "Verified: {repository}@{digest} signed as {} ({})",
                payload.critical.identity.docker_reference, payload.critical.kind
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
