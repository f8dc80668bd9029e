//! `promoter keys generate` and `promoter verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use promoter::reference::{ImageReference, Reference};
use promoter::sign::{self, keys::SigningKey, keys::VerifyingKey};

use crate::cli::{KeysCommand, RegistryArgs};
use crate::config::client;
use crate::exit::INVALID;

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

/// Runs `promoter verify`: exit 0 when a valid signature by `key` exists for the image.
pub fn verify(
    image: &str,
    key: &Path,
    signed_as: Option<&str>,
    registries: &RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let public = VerifyingKey::from_pem_file(key)?;
    let ImageReference {
        repository,
        reference,
    } = image.parse()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = client(registries).await?;
        let digest = match reference {
            Reference::Digest(digest) => digest,
            Reference::Tag(tag) => match client.resolve(&repository, &tag).await? {
                Some(digest) => digest,
                None => {
                    eprintln!("error: {repository}:{tag} does not exist");
                    return Ok(INVALID);
                }
            },
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
