//! The statements the promoter signs for each promoted digest: cosign's signature statement, a
//! promotion record (the Kubernetes promoter's predicate, plus where the promotion came from)
//! and a SLSA verification summary of what was checked before publishing.
//!
//! Each is pure data built from a [`Promotion`]; signing and pushing are the caller's.

use serde::Serialize;

use super::intoto::Statement;
use crate::reference::{Digest, Repository};

/// Predicate type of cosign 3's image signature statement (its predicate is empty).
pub const SIGNATURE_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Predicate type of a promotion record, as the Kubernetes promoter writes it.
pub const PROMOTION_PREDICATE: &str = "https://k8s.io/promo-tools/promotion/v1";
/// Predicate type of a SLSA verification summary, version 1.
pub const VSA_PREDICATE: &str = "https://slsa.dev/verification_summary/v1";

/// The promoter as a builder and verifier id (a URN: the promoter has no canonical URL).
pub const PROMOTER_ID: &str = "urn:promoter";
/// The promoter's version, as recorded in what it signs.
pub const PROMOTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Custom verified level: the digest is named by a reviewed manifest revision. (SLSA forbids
/// custom levels starting with `SLSA_`; the promoter verifies no SLSA build level itself.)
pub const LEVEL_MANIFEST: &str = "PROMOTER_NAMED_BY_MANIFEST";
/// Custom verified level: staging's digest carried a valid signature by the required key.
pub const LEVEL_STAGING_SIGNED: &str = "PROMOTER_STAGING_SIGNED";

/// Everything recorded about one digest's promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The signed digest.
    pub digest: Digest,
    /// Staging's repository.
    pub source: Repository,
    /// The canonical public name (the signing identity), without digest.
    pub canonical: String,
    /// The manifests' revision.
    pub revision: String,
    /// The manifest repository, when the revision is one of its commits.
    pub manifest_repository: Option<String>,
    /// The run.
    pub run: String,
    /// RFC 3339 time of signing.
    pub time: String,
    /// Staging signatures checked before publishing, when a key was required: their
    /// references (`REPOSITORY@DIGEST`) and digests.
    pub checked: Option<Vec<(String, Digest)>>,
}

/// The Kubernetes promoter's promotion record, with the promoter's additions (camelCase, as
/// its protobuf JSON). A reader that refuses unknown fields must skip the additions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PromotionRecord<'a> {
    src_ref: String,
    dst_ref: String,
    digest: &'a str,
    timestamp: &'a str,
    builder_id: String,
    manifest_revision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_repository: Option<&'a str>,
    run_id: &'a str,
    promoter_version: &'a str,
}

impl Promotion {
    /// `NAME@DIGEST` under the canonical name.
    pub fn destination_reference(&self) -> String {
        format!("{}@{}", self.canonical, self.digest)
    }

    /// cosign's signature statement: the digest alone, an empty predicate.
    pub fn signature(&self) -> Statement {
        Statement::about("", &self.digest, SIGNATURE_PREDICATE, serde_json::json!({}))
    }

    /// The promotion record, about `CANONICAL@DIGEST`.
    pub fn promotion(&self) -> Statement {
        let record = PromotionRecord {
            src_ref: format!("{}@{}", self.source, self.digest),
            dst_ref: self.destination_reference(),
            digest: self.digest.as_str(),
            timestamp: &self.time,
            builder_id: format!("{PROMOTER_ID}@{PROMOTER_VERSION}"),
            manifest_revision: &self.revision,
            manifest_repository: self.manifest_repository.as_deref(),
            run_id: &self.run,
            promoter_version: PROMOTER_VERSION,
        };
        Statement::about(
            &self.destination_reference(),
            &self.digest,
            PROMOTION_PREDICATE,
            serde_json::to_value(record).unwrap_or_default(),
        )
    }

    /// The verification summary: the manifest revision as policy, the staging signatures
    /// checked as input attestations, PASSED (the promoter publishes nothing that failed).
    pub fn verification_summary(&self) -> Statement {
        let mut levels = vec![LEVEL_MANIFEST];
        let mut inputs = Vec::new();
        if let Some(checked) = &self.checked {
            levels.push(LEVEL_STAGING_SIGNED);
            inputs = checked
                .iter()
                .map(|(uri, digest)| {
                    serde_json::json!({"uri": uri, "digest": {"sha256": digest.hex()}})
                })
                .collect();
        }
        let policy_uri = match &self.manifest_repository {
            Some(repository) => format!("git+https://github.com/{repository}@{}", self.revision),
            None => format!("{PROMOTER_ID}:manifests@{}", self.revision),
        };
        let policy_digest = if self.manifest_repository.is_some() {
            serde_json::json!({"gitCommit": self.revision})
        } else {
            serde_json::json!({"sha256": self.revision})
        };
        let predicate = serde_json::json!({
            "verifier": {"id": PROMOTER_ID, "version": {"promoter": PROMOTER_VERSION}},
            "timeVerified": self.time,
            "resourceUri": self.destination_reference(),
            "policy": {"uri": policy_uri, "digest": policy_digest},
            "inputAttestations": inputs,
            "verificationResult": "PASSED",
            "verifiedLevels": levels,
            "slsaVersion": "1.0",
        });
        Statement::about(
            &self.destination_reference(),
            &self.digest,
            VSA_PREDICATE,
            predicate,
        )
    }

    /// The statements to sign, by predicate type, for the kinds asked.
    pub fn statements(&self, attest: bool) -> Vec<Statement> {
        let mut out = vec![self.signature()];
        if attest {
            out.push(self.promotion());
            out.push(self.verification_summary());
        }
        out
    }
}

/// RFC 3339 UTC time, to the second, of the Unix time `seconds`.
pub fn rfc3339(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promotion(checked: Option<Vec<(String, Digest)>>) -> Promotion {
        Promotion {
            digest: Digest::of(b"image"),
            source: "staging.example/app".parse().expect("repository"),
            canonical: "registry.example/app".to_owned(),
            revision: "0123abcd".to_owned(),
            manifest_repository: Some("org/manifests".to_owned()),
            run: "revision-0123abcd".to_owned(),
            time: rfc3339(1_800_000_000),
            checked,
        }
    }

    #[test]
    fn the_promotion_record_has_the_kubernetes_promoters_fields_and_ours() {
        let p = promotion(None);
        let statement = p.promotion();
        let digest = p.digest.to_string();
        assert_eq!(
            statement.subject[0].name,
            format!("registry.example/app@{digest}")
        );
        let predicate = &statement.predicate;
        assert_eq!(predicate["srcRef"], format!("staging.example/app@{digest}"));
        assert_eq!(
            predicate["dstRef"],
            format!("registry.example/app@{digest}")
        );
        assert_eq!(predicate["digest"], digest);
        assert_eq!(predicate["timestamp"], "2027-01-15T08:00:00Z");
        assert!(
            predicate["builderId"]
                .as_str()
                .is_some_and(|b| b.starts_with("urn:promoter@"))
        );
        assert_eq!(predicate["manifestRevision"], "0123abcd");
        assert_eq!(predicate["manifestRepository"], "org/manifests");
        assert_eq!(predicate["runId"], "revision-0123abcd");
    }

    #[test]
    fn the_summary_lists_the_checked_staging_signatures_and_the_policy_revision() {
        let signature = Digest::of(b"signature image");
        let p = promotion(Some(vec![(
            format!("staging.example/app@{signature}"),
            signature.clone(),
        )]));
        let vsa = p.verification_summary().predicate;
        assert_eq!(vsa["verificationResult"], "PASSED");
        assert_eq!(
            vsa["policy"]["uri"],
            "git+https://github.com/org/manifests@0123abcd"
        );
        assert_eq!(
            vsa["inputAttestations"][0]["digest"]["sha256"],
            signature.hex()
        );
        assert_eq!(
            vsa["verifiedLevels"],
            serde_json::json!([LEVEL_MANIFEST, LEVEL_STAGING_SIGNED])
        );
        let unchecked = promotion(None).verification_summary().predicate;
        assert_eq!(unchecked["inputAttestations"], serde_json::json!([]));
        assert_eq!(
            unchecked["verifiedLevels"],
            serde_json::json!([LEVEL_MANIFEST])
        );
    }

    #[test]
    fn the_signature_statement_is_cosigns() {
        let statement = promotion(None).signature();
        let json = serde_json::to_value(&statement).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": Digest::of(b"image").hex()}}],
                "predicateType": SIGNATURE_PREDICATE,
                "predicate": {},
            })
        );
    }
}
