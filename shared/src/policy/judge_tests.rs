//! The rules judged from statements, without a registry.

use serde_json::json;

use super::judge::*;
use crate::manifest::policy::{Mode, ProvenanceRule, PublicKey, Severity, VulnerabilityRule};
use crate::reference::Digest;
use crate::sign::intoto::Statement;

const DAY: u64 = 86_400;
/// 2026-12-06T00:00:00Z.
const NOW: u64 = 1_796_515_200;

fn key() -> PublicKey {
    PublicKey {
        name: "ci".into(),
        spki: String::new(),
    }
}

fn statement(predicate_type: &str, predicate: serde_json::Value) -> (String, Statement) {
    (
        "ci".to_owned(),
        Statement::about("", &Digest::of(b"image"), predicate_type, predicate),
    )
}

fn provenance_rule(sources: &[&str]) -> ProvenanceRule {
    ProvenanceRule {
        mode: Mode::Require,
        keys: vec![key()],
        builders: vec!["https://github.com/slsa-framework/slsa-github-generator@v2".into()],
        source_repositories: sources.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn slsa_v1(builder: &str, repository: &str) -> (String, Statement) {
    statement(
        SLSA_PROVENANCE_V1,
        json!({
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/tags/v1", "repository": repository, "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": format!("git+{repository}@refs/tags/v1"), "digest": {"gitCommit": "abc"}}]
            },
            "runDetails": {"builder": {"id": builder}}
        }),
    )
}

#[test]
fn provenance_passes_with_an_allowed_builder_and_source() {
    let rule = provenance_rule(&["https://github.com/example/app"]);
    let ok = slsa_v1(
        "https://github.com/slsa-framework/slsa-github-generator@v2",
        "https://github.com/example/app",
    );
    let verdict = provenance(&rule, &[ok]);
    assert!(verdict.passed, "{}", verdict.detail);
    assert_eq!(verdict.status(), "pass");
    assert!(
        verdict
            .detail
            .contains("from `https://github.com/example/app`")
    );
}

#[test]
fn provenance_fails_on_another_builder_or_source_or_none() {
    let rule = provenance_rule(&["https://github.com/example/app"]);
    let builder = slsa_v1(
        "https://evil.example/builder",
        "https://github.com/example/app",
    );
    let verdict = provenance(&rule, &[builder]);
    assert!(!verdict.passed);
    assert_eq!(verdict.status(), "fail");
    assert_eq!(
        verdict.detail,
        "builder `https://evil.example/builder` is not allowed"
    );
    let source = slsa_v1(
        "https://github.com/slsa-framework/slsa-github-generator@v2",
        "https://github.com/fork/app",
    );
    assert_eq!(
        provenance(&rule, &[source]).detail,
        "source `https://github.com/fork/app` is not allowed"
    );
    assert_eq!(
        provenance(&rule, &[]).detail,
        "no SLSA provenance signed by `ci`"
    );
}

#[test]
fn provenance_v02_reads_builder_and_config_source() {
    let rule = provenance_rule(&["https://github.com/example/app.git"]);
    let v02 = statement(
        SLSA_PROVENANCE_V02,
        json!({
            "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator@v2"},
            "invocation": {"configSource": {"uri": "git+https://github.com/example/app@refs/heads/main"}}
        }),
    );
    assert!(provenance(&rule, &[v02]).passed);
}

fn vulnerability_rule(fail_on: Severity) -> VulnerabilityRule {
    VulnerabilityRule {
        mode: Mode::Warn,
        keys: vec![key()],
        max_age_days: 7,
        fail_on,
    }
}

fn rfc3339(seconds: u64) -> String {
    crate::sign::attest::rfc3339(seconds)
}

fn intoto_scan(finished: u64, results: serde_json::Value) -> (String, Statement) {
    statement(
        INTOTO_VULNS,
        json!({
            "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.50", "result": results},
            "metadata": {"scanStartedOn": rfc3339(finished - 60), "scanFinishedOn": rfc3339(finished)}
        }),
    )
}

#[test]
fn a_recent_clean_scan_passes_and_names_the_highest_severity() {
    let scan = intoto_scan(
        NOW - DAY,
        json!([{"id": "CVE-2026-1", "severity": [{"method": "nvd", "score": "5.3"}]}]),
    );
    let verdict = vulnerabilities(&vulnerability_rule(Severity::High), &[scan], NOW);
    assert!(verdict.passed, "{}", verdict.detail);
    assert_eq!(
        verdict.detail,
        "scanned 1 day(s) ago, 1 finding(s), highest medium; signed by `ci`"
    );
}

#[test]
fn findings_at_or_above_the_threshold_fail_with_their_ids() {
    let scan = intoto_scan(
        NOW - DAY,
        json!([
            {"id": "CVE-2026-3", "severity": [{"method": "nvd", "score": "9.8"}]},
            {"id": "CVE-2026-2", "severity": [{"method": "cvss_score", "score": 7.5}]},
            {"id": "CVE-2026-1", "severity": [{"method": "ghsa", "score": "CRITICAL"}]}
        ]),
    );
    let verdict = vulnerabilities(&vulnerability_rule(Severity::High), &[scan], NOW);
    assert!(!verdict.passed);
    assert_eq!(verdict.status(), "warn");
    assert_eq!(
        verdict.detail,
        "3 finding(s) at or above high; highest critical: CVE-2026-1, CVE-2026-3"
    );
}

#[test]
fn an_old_scan_or_none_fails() {
    let old = intoto_scan(NOW - 10 * DAY, json!([]));
    assert_eq!(
        vulnerabilities(&vulnerability_rule(Severity::Critical), &[old], NOW).detail,
        "the newest scan is 10 days old (at most 7 allowed)"
    );
    assert_eq!(
        vulnerabilities(&vulnerability_rule(Severity::Critical), &[], NOW).detail,
        "no vulnerability scan signed by `ci`"
    );
}

#[test]
fn the_newest_scan_decides() {
    let old_bad = intoto_scan(
        NOW - 3 * DAY,
        json!([{"id": "CVE-1", "severity": [{"method": "nvd", "score": "9.9"}]}]),
    );
    let new_clean = intoto_scan(NOW - DAY, json!([]));
    let verdict = vulnerabilities(
        &vulnerability_rule(Severity::Critical),
        &[old_bad, new_clean],
        NOW,
    );
    assert!(verdict.passed, "{}", verdict.detail);
}

#[test]
fn cosign_scans_carry_trivy_or_grype_reports() {
    let trivy = statement(
        COSIGN_VULN,
        json!({"scanner": {"result": {"Results": [{"Vulnerabilities": [
            {"VulnerabilityID": "CVE-A", "Severity": "HIGH"},
            {"VulnerabilityID": "CVE-B", "Severity": "LOW"}]}]}}}),
    );
    let found = findings(&trivy.1).expect("Trivy's report");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].severity, Severity::High);
    let grype = statement(
        COSIGN_VULN,
        json!({"scanner": {"result": {"matches": [{"vulnerability": {"id": "GHSA-x", "severity": "Critical"}}]}}}),
    );
    assert_eq!(
        findings(&grype.1).expect("Grype's report"),
        [Finding {
            id: "GHSA-x".into(),
            severity: Severity::Critical
        }]
    );
}

#[test]
fn a_scan_in_an_unknown_format_or_from_the_future_does_not_pass() {
    let sarif = statement(
        COSIGN_VULN,
        json!({"scanner": {"result": {"runs": []}},
               "metadata": {"scanFinishedOn": rfc3339(NOW - DAY)}}),
    );
    assert_eq!(findings(&sarif.1), None);
    let verdict = vulnerabilities(&vulnerability_rule(Severity::Critical), &[sarif], NOW);
    assert!(!verdict.passed);
    assert!(
        verdict.detail.contains("no format the promoter reads"),
        "{}",
        verdict.detail
    );
    let future = intoto_scan(NOW + 30 * DAY, json!([]));
    assert!(!vulnerabilities(&vulnerability_rule(Severity::Critical), &[future], NOW).passed);
    // Seven days and a few hours is older than seven days.
    let late = intoto_scan(NOW - 7 * DAY - 3600, json!([]));
    assert!(!vulnerabilities(&vulnerability_rule(Severity::Critical), &[late], NOW).passed);
}

#[test]
fn only_the_built_source_counts_not_a_dependency() {
    let rule = provenance_rule(&["https://github.com/example/app"]);
    let fork_using_app = statement(
        SLSA_PROVENANCE_V1,
        json!({
            "buildDefinition": {"resolvedDependencies": [
                {"uri": "git+https://github.com/fork/app@refs/heads/main"},
                {"uri": "git+https://github.com/example/app@refs/tags/v1"}
            ]},
            "runDetails": {"builder": {"id": "https://github.com/slsa-framework/slsa-github-generator@v2"}}
        }),
    );
    assert!(!provenance(&rule, &[fork_using_app]).passed);
    let upper = slsa_v1(
        "https://github.com/slsa-framework/slsa-github-generator@v2",
        "https://github.com/Example/App",
    );
    assert!(
        provenance(&rule, &[upper]).passed,
        "owners and names are case-insensitive"
    );
}
