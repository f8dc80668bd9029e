//! `promoter keys generate` and `promoter verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use promoter::reference::{ImageReference, Reference};
use promoter::sign::verify::FoundBundle;
use promoter::sign::{self, Found, attest, keys::SigningKey, keys::VerifyingKey};

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

/// Runs `promoter verify`: exit 0 when a valid signature by `key` exists for the image (or,
/// with `attestations`, a valid promotion record and verification summary).
pub fn verify(
    image: &str,
    key: &Path,
    signed_as: Option<&str>,
    attestations: bool,
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
        let image = format!("{repository}@{digest}");
        if attestations {
            let found = sign::verify::bundles(&client, &repository, &digest, &public).await?;
            return Ok(report_attestations(&image, &found, signed_as, key));
        }
        let found = sign::verify_any(&client, &repository, &digest, &public).await?;
        // A bundle's signature statement names no image: under --reference it counts when a
        // promotion record by the same key names the image that way.
        let named_by_record = match signed_as {
            None => true,
            Some(wanted) => sign::verify::bundles(&client, &repository, &digest, &public)
                .await?
                .iter()
                .filter_map(|b| b.statement.as_ref().ok())
                .any(|s| {
                    s.predicate_type == attest::PROMOTION_PREDICATE
                        && s.subject
                            .iter()
                            .any(|n| n.name == format!("{wanted}@{digest}"))
                }),
        };
        let found: Vec<&Found> = found
            .iter()
            .filter(|f| match (f, signed_as) {
                (Found::Legacy { payload, .. }, Some(wanted)) => {
                    payload.critical.identity.docker_reference == wanted
                }
                (Found::Bundle { .. }, _) => named_by_record,
                (Found::Legacy { .. }, None) => true,
            })
            .collect();
        if found.is_empty() {
            eprintln!("error: no valid signature by {} for {image}", key.display());
            return Ok(INVALID);
        }
        for found in found {
            match found {
                Found::Legacy { payload, .. } => println!(
                    "Verified: {image} signed as {} (legacy signature, {})",
                    payload.critical.identity.docker_reference, payload.critical.kind
                ),
                Found::Bundle { referrer } => {
                    println!("Verified: {image} (sigstore bundle, referrer {referrer})")
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints each bundle of `image` and whether it verifies; success when a promotion record and
/// a verification summary (for the name `signed_as`, when given) verify.
fn report_attestations(
    image: &str,
    found: &[FoundBundle],
    signed_as: Option<&str>,
    key: &Path,
) -> ExitCode {
    let mut promotion = false;
    let mut summary = false;
    for bundle in found {
        let statement = match &bundle.statement {
            Ok(statement) => statement,
            Err(error) => {
                println!("Rejected: {} ({error})", bundle.referrer);
                continue;
            }
        };
        // The name a statement is about, `NAME@DIGEST`, without its digest.
        let names_wanted = signed_as.is_none_or(|wanted| {
            statement
                .subject
                .iter()
                .any(|s| s.name.split_once('@').map_or(s.name.as_str(), |(n, _)| n) == wanted)
        });
        let p = &statement.predicate;
        match statement.predicate_type.as_str() {
            attest::PROMOTION_PREDICATE if names_wanted => {
                promotion = true;
                println!(
                    "Verified: promotion record {}: {} -> {} at {} (revision {}, run {})",
                    bundle.referrer,
                    text(&p["srcRef"]),
                    text(&p["dstRef"]),
                    text(&p["timestamp"]),
                    text(&p["manifestRevision"]),
                    text(&p["runId"]),
                );
            }
            attest::VSA_PREDICATE if names_wanted => {
                summary = true;
                println!(
                    "Verified: verification summary {}: {} for {} under {} ({} input attestations, levels {})",
                    bundle.referrer,
                    text(&p["verificationResult"]),
                    text(&p["resourceUri"]),
                    text(&p["policy"]["uri"]),
                    p["inputAttestations"].as_array().map_or(0, Vec::len),
                    p["verifiedLevels"],
                );
            }
            other => println!("Verified: {} ({other})", bundle.referrer),
        }
    }
    if promotion && summary {
        return ExitCode::SUCCESS;
    }
    let missing: Vec<&str> = [
        (promotion, "promotion record"),
        (summary, "verification summary"),
    ]
    .iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| *what)
    .collect();
    eprintln!(
        "error: no valid {} by {} for {image}",
        missing.join(" and no "),
        key.display()
    );
    INVALID
}

/// A JSON string's text, or the JSON itself.
fn text(value: &serde_json::Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}
