//! Deciding each rule from what staging holds, without IO.
//!
//! - **signature**: any of the rule's keys signed the digest (either cosign format).
//! - **provenance**: a statement of SLSA provenance v1 (`runDetails.builder.id`,
//!   `buildDefinition.externalParameters.workflow.repository`, `resolvedDependencies[].uri`) or
//!   v0.2 (`builder.id`, `invocation.configSource.uri`, `materials[].uri`), signed by one of the
//!   keys, whose builder is allowed and (when the rule lists sources) whose source matches.
//!   Sources are compared without `git+`, `.git`, `@ref` and a trailing `/`.
//! - **vulnerabilities**: the newest scan (cosign's `vuln/v1`, in-toto's `vulns` v0.1) signed by
//!   one of the keys, finished (`metadata.scanFinishedOn`) at most `maxAgeDays` ago, with no
//!   finding at or above `failOn`. Findings are read from in-toto's `scanner.result` list
//!   (`id`, `severity[].score`: a CVSS score or a word) and, in cosign's predicate, from the
//!   scanner's own report in `scanner.result`: Trivy's JSON (`Results[].Vulnerabilities[]`) or
//!   Grype's (`matches[].vulnerability`).

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Evidence;
use crate::manifest::policy::{
    Mode, Policy, ProvenanceRule, Report, Rule, Severity, SignatureRule, Verdict, VulnerabilityRule,
};
use crate::reference::Digest;
use crate::sign::intoto::Statement;

/// SLSA provenance, version 1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// SLSA provenance, version 0.2.
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
/// cosign's vulnerability scan predicate.
pub const COSIGN_VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// in-toto's vulnerabilities predicate.
pub const INTOTO_VULNS: &str = "https://in-toto.io/attestation/vulns/v0.1";
/// Most finding ids named in a verdict.
const MAX_IDS: usize = 5;
const DAY: u64 = 24 * 60 * 60;
/// How far ahead of this clock a scan's time may be.
const CLOCK_SKEW: u64 = 5 * 60;

/// Every rule of `policy` that is not `off`, judged for `digest` from `evidence` at `now`
/// (seconds since the epoch).
pub fn report(policy: &Policy, digest: &Digest, evidence: &Evidence, now: u64) -> Report {
    let mut verdicts = Vec::new();
    if let Some(rule) = policy.signature.as_ref().filter(|r| r.mode != Mode::Off) {
        verdicts.push(signature(rule, evidence));
    }
    if let Some(rule) = policy.provenance.as_ref().filter(|r| r.mode != Mode::Off) {
        let types = [SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02];
        let statements = evidence.statements(digest, &rule.keys, &types);
        verdicts.push(provenance(rule, &statements));
    }
    if let Some(rule) = policy
        .vulnerabilities
        .as_ref()
        .filter(|r| r.mode != Mode::Off)
    {
        let statements = evidence.statements(digest, &rule.keys, &[COSIGN_VULN, INTOTO_VULNS]);
        verdicts.push(vulnerabilities(rule, &statements, now));
    }
    Report {
        policy: policy.file.clone(),
        verdicts,
    }
}

fn verdict(rule: Rule, mode: Mode, passed: bool, detail: String) -> Verdict {
    Verdict {
        rule,
        mode,
        passed,
        detail,
    }
}

fn key_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The signature rule.
pub fn signature(rule: &SignatureRule, evidence: &Evidence) -> Verdict {
    match evidence.signed_by.first() {
        Some((key, format)) => verdict(
            Rule::Signature,
            rule.mode,
            true,
            format!("signed by `{key}` ({format})"),
        ),
        None => verdict(
            Rule::Signature,
            rule.mode,
            false,
            format!(
                "no signature by {}",
                key_names(rule.keys.iter().map(|k| k.name.as_str()))
            ),
        ),
    }
}

/// The provenance rule, from the provenance statements the rule's keys signed.
pub fn provenance(rule: &ProvenanceRule, statements: &[(String, Statement)]) -> Verdict {
    let fail = |detail| verdict(Rule::Provenance, rule.mode, false, detail);
    if statements.is_empty() {
        return fail(format!(
            "no SLSA provenance signed by {}",
            key_names(rule.keys.iter().map(|k| k.name.as_str()))
        ));
    }
    let mut why_not = Vec::new();
    for (key, statement) in statements {
        let predicate = &statement.predicate;
        let Some(builder) = builder_id(predicate) else {
            why_not.push("a provenance without a builder id".to_owned());
            continue;
        };
        if !rule.builders.iter().any(|b| b == builder) {
            why_not.push(format!("builder `{builder}` is not allowed"));
            continue;
        }
        if rule.source_repositories.is_empty() {
            return verdict(
                Rule::Provenance,
                rule.mode,
                true,
                format!("built by `{builder}`, signed by `{key}`"),
            );
        }
        let found = sources(predicate);
        let allowed: Vec<String> = rule
            .source_repositories
            .iter()
            .map(|s| normalized_source(s))
            .collect();
        match found
            .iter()
            .find(|s| allowed.contains(&normalized_source(s)))
        {
            Some(source) => {
                return verdict(
                    Rule::Provenance,
                    rule.mode,
                    true,
                    format!(
                        "built by `{builder}` from `{}`, signed by `{key}`",
                        normalized_source(source)
                    ),
                );
            }
            None if found.is_empty() => why_not.push("a provenance naming no source".to_owned()),
            None => why_not.push(format!(
                "source `{}` is not allowed",
                normalized_source(found[0])
            )),
        }
    }
    why_not.dedup();
    fail(why_not.join("; "))
}

/// The builder id of a SLSA v1 or v0.2 predicate.
fn builder_id(predicate: &Value) -> Option<&str> {
    predicate
        .pointer("/runDetails/builder/id")
        .or_else(|| predicate.pointer("/builder/id"))
        .and_then(Value::as_str)
}

/// The source a SLSA v1 or v0.2 predicate says it built from: the workflow's repository (v1,
/// GitHub builders) or the config source (v0.2) when given, else the first resolved dependency
/// or material (by the SLSA specifications, the source comes first). Only that one: a build of
/// another repository that merely depends on the allowed one must not pass.
fn sources(predicate: &Value) -> Vec<&str> {
    let primary: Vec<&str> = [
        "/buildDefinition/externalParameters/workflow/repository",
        "/invocation/configSource/uri",
    ]
    .iter()
    .filter_map(|p| predicate.pointer(p).and_then(Value::as_str))
    .collect();
    if !primary.is_empty() {
        return primary;
    }
    [
        "/buildDefinition/resolvedDependencies/0/uri",
        "/materials/0/uri",
    ]
    .iter()
    .filter_map(|p| predicate.pointer(p).and_then(Value::as_str))
    .take(1)
    .collect()
}

/// A source URI without `git+`, `@ref`, `.git` or a trailing `/`, in lower case (GitHub's
/// owners and repositories are case-insensitive).
fn normalized_source(uri: &str) -> String {
    let uri = uri.strip_prefix("git+").unwrap_or(uri);
    // The first `@` after the path starts marks a ref (`…/repo@refs/heads/main`, a ref may hold
    // `@` itself); one in the authority (`user@host`) is not one.
    let path_start = uri.find("://").map_or(0, |i| i + 3);
    let uri = match uri[path_start..].find('/') {
        Some(slash) => {
            let path = path_start + slash;
            match uri[path..].find('@') {
                Some(at) => &uri[..path + at],
                None => uri,
            }
        }
        None => uri,
    };
    let uri = uri.trim_end_matches('/');
    uri.strip_suffix(".git").unwrap_or(uri).to_lowercase()
}

/// One finding of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Its id (a CVE, GHSA… id).
    pub id: String,
    /// Its severity.
    pub severity: Severity,
}

/// The vulnerabilities rule, from the scan statements the rule's keys signed.
pub fn vulnerabilities(
    rule: &VulnerabilityRule,
    statements: &[(String, Statement)],
    now: u64,
) -> Verdict {
    let fail = |detail| verdict(Rule::Vulnerabilities, rule.mode, false, detail);
    // A scan dated ahead of now (beyond a clock's skew) is not believed: it would stay "newest".
    let newest = statements
        .iter()
        .filter_map(|(key, s)| scan_time(s).map(|t| (t, key, s)))
        .filter(|(t, _, _)| *t <= now + CLOCK_SKEW)
        .max_by_key(|(t, _, _)| *t);
    let Some((finished, key, statement)) = newest else {
        return fail(if statements.is_empty() {
            format!(
                "no vulnerability scan signed by {}",
                key_names(rule.keys.iter().map(|k| k.name.as_str()))
            )
        } else {
            "no scan says when it finished (`metadata.scanFinishedOn`, not in the future)"
                .to_owned()
        });
    };
    let age = now.saturating_sub(finished);
    let age_days = age / DAY;
    if age > u64::from(rule.max_age_days) * DAY {
        return fail(format!(
            "the newest scan is {age_days} days old (at most {} allowed)",
            rule.max_age_days
        ));
    }
    let Some(found) = findings(statement) else {
        return fail(
            "the scan's result is in no format the promoter reads (in-toto's list, Trivy or Grype JSON)"
                .to_owned(),
        );
    };
    let failing: Vec<&Finding> = found
        .iter()
        .filter(|f| f.severity >= rule.fail_on)
        .collect();
    let highest = found.iter().map(|f| f.severity).max();
    if let Some(worst) = failing.iter().map(|f| f.severity).max() {
        let mut ids: Vec<&str> = failing
            .iter()
            .filter(|f| f.severity == worst)
            .map(|f| f.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len().saturating_sub(MAX_IDS);
        ids.truncate(MAX_IDS);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return fail(format!(
            "{} finding(s) at or above {}; highest {}: {}{more}",
            failing.len(),
            rule.fail_on.as_str(),
            worst.as_str(),
            ids.join(", ")
        ));
    }
    let highest = match highest {
        Some(s) => format!("highest {}", s.as_str()),
        None => "no findings".to_owned(),
    };
    verdict(
        Rule::Vulnerabilities,
        rule.mode,
        true,
        format!(
            "scanned {age_days} day(s) ago, {} finding(s), {highest}; signed by `{key}`",
            found.len()
        ),
    )
}

/// When a scan finished, in seconds since the epoch.
fn scan_time(statement: &Statement) -> Option<u64> {
    let text = statement
        .predicate
        .pointer("/metadata/scanFinishedOn")
        .and_then(Value::as_str)?;
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// Every finding a scan statement lists; `None` when its result is in no format read here (a
/// scan that cannot be read must not pass as clean).
pub fn findings(statement: &Statement) -> Option<Vec<Finding>> {
    let result = statement.predicate.pointer("/scanner/result")?;
    let known =
        result.is_array() || result.get("Results").is_some() || result.get("matches").is_some();
    if !known {
        return None;
    }
    let mut out = Vec::new();
    // in-toto's vulns predicate: a list of {id, severity: [{method, score}]}.
    if let Some(items) = result.as_array() {
        for item in items {
            if let Some(id) = item.get("id").and_then(Value::as_str) {
                let severity = item
                    .get("severity")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.get("score"))
                    .filter_map(severity_of)
                    .max()
                    .unwrap_or(Severity::Unknown);
                out.push(finding(id, severity));
            }
        }
    }
    // Trivy's JSON report.
    for result in result
        .get("Results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for v in result
            .get("Vulnerabilities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = v.get("VulnerabilityID").and_then(Value::as_str) {
                out.push(finding(
                    id,
                    v.get("Severity")
                        .and_then(severity_of)
                        .unwrap_or(Severity::Unknown),
                ));
            }
        }
    }
    // Grype's JSON report.
    for m in result
        .get("matches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(v) = m.get("vulnerability") else {
            continue;
        };
        if let Some(id) = v.get("id").and_then(Value::as_str) {
            out.push(finding(
                id,
                v.get("severity")
                    .and_then(severity_of)
                    .unwrap_or(Severity::Unknown),
            ));
        }
    }
    Some(out)
}

fn finding(id: &str, severity: Severity) -> Finding {
    Finding {
        id: id.to_owned(),
        severity,
    }
}

/// A severity written as a word, a CVSS score, or a score in a string.
fn severity_of(value: &Value) -> Option<Severity> {
    match value {
        Value::Number(n) => n.as_f64().map(Severity::from_cvss),
        Value::String(s) => {
            Severity::from_word(s).or_else(|| s.trim().parse::<f64>().ok().map(Severity::from_cvss))
        }
        _ => None,
    }
}
