//! Reading policy files: a complete policy, and each mistake reported where it is.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::manifest::Diagnostic;
use crate::manifest::yaml;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiW34gPIrS21iT/JMlk+QO6qolagZ
    1QlbApMud+3UZ/NzwDTMDvEsrkLEUKIvOTZ8sKfTV6diWojidtUGFtVhZw==
    -----END PUBLIC KEY-----";

fn read(text: &str) -> (Option<Policy>, Vec<String>) {
    let document = yaml::parse(text).expect("YAML");
    let root = document.root.expect("a document");
    let mut out: Vec<Diagnostic> = Vec::new();
    let policy = decode(
        &root,
        &mut FileDiagnostics::new(Arc::from(Path::new("policy.yaml")), &mut out),
    );
    let messages = out
        .iter()
        .map(|d| format!("{}:{}: {}", d.pos.line, d.pos.col, d.message))
        .collect();
    (policy, messages)
}

fn with_key(rest: &str) -> String {
    format!("keys:\n  ci: |\n    {KEY}\n{rest}")
}

#[test]
fn a_complete_policy_is_read() {
    let text = with_key(
        "signature:\n  mode: require\n  keys: [ci]\nprovenance:\n  mode: warn\n  keys: [ci]\n  builders: [https://builder.example/v1]\n  sourceRepositories: [https://github.com/example/app]\nvulnerabilities:\n  mode: require\n  keys: [ci]\n  maxAgeDays: 7\n  failOn: High\n",
    );
    let (policy, messages) = read(&text);
    assert_eq!(messages, Vec::<String>::new());
    let policy = policy.expect("a policy");
    let signature = policy.signature.as_ref().expect("signature");
    assert_eq!(signature.mode, Mode::Require);
    assert_eq!(signature.keys[0].name, "ci");
    assert_eq!(signature.keys[0].spki_der().len(), 91, "a P-256 SPKI");
    let provenance = policy.provenance.as_ref().expect("provenance");
    assert_eq!(provenance.builders, ["https://builder.example/v1"]);
    assert_eq!(
        provenance.source_repositories,
        ["https://github.com/example/app"]
    );
    let vulnerabilities = policy.vulnerabilities.as_ref().expect("vulnerabilities");
    assert_eq!(
        (vulnerabilities.max_age_days, vulnerabilities.fail_on),
        (7, Severity::High)
    );
    assert!(!policy.is_off());
    let round = serde_json::from_str::<Policy>(&serde_json::to_string(&policy).expect("json"));
    assert_eq!(round.ok(), Some(policy));
}

#[test]
fn every_mistake_is_reported_at_its_place() {
    let text = with_key(
        "signature:\n  mode: always\n  keys: [ci, nobody]\nprovenance:\n  mode: warn\n  keys: [ci]\n  builders: []\nvulnerabilities:\n  mode: require\n  keys: [ci]\n  maxAgeDays: 0\n  failOn: unknown\n  extra: 1\n",
    );
    let (policy, messages) = read(&text);
    assert!(policy.is_none());
    assert_eq!(
        messages,
        [
            "8:9: `mode` is `off`, `warn` or `require`, found the text \"always\"",
            "9:14: no key `nobody` under the policy's `keys`",
            "13:13: `builders` is empty: nothing would pass",
            "19:3: unknown field `extra` in the `vulnerabilities` rule; expected `mode`, `keys`, `maxAgeDays` or `failOn`",
            "17:15: `maxAgeDays` is a whole number of days from 1, found the number 0",
            "18:11: `failOn` is `low`, `medium`, `high` or `critical`, found the text \"unknown\"",
        ]
    );
}

#[test]
fn a_key_that_is_not_p256_pem_is_refused() {
    let (policy, messages) = read(
        "keys:\n  ci: not a key\n  rsa: |\n    -----BEGIN PUBLIC KEY-----\n    AAAA\n    -----END PUBLIC KEY-----\nsignature:\n  mode: warn\n  keys: [ci]\n",
    );
    assert!(policy.is_none());
    assert_eq!(
        messages,
        [
            "2:7: key `ci`: expected one PEM block from `-----BEGIN PUBLIC KEY-----` to `-----END PUBLIC KEY-----`",
            "4:5: key `rsa`: not an ECDSA P-256 public key (cosign's key type)",
            "9:10: no key `ci` under the policy's `keys`",
        ]
    );
}

#[test]
fn source_repositories_name_no_ref() {
    let text = with_key(
        "provenance:\n  mode: require\n  keys: [ci]\n  builders: [b]\n  sourceRepositories: [\"https://github.com/o/r@refs/heads/main\"]\n",
    );
    let (policy, messages) = read(&text);
    assert!(policy.is_none());
    assert_eq!(
        messages,
        [
            "11:24: `https://github.com/o/r@refs/heads/main`: name the repository without a ref (`@…`): refs are not compared"
        ]
    );
}

#[test]
fn rules_need_a_mode_and_keys() {
    let (policy, messages) = read("signature:\n  keys: []\nprovenance: yes\n");
    assert!(policy.is_none());
    assert_eq!(
        messages,
        [
            "2:3: the rule has no `mode` (off, warn or require)",
            "2:9: `keys` names no key",
            "3:13: `provenance` is a mapping with a `mode` and its settings, found the text \"yes\"",
        ]
    );
}

#[test]
fn severities_order_and_read_words_and_scores() {
    assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
    assert_eq!(Severity::from_word("MODERATE"), Some(Severity::Medium));
    assert_eq!(Severity::from_word("bad"), None);
    assert_eq!(Severity::from_cvss(9.8), Severity::Critical);
    assert_eq!(Severity::from_cvss(7.0), Severity::High);
    assert_eq!(Severity::from_cvss(3.9), Severity::Low);
    assert_eq!(Severity::from_cvss(0.0), Severity::Unknown);
}
