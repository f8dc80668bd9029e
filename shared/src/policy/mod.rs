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

use std::time::{SystemTime, UNIX_EPOCH};

use crate::manifest::policy::{Policy, Report};
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

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
