//! Per-project promotion policy: what a project's staging images must carry before they are
//! published (signatures by given keys, SLSA build provenance, a recent vulnerability scan).
//!
//! A policy is a file the Kubernetes promoter does not read, so one manifest repository can be
//! served by both tools during a migration: `manifests/<project>/policy.yaml` beside the
//! project's `promoter-manifest.yaml` (owned by the same owners), or, for a plain manifest, the
//! file its `policy:` field names (relative to the manifest). Every rule has a `mode`: `off`,
//! `warn` (checked and reported, never blocking) or `require` (a digest failing it is not
//! promoted).
//!
//! ```yaml
//! keys:                      # public keys (PEM, ECDSA P-256, as cosign makes them), by name
//!   release-ci: |
//!     -----BEGIN PUBLIC KEY-----
//!     …
//!     -----END PUBLIC KEY-----
//! signature:                 # a cosign signature (legacy `.sig` or a sigstore bundle)
//!   mode: require
//!   keys: [release-ci]       # by any of these keys
//! provenance:                # SLSA provenance (v0.2 or v1) in a signed in-toto statement
//!   mode: require
//!   keys: [release-ci]
//!   builders: [https://github.com/example/builder@v1]   # builder.id must be one of these
//!   sourceRepositories: [https://github.com/example/app] # optional: the source must match
//! vulnerabilities:           # a cosign `vuln/v1` or in-toto `vulns` attestation
//!   mode: warn
//!   keys: [scanner]
//!   maxAgeDays: 7            # the scan finished at most this many days ago
//!   failOn: critical         # no finding at or above: low, medium, high or critical
//! ```
//!
//! Here the file is only read and checked (every problem reported at `FILE:LINE:COL`); the
//! rules are applied to staging digests by `crate::policy` (a higher layer: it reads
//! registries).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::diagnostic::FileDiagnostics;
use super::fields::{Fields, Shape, list, scalar_text, text};
use super::yaml::{Node, ScalarKind, Value, scalar_kind};

/// File name of a thin manifest's policy, beside `promoter-manifest.yaml`.
pub const POLICY_FILE: &str = "policy.yaml";

/// A project's policy, as read from its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy file (for messages).
    pub file: String,
    /// Staging signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRule>,
    /// SLSA build provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceRule>,
    /// A vulnerability scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<VulnerabilityRule>,
}

impl Policy {
    /// True when a rule is `require`.
    pub fn requires_any(&self) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|r| r.mode == Mode::Require)
            || self
                .provenance
                .as_ref()
                .is_some_and(|r| r.mode == Mode::Require)
            || self
                .vulnerabilities
                .as_ref()
                .is_some_and(|r| r.mode == Mode::Require)
    }

    /// True when no rule is checked (every rule absent or `off`).
    pub fn is_off(&self) -> bool {
        self.signature.as_ref().is_none_or(|r| r.mode == Mode::Off)
            && self.provenance.as_ref().is_none_or(|r| r.mode == Mode::Off)
            && self
                .vulnerabilities
                .as_ref()
                .is_none_or(|r| r.mode == Mode::Off)
    }
}

/// What a rule's failure does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not checked.
    Off,
    /// Checked and reported; never blocks.
    Warn,
    /// A digest failing it is not promoted.
    Require,
}

impl Mode {
    /// The mode as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Require => "require",
        }
    }
}

/// A named public key (ECDSA P-256).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Its name in the policy.
    pub name: String,
    /// Its SubjectPublicKeyInfo DER, base64.
    pub spki: String,
}

impl PublicKey {
    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        // Checked when the policy was read; a record edited since decodes to nothing, and
        // nothing verifies under an empty key.
        STANDARD.decode(&self.spki).unwrap_or_default()
    }
}

/// Staging signatures: a valid signature by any of `keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRule {
    /// What a failure does.
    pub mode: Mode,
    /// The keys, any of which may have signed.
    pub keys: Vec<PublicKey>,
}

/// SLSA build provenance: an in-toto statement signed by any of `keys`, whose builder is one of
/// `builders` and (when given) whose source is one of `source_repositories`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceRule {
    /// What a failure does.
    pub mode: Mode,
    /// The keys, any of which may have signed.
    pub keys: Vec<PublicKey>,
    /// Allowed `builder.id`s (exact).
    pub builders: Vec<String>,
    /// Allowed source repositories (compared without `git+`, `.git` and `@ref`); empty: any.
    #[serde(default)]
    pub source_repositories: Vec<String>,
}

/// A vulnerability scan: a signed attestation at most `max_age_days` old, with no finding at or
/// above `fail_on`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnerabilityRule {
    /// What a failure does.
    pub mode: Mode,
    /// The keys, any of which may have signed.
    pub keys: Vec<PublicKey>,
    /// Oldest scan accepted, in days.
    pub max_age_days: u32,
    /// The lowest severity that fails.
    pub fail_on: Severity,
}

/// A finding's severity, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Unknown, negligible or none.
    Unknown,
    /// Low.
    Low,
    /// Medium (moderate).
    Medium,
    /// High (important).
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The severity a scanner's word names (`LOW`, `Moderate`, `critical`…), if any.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "unknown" | "negligible" | "none" | "info" | "informational" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    /// The CVSS v3 rating of a base score (0.1–3.9 low, 4–6.9 medium, 7–8.9 high, 9– critical).
    pub fn from_cvss(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// The severity as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A policy's rule, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// [`SignatureRule`].
    Signature,
    /// [`ProvenanceRule`].
    Provenance,
    /// [`VulnerabilityRule`].
    Vulnerabilities,
}

impl Rule {
    /// The rule's name in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Signature => "signature",
            Rule::Provenance => "provenance",
            Rule::Vulnerabilities => "vulnerabilities",
        }
    }
}

/// What checking one rule against one staging digest found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The rule.
    pub rule: Rule,
    /// Its mode.
    pub mode: Mode,
    /// True when the digest passes the rule.
    pub passed: bool,
    /// What was found, or why it fails (e.g. the highest severity and its CVE ids).
    pub detail: String,
}

impl Verdict {
    /// `pass`, `warn` (failed a `warn` rule) or `fail` (failed a `require` rule).
    pub fn status(&self) -> &'static str {
        match (self.passed, self.mode) {
            (true, _) | (false, Mode::Off) => "pass",
            (false, Mode::Warn) => "warn",
            (false, Mode::Require) => "fail",
        }
    }
}

/// Every rule of a policy checked against one staging digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The policy file.
    pub policy: String,
    /// One verdict per rule that is not `off`.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// True when a `require` rule failed: the digest must not be promoted.
    pub fn refuses(&self) -> bool {
        self.verdicts.iter().any(|v| v.status() == "fail")
    }

    /// The `warn` rules that failed.
    pub fn warnings(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.status() == "warn")
    }

    /// The verdict of `rule`, if it was checked: the worst (fail, then warn, then pass) when
    /// several policies checked it.
    pub fn verdict(&self, rule: Rule) -> Option<&Verdict> {
        let rank = |v: &&Verdict| match v.status() {
            "fail" => 2,
            "warn" => 1,
            _ => 0,
        };
        self.verdicts
            .iter()
            .filter(|v| v.rule == rule)
            .max_by_key(rank)
    }

    /// One line: each failed rule and why, or that every rule passed.
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("{} ({}): {}", v.rule.as_str(), v.mode.as_str(), v.detail))
            .collect();
        if failed.is_empty() {
            format!("every rule of {} passed", self.policy)
        } else {
            format!("{}: {}", self.policy, failed.join("; "))
        }
    }
}

const POLICY: Shape = Shape {
    what: "a policy",
    fields: &["keys", "signature", "provenance", "vulnerabilities"],
    deprecated: &[],
    refused: &[],
};
const SIGNATURE: Shape = Shape {
    what: "the `signature` rule",
    fields: &["mode", "keys"],
    deprecated: &[],
    refused: &[],
};
const PROVENANCE: Shape = Shape {
    what: "the `provenance` rule",
    fields: &["mode", "keys", "builders", "sourceRepositories"],
    deprecated: &[],
    refused: &[],
};
const VULNERABILITIES: Shape = Shape {
    what: "the `vulnerabilities` rule",
    fields: &["mode", "keys", "maxAgeDays", "failOn"],
    deprecated: &[],
    refused: &[],
};

/// Decodes a policy file's root; `None` when it has errors (all reported).
pub fn decode(root: &Node, d: &mut FileDiagnostics<'_>) -> Option<Policy> {
    let errors_before = d.errors();
    let Some(fields) = Fields::read(root, &POLICY, d) else {
        d.error(
            root.pos,
            format!(
                "a policy is a mapping with `keys` and rules (`signature`, `provenance`, `vulnerabilities`), but this file holds {}",
                root.value.describe()
            ),
        );
        return None;
    };
    let keys = fields
        .get("keys")
        .map(|n| key_map(n, d))
        .unwrap_or_default();
    let file = d.file().display().to_string();
    let signature = fields.get("signature").and_then(|node| {
        let rule =
            Fields::read(node, &SIGNATURE, d).or_else(|| not_a_rule(node, "signature", d))?;
        let (mode, keys) = (mode(&rule, d), rule_keys(&rule, &keys, d));
        Some(SignatureRule {
            mode: mode?,
            keys: keys?,
        })
    });
    let provenance = fields.get("provenance").and_then(|node| {
        let rule =
            Fields::read(node, &PROVENANCE, d).or_else(|| not_a_rule(node, "provenance", d))?;
        let (mode, keys) = (mode(&rule, d), rule_keys(&rule, &keys, d));
        let builders = texts(&rule, "builders", true, d);
        let sources = texts(&rule, "sourceRepositories", false, d)
            .and_then(|sources| without_refs(&rule, sources, d));
        Some(ProvenanceRule {
            mode: mode?,
            keys: keys?,
            builders: builders?,
            source_repositories: sources?,
        })
    });
    let vulnerabilities = fields.get("vulnerabilities").and_then(|node| {
        let rule = Fields::read(node, &VULNERABILITIES, d)
            .or_else(|| not_a_rule(node, "vulnerabilities", d))?;
        let (mode, keys) = (mode(&rule, d), rule_keys(&rule, &keys, d));
        let max_age_days = max_age(&rule, d);
        let fail_on = fail_on(&rule, d);
        Some(VulnerabilityRule {
            mode: mode?,
            keys: keys?,
            max_age_days: max_age_days?,
            fail_on: fail_on?,
        })
    });
    (d.errors() == errors_before).then_some(Policy {
        file,
        signature,
        provenance,
        vulnerabilities,
    })
}

/// Reports a rule that is not a mapping.
fn not_a_rule<T>(node: &Node, name: &str, d: &mut FileDiagnostics<'_>) -> Option<T> {
    d.error(
        node.pos,
        format!(
            "`{name}` is a mapping with a `mode` and its settings, found {}",
            node.value.describe()
        ),
    );
    None
}

/// The `keys:` mapping: name → key.
fn key_map(node: &Node, d: &mut FileDiagnostics<'_>) -> Vec<(String, PublicKey)> {
    let Value::Map(entries) = &node.value else {
        d.error(
            node.pos,
            format!(
                "`keys` maps names to PEM public keys, found {}",
                node.value.describe()
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<(String, PublicKey)> = Vec::new();
    for (name, value) in entries {
        let Some(name) = scalar_text(name).filter(|n| !n.is_empty()) else {
            d.error(name.pos, "a key's name must be non-empty text");
            continue;
        };
        if out.iter().any(|(n, _)| n == name) {
            d.error(value.pos, format!("key `{name}` is defined twice"));
            continue;
        }
        let Some(pem) = text(value, &format!("keys.{name}"), d) else {
            continue;
        };
        match spki_of_pem(pem) {
            Ok(spki) => out.push((
                name.to_owned(),
                PublicKey {
                    name: name.to_owned(),
                    spki,
                },
            )),
            Err(why) => d.error(value.pos, format!("key `{name}`: {why}")),
        }
    }
    out
}

/// The base64 DER of the ECDSA P-256 public key in `pem`, or why it is not one.
fn spki_of_pem(pem: &str) -> Result<String, String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let body = pem
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|rest| rest.trim_end().strip_suffix(END))
        .ok_or_else(|| format!("expected one PEM block from `{BEGIN}` to `{END}`"))?;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(&compact)
        .map_err(|_| "the PEM block is not base64".to_owned())?;
    ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &der)
        .map_err(|_| "not an ECDSA P-256 public key (cosign's key type)".to_owned())?;
    Ok(compact)
}

/// A rule's `mode`.
fn mode(rule: &Fields<'_>, d: &mut FileDiagnostics<'_>) -> Option<Mode> {
    let Some(node) = rule.get("mode") else {
        d.error(rule.pos, "the rule has no `mode` (off, warn or require)");
        return None;
    };
    match scalar_text(node) {
        Some("off") => Some(Mode::Off),
        Some("warn") => Some(Mode::Warn),
        Some("require") => Some(Mode::Require),
        _ => {
            d.error(
                node.pos,
                format!(
                    "`mode` is `off`, `warn` or `require`, found {}",
                    node.value.describe()
                ),
            );
            None
        }
    }
}

/// A rule's `keys`: names of keys defined under the policy's `keys`.
fn rule_keys(
    rule: &Fields<'_>,
    defined: &[(String, PublicKey)],
    d: &mut FileDiagnostics<'_>,
) -> Option<Vec<PublicKey>> {
    let Some(node) = rule.get("keys") else {
        d.error(
            rule.pos,
            "the rule has no `keys` (names of the policy's keys)",
        );
        return None;
    };
    let names = list(node, "`keys` is a list of key names", d)?;
    if names.is_empty() {
        d.error(node.pos, "`keys` names no key");
        return None;
    }
    let mut keys = Vec::new();
    let mut ok = true;
    for name in names {
        let Some(wanted) = text(name, "a key name", d) else {
            ok = false;
            continue;
        };
        match defined.iter().find(|(n, _)| n == wanted) {
            Some((_, key)) => keys.push(key.clone()),
            None => {
                d.error(
                    name.pos,
                    format!("no key `{wanted}` under the policy's `keys`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(keys)
}

/// A list of non-empty texts; absent is an error when `required`, else empty.
fn texts(
    rule: &Fields<'_>,
    field: &str,
    required: bool,
    d: &mut FileDiagnostics<'_>,
) -> Option<Vec<String>> {
    let Some(node) = rule.get(field) else {
        if required {
            d.error(rule.pos, format!("the rule has no `{field}`"));
            return None;
        }
        return Some(Vec::new());
    };
    let items = list(node, &format!("`{field}` is a list of texts"), d)?;
    if required && items.is_empty() {
        d.error(node.pos, format!("`{field}` is empty: nothing would pass"));
        return None;
    }
    let mut out = Vec::new();
    for item in items {
        match text(item, field, d) {
            Some(t) if !t.is_empty() => out.push(t.to_owned()),
            Some(_) => d.error(item.pos, format!("an entry of `{field}` is empty")),
            None => {}
        }
    }
    (out.len() == items.len()).then_some(out)
}

/// `sourceRepositories` name repositories, not refs: an `@ref` would look like pinning a branch
/// while the comparison ignores refs.
fn without_refs(
    rule: &Fields<'_>,
    sources: Vec<String>,
    d: &mut FileDiagnostics<'_>,
) -> Option<Vec<String>> {
    let items = rule
        .get("sourceRepositories")
        .map_or(&[][..], |n| match &n.value {
            Value::Seq(items) => items.as_slice(),
            _ => &[],
        });
    let mut ok = true;
    for (source, item) in sources.iter().zip(items) {
        let path = source
            .split_once("://")
            .map_or(source.as_str(), |(_, rest)| rest);
        if path.contains('@') {
            d.error(
                item.pos,
                format!(
                    "`{source}`: name the repository without a ref (`@…`): refs are not compared"
                ),
            );
            ok = false;
        }
    }
    ok.then_some(sources)
}

/// `maxAgeDays`: a whole number of days from 1.
fn max_age(rule: &Fields<'_>, d: &mut FileDiagnostics<'_>) -> Option<u32> {
    let Some(node) = rule.get("maxAgeDays") else {
        d.error(rule.pos, "the rule has no `maxAgeDays`");
        return None;
    };
    let parsed = match &node.value {
        Value::Scalar { text, plain } if scalar_kind(text, *plain) == ScalarKind::Number => {
            text.parse::<u32>().ok().filter(|n| *n > 0)
        }
        _ => None,
    };
    if parsed.is_none() {
        d.error(
            node.pos,
            format!(
                "`maxAgeDays` is a whole number of days from 1, found {}",
                node.value.describe()
            ),
        );
    }
    parsed
}

/// `failOn`: a severity from `low` up.
fn fail_on(rule: &Fields<'_>, d: &mut FileDiagnostics<'_>) -> Option<Severity> {
    let Some(node) = rule.get("failOn") else {
        d.error(
            rule.pos,
            "the rule has no `failOn` (low, medium, high or critical)",
        );
        return None;
    };
    let severity = scalar_text(node)
        .and_then(Severity::from_word)
        .filter(|s| *s > Severity::Unknown);
    if severity.is_none() {
        d.error(
            node.pos,
            format!(
                "`failOn` is `low`, `medium`, `high` or `critical`, found {}",
                node.value.describe()
            ),
        );
    }
    severity
}

#[cfg(test)]
mod tests;
