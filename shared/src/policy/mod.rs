//! Checking staging digests against their project's policy (see [`crate::manifest::policy`]):
//! signatures by the policy's keys, SLSA build provenance, and a recent vulnerability scan.
//!
//! [`evidence`] reads what staging holds about a digest (signatures, and every DSSE envelope
//! attached to it: sigstore bundle referrers and cosign 2's `.att` image), once per digest;
//! [`judge`] decides each rule from the statements the policy's keys signed, without IO. The
//! presubmit (`promoter plan`) shows the verdicts on the pull request; the copy engine refuses
//! a unit failing a `require` rule before writing anything, and records `warn` results.

pub mod evidence;
pub mod judge;
#[cfg(test)]
mod judge_tests;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error_chain::error_chain;
use crate::manifest::policy::{Mode, Policy, Report, Rule, Verdict};
use crate::reference::{Digest, Repository};
use crate::registry::Client;
use crate::sign::SignError;

pub use evidence::Evidence;

/// Checks `digest` in staging `repository` against every rule of `policy` that is not `off`.
pub async fn check(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    policy: &Policy,
) -> Result<Report, SignError> {
    let evidence = Evidence::read(client, repository, digest, policy).await?;
    Ok(judge::report(policy, digest, &evidence, now()))
}

/// Checks `digest` against each of `policies` that is not `off`: one report (the policies'
/// files, every verdict), or `None` when no rule is on.
///
/// Staging that cannot be read (a registry error, a broken attachment) fails the check only
/// for a policy with a `require` rule (the unit is then retried, as any failed read); a policy
/// of `warn` rules only gets a failed verdict per rule instead, since `warn` never blocks.
pub async fn check_all(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    policies: &[Arc<Policy>],
) -> Result<Option<Report>, SignError> {
    let mut combined: Option<Report> = None;
    for policy in policies.iter().filter(|p| !p.is_off()) {
        let report = match Box::pin(check(client, repository, digest, policy)).await {
            Ok(report) => report,
            Err(error) if !policy.requires_any() => unreadable(policy, &error),
            Err(error) => return Err(error),
        };
        match &mut combined {
            None => combined = Some(report),
            Some(all) => {
                all.policy = format!("{}, {}", all.policy, report.policy);
                all.verdicts.extend(report.verdicts);
            }
        }
    }
    Ok(combined)
}

/// A failed verdict for each rule of `policy` that is on: staging could not be read.
fn unreadable(policy: &Policy, error: &SignError) -> Report {
    let detail = format!("staging could not be read: {}", error_chain(error));
    let rules = [
        (Rule::Signature, policy.signature.as_ref().map(|r| r.mode)),
        (Rule::Provenance, policy.provenance.as_ref().map(|r| r.mode)),
        (
            Rule::Vulnerabilities,
            policy.vulnerabilities.as_ref().map(|r| r.mode),
        ),
    ];
    Report {
        policy: policy.file.clone(),
        verdicts: rules
            .into_iter()
            .filter_map(|(rule, mode)| {
                mode.filter(|m| *m != Mode::Off).map(|mode| Verdict {
                    rule,
                    mode,
                    passed: false,
                    detail: detail.clone(),
                })
            })
            .collect(),
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
