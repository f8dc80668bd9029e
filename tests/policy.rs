//! Per-project policy against a real registry (CNCF distribution 2.8): signatures and
//! attestations made by an independent maker (`tests/support/make_attestation.py`: Python's
//! `cryptography`, over DSSE and cosign's simple-signing payload, not the promoter's signing
//! code), attached to staging digests as sigstore bundle referrers (cosign 3) and as cosign 2's
//! `.sig` and `.att` images; one unit passing, one warned (promoted, the warning kept), one
//! refused (nothing of it written); the presubmit's Markdown; the recorded run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use promoter::copy::{CopyError, CopyOptions, Engine};
use promoter::manifest;
use promoter::manifest::policy::Rule;
use promoter::plan::{self, Checked, render};
use promoter::reference::{CosignArtifact, Digest, Repository};
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig, Manifest, media_type};
use promoter::sign::attest::{SIGNATURE_PREDICATE, rfc3339};
use promoter::sign::bundle::BUNDLE_MEDIA_TYPE;
use promoter::sign::referrer::{self, BundleReferrer, EmptyConfigs, Subject};
use promoter::state::StateStore;
use promoter::state::records::{Trigger, TriggerKind, UnitStatus};
use promoter::steps::promote::{self, RunOptions};
use promoter_tests::harness::image::{ManifestFormat, push_single};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::server::VENV;
use serde_json::{Value, json};

const BUILDER: &str =
    "https://github.com/example/builder/.github/workflows/release.yml@refs/tags/v1";
const SOURCE: &str = "https://github.com/example/app";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const VULNS: &str = "https://in-toto.io/attestation/vulns/v0.1";

/// Runs the independent attestation maker; its standard output.
fn maker(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/make_attestation.py");
    let output = Command::new(Path::new(VENV).join("bin/python"))
        .arg(script)
        .args(args)
        .output()
        .expect("run the Python attestation maker (infra/local/test.sh installs its venv)");
    assert!(
        output.status.success(),
        "maker: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// A DSSE envelope of an in-toto v1 statement about `digest`, signed by `key` (a PEM file).
fn envelope(
    dir: &Path,
    key: &Path,
    digest: &str,
    predicate_type: &str,
    predicate: &Value,
) -> Bytes {
    envelope_of(
        dir,
        key,
        digest,
        predicate_type,
        predicate,
        "https://in-toto.io/Statement/v1",
    )
}

/// The same with an in-toto v0.1 statement, as `cosign attest` writes them.
fn cosign2_envelope(
    dir: &Path,
    key: &Path,
    digest: &str,
    predicate_type: &str,
    predicate: &Value,
) -> Bytes {
    envelope_of(
        dir,
        key,
        digest,
        predicate_type,
        predicate,
        "https://in-toto.io/Statement/v0.1",
    )
}

fn envelope_of(
    dir: &Path,
    key: &Path,
    digest: &str,
    predicate_type: &str,
    predicate: &Value,
    statement_type: &str,
) -> Bytes {
    let file = dir.join(format!(
        "predicate-{}.json",
        Digest::of(predicate.to_string().as_bytes()).hex()
    ));
    std::fs::write(&file, predicate.to_string()).expect("write the predicate");
    let text = maker(&[
        "sign",
        key.to_str().expect("path"),
        digest,
        predicate_type,
        file.to_str().expect("path"),
        statement_type,
    ]);
    Bytes::from(text.trim().to_owned())
}

fn provenance(builder: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/tags/v1", "repository": SOURCE, "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": [{"uri": format!("git+{SOURCE}@refs/tags/v1"), "digest": {"gitCommit": "0123abcd"}}]
        },
        "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "run-1"}}
    })
}

fn scan(findings: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let finished = now - 25 * 3600;
    json!({
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.0", "version": "0.58.0", "result": findings},
        "metadata": {"scanStartedOn": rfc3339(finished - 60), "scanFinishedOn": rfc3339(finished)}
    })
}

fn finding(id: &str, score: &str) -> Value {
    json!({"id": id, "severity": [{"method": "nvd", "score": score}]})
}

/// Attaches each envelope as a sigstore bundle referrer (cosign 3's layout, through the
/// referrers fallback tag: distribution 2.8 has no referrers API).
async fn attach_as_bundles(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    envelopes: &[(&str, Bytes)],
) {
    let subject = client
        .manifest_get(repository, digest)
        .await
        .expect("read the subject")
        .expect("the subject exists");
    let referrers: Vec<BundleReferrer> = envelopes
        .iter()
        .map(|(predicate_type, envelope)| {
            let envelope: Value = serde_json::from_slice(envelope).expect("an envelope");
            let bundle = json!({
                "mediaType": BUNDLE_MEDIA_TYPE,
                "verificationMaterial": {"publicKey": {"hint": "python-maker"}},
                "dsseEnvelope": envelope,
            });
            BundleReferrer::new(
                Bytes::from(bundle.to_string()),
                predicate_type,
                &Subject::of(&subject),
                "2026-12-05T00:00:00Z",
            )
        })
        .collect();
    let refs: Vec<&BundleReferrer> = referrers.iter().collect();
    referrer::push(
        client,
        repository,
        digest,
        &refs,
        false,
        &EmptyConfigs::default(),
    )
    .await
    .expect("attach the bundles");
}

/// Signs `digest` as cosign 2 does (the maker signs): a `sha256-<hex>.sig` image whose layer is
/// the simple-signing payload, its signature in the layer's annotation.
async fn attach_legacy_signature(
    client: &Client,
    key: &Path,
    repository: &Repository,
    digest: &Digest,
) {
    let signed: Value = serde_json::from_str(&maker(&[
        "sign-image",
        key.to_str().expect("path"),
        repository.as_str(),
        digest.as_str(),
    ]))
    .expect("the maker prints JSON");
    let payload = Bytes::from(signed["payload"].as_str().expect("payload").to_owned());
    let layer = (
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload,
        json!({"dev.cosignproject.cosign/signature": signed["signature"]}),
    );
    attach_cosign_image(
        client,
        repository,
        digest,
        CosignArtifact::Signature,
        &[layer],
    )
    .await;
}

/// Pushes an image of `layers` (media type, bytes, annotations) under `digest`'s cosign tag of
/// `artifact` (`sha256-<hex>.sig`, `.att`), as cosign 2 does.
async fn attach_cosign_image(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    artifact: CosignArtifact,
    layers: &[(&str, Bytes, Value)],
) {
    let config = Bytes::from_static(b"{}");
    for blob in std::iter::once(&config).chain(layers.iter().map(|(_, bytes, _)| bytes)) {
        client
            .upload_bytes(repository, &Digest::of(blob), blob.clone())
            .await
            .expect("blob");
    }
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(media_type, bytes, annotations)| {
            json!({
                "mediaType": media_type,
                "digest": Digest::of(bytes),
                "size": bytes.len(),
                "annotations": annotations,
            })
        })
        .collect();
    let bytes = Bytes::from(
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config), "size": config.len()},
            "layers": descriptors,
        })
        .to_string(),
    );
    let manifest = Manifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        digest: Digest::of(&bytes),
        bytes,
    };
    client
        .manifest_put(repository, &digest.cosign_tag(artifact), &manifest)
        .await
        .expect("attach the cosign image");
}

/// Attaches the envelopes as cosign 2 does: one `sha256-<hex>.att` image, a layer each.
async fn attach_as_att_image(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    envelopes: &[(&str, Bytes)],
) {
    let layers: Vec<(&str, Bytes, Value)> = envelopes
        .iter()
        .map(|(predicate_type, envelope)| {
            (
                "application/vnd.dsse.envelope.v1+json",
                envelope.clone(),
                json!({"predicateType": predicate_type}),
            )
        })
        .collect();
    attach_cosign_image(
        client,
        repository,
        digest,
        CosignArtifact::Attestation,
        &layers,
    )
    .await;
}

/// A thin-manifest tree promoting the three images from `staging` to `production`, with the
/// policy (provenance required, vulnerabilities warned) trusting `public_key`.
fn manifests(
    dir: &Path,
    staging: &str,
    production: &str,
    digests: &[(&str, &str)],
    public_key: &str,
) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("manifests/app")).expect("mkdir");
    std::fs::create_dir_all(tree.join("images/app")).expect("mkdir");
    std::fs::write(
        tree.join("manifests/app/promoter-manifest.yaml"),
        format!("registries:\n- name: {staging}/staging\n  src: true\n- name: {production}/prod\n"),
    )
    .expect("write");
    let images: String = digests
        .iter()
        .map(|(name, digest)| format!("- name: {name}\n  dmap:\n    \"{digest}\": [\"v1\"]\n"))
        .collect();
    std::fs::write(tree.join("images/app/images.yaml"), images).expect("write");
    let key: String = public_key.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        tree.join("manifests/app/policy.yaml"),
        format!(
            "keys:\n  release-ci: |\n{key}signature:\n  mode: require\n  keys: [release-ci]\nprovenance:\n  mode: require\n  keys: [release-ci]\n  builders: [\"{BUILDER}\"]\n  sourceRepositories: [\"{SOURCE}\"]\nvulnerabilities:\n  mode: warn\n  keys: [release-ci]\n  maxAgeDays: 7\n  failOn: high\n"
        ),
    )
    .expect("write");
    tree
}

const PRESUBMIT: &str = "### Promotion plan

**3 digests** to promote from 1 project: 3 copies into 3 repositories, 3 tags to set.

#### `app` → 1 destination

| image | digest | tags | change | destinations |
|---|---|---|---|---|
| `pass` | `PASS` | v1 | new | 1 |
| `warn` | `WARN` | v1 | new | 1 |
| `refuse` | `REFUSE` | v1 | new | 1 |

**Policy** (`POLICY`): 3 digests checked, 1 refused.

| image | digest | signature | provenance | vulnerabilities |
|---|---|---|---|---|
| `pass` | `PASS` | ✅ pass: signed by `release-ci` (bundle) | ✅ pass: built by `BUILDER` from `https://github.com/example/app`, signed by `release-ci` | ✅ pass: scanned 1 day(s) ago, 1 finding(s), highest medium; signed by `release-ci` |
| `warn` | `WARN` | ✅ pass: signed by `release-ci` (legacy) | ✅ pass: built by `BUILDER` from `https://github.com/example/app`, signed by `release-ci` | ⚠️ warn: 2 finding(s) at or above high; highest critical: CVE-2026-0002 |
| `refuse` | `REFUSE` | ❌ fail: no signature by `release-ci` | ❌ fail: builder `https://evil.example/builder` is not allowed | ✅ pass: scanned 1 day(s) ago, 0 finding(s), no findings; signed by `release-ci` |

❌ **A digest fails a `require` rule of its project's policy: it will not be promoted.**
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_passes_warns_and_refuses_units_and_shows_on_the_pull_request() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    maker(&["keygen", dir.path().join("ci").to_str().expect("path")]);
    let key = dir.path().join("ci.key");
    let public_key = std::fs::read_to_string(dir.path().join("ci.pub")).expect("public key");
    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );

    let mut digests = Vec::new();
    for name in ["pass", "warn", "refuse"] {
        let pushed = push_single(
            &staging,
            &format!("staging/{name}"),
            ManifestFormat::Oci,
            &format!("policy-{name}"),
            Some("v1"),
        );
        digests.push((name, pushed.digest));
    }
    let staged =
        |name: &str| promoter_tests::repository(&format!("{}/staging/{name}", staging.host()));
    let good = provenance(BUILDER);
    // pass: provenance and a clean-enough scan, as bundles (cosign 3).
    let d = &digests[0].1;
    let envelopes = [
        (
            SIGNATURE_PREDICATE,
            envelope(dir.path(), &key, d, SIGNATURE_PREDICATE, &json!({})),
        ),
        (SLSA_V1, envelope(dir.path(), &key, d, SLSA_V1, &good)),
        (
            VULNS,
            envelope(
                dir.path(),
                &key,
                d,
                VULNS,
                &scan(json!([finding("CVE-2026-0001", "5.3")])),
            ),
        ),
    ];
    attach_as_bundles(
        &client,
        &staged("pass"),
        &d.parse().expect("digest"),
        &envelopes,
    )
    .await;
    // warn: provenance, and a scan with a critical and a high finding, as cosign 2's .att image
    // (in-toto v0.1 statements, as `cosign attest` writes).
    let d = &digests[1].1;
    let findings = json!([
        finding("CVE-2026-0002", "9.8"),
        finding("CVE-2026-0003", "7.5")
    ]);
    let envelopes = [
        (
            SLSA_V1,
            cosign2_envelope(dir.path(), &key, d, SLSA_V1, &good),
        ),
        (
            VULNS,
            cosign2_envelope(dir.path(), &key, d, VULNS, &scan(findings)),
        ),
    ];
    attach_as_att_image(
        &client,
        &staged("warn"),
        &d.parse().expect("digest"),
        &envelopes,
    )
    .await;
    // ... and cosign 2's legacy signature.
    attach_legacy_signature(&client, &key, &staged("warn"), &d.parse().expect("digest")).await;
    // refuse: a clean scan, but provenance from a builder the policy does not allow.
    let d = &digests[2].1;
    let envelopes = [
        (
            SLSA_V1,
            envelope(
                dir.path(),
                &key,
                d,
                SLSA_V1,
                &provenance("https://evil.example/builder"),
            ),
        ),
        (
            VULNS,
            envelope(dir.path(), &key, d, VULNS, &scan(json!([]))),
        ),
    ];
    attach_as_bundles(
        &client,
        &staged("refuse"),
        &d.parse().expect("digest"),
        &envelopes,
    )
    .await;

    let names: Vec<(&str, &str)> = digests.iter().map(|(n, d)| (*n, d.as_str())).collect();
    let tree = manifests(
        dir.path(),
        &staging.host(),
        &production.host(),
        &names,
        &public_key,
    );
    let loaded = manifest::load(&[tree]).expect("load");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    let mut plan = plan::build(&loaded.manifests, None);

    // The presubmit: each new digest checked in staging, shown on the pull request.
    for unit in plan.units_to_check().cloned().collect::<Vec<_>>() {
        let before = client.counts.total.load(Ordering::Relaxed);
        let report =
            promoter::policy::check_all(&client, &unit.source, &unit.digest, &unit.policies)
                .await
                .expect("check")
                .expect("a policy is on");
        let requests = client.counts.total.load(Ordering::Relaxed) - before;
        eprintln!(
            "policy check of {}: {requests} registry requests",
            unit.source
        );
        // Each attachment read once for every rule and key: the referrers listing (API probe,
        // fallback tag), a manifest and a blob per bundle, the `.att` image (and its layers),
        // the `.sig` image (and its layers). `pass` has three bundles: 2 + 6 + 1 + 1.
        assert!(
            requests <= 10,
            "{requests} requests to check {}",
            unit.source
        );
        plan.checked.push(Checked {
            source: unit.source.clone(),
            digest: unit.digest.clone(),
            report,
        });
    }
    assert!(plan.policy_refuses());
    let mut markdown = Vec::new();
    render::render(&plan, render::Format::Markdown, &mut markdown).expect("render");
    let mut markdown = String::from_utf8(markdown).expect("UTF-8");
    let policy_file = plan.checked[0].report.policy.clone();
    markdown = markdown
        .replace(&policy_file, "POLICY")
        .replace(BUILDER, "BUILDER");
    for (name, digest) in &digests {
        let digest: Digest = digest.parse().expect("digest");
        markdown = markdown.replace(&digest.short().to_string(), &name.to_uppercase());
    }
    assert_eq!(markdown, PRESUBMIT);
    let mut json = Vec::new();
    render::render(&plan, render::Format::Json, &mut json).expect("render");
    let json: Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(json["policy"].as_array().map(Vec::len), Some(3));
    assert!(
        json["units"]
            .as_array()
            .expect("units")
            .iter()
            .all(|u| u.get("policies").is_none()),
        "the plan's JSON lists the checks' results, not the policies' content"
    );

    // The promotion: pass and warn copied (the warning kept), refuse refused before any write.
    let engine = Engine::new(Arc::clone(&client), CopyOptions::default());
    let reports = engine.promote(&plan.units).await;
    let by_name = |name: &str| {
        let source = staged(name);
        reports
            .iter()
            .find(|r| r.source == source)
            .expect("a report")
    };
    let prod =
        |name: &str| promoter_tests::repository(&format!("{}/prod/{name}", production.host()));
    let pass = by_name("pass");
    assert!(pass.succeeded(), "{:?}", pass.error);
    assert!(
        pass.policy
            .as_ref()
            .expect("checked")
            .verdicts
            .iter()
            .all(|v| v.passed)
    );
    let warn = by_name("warn");
    assert!(warn.succeeded(), "{:?}", warn.error);
    let warnings: Vec<_> = warn
        .policy
        .as_ref()
        .expect("checked")
        .warnings()
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule, Rule::Vulnerabilities);
    let refuse = by_name("refuse");
    match &refuse.error {
        Some(CopyError::Policy { summary, .. }) => assert!(
            summary.contains(
                "provenance (require): builder `https://evil.example/builder` is not allowed"
            ),
            "{summary}"
        ),
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    assert!(refuse.actions.is_empty(), "{:?}", refuse.actions);
    for (name, digest) in &digests {
        let digest: Digest = digest.parse().expect("digest");
        let held = client
            .manifest_head(&prod(name), &digest)
            .await
            .expect("HEAD")
            .is_some();
        assert_eq!(held, *name != "refuse", "{name} in production");
        let tagged = client
            .manifest_head(
                &prod(name),
                &"v1".parse::<promoter::reference::Tag>().expect("tag"),
            )
            .await
            .expect("HEAD")
            .is_some();
        assert_eq!(tagged, *name != "refuse", "{name}:v1 in production");
    }

    // A recorded run (what `promote` and copy-digest do): each unit's record keeps its policy
    // report, the refused one failed for good with the reason.
    let store = StateStore::open(&format!("file://{}", dir.path().join("state").display()))
        .await
        .expect("state");
    let trigger = Trigger {
        kind: TriggerKind::Cli,
        revision: "policy-test".to_owned(),
        repository: None,
        parent: None,
    };
    promote::record_run(&store, &plan.units, &plan, &trigger)
        .await
        .expect("record the run");
    let run = promote::run_id(&trigger);
    let options = RunOptions {
        trigger,
        lease_ttl: Duration::from_secs(30),
        units_in_parallel: 1,
        poll: Duration::from_millis(100),
    };
    for unit in &plan.units {
        promote::work_unit(&store, &engine, &run, unit, &options)
            .await
            .expect("work the unit");
    }
    let records = promote::list_unit_records(&store, &run)
        .await
        .expect("unit records")
        .records;
    let record = |name: &str| {
        let source = staged(name).to_string();
        records
            .iter()
            .find(|r| r.source == source)
            .expect("a record")
    };
    let (_, recorded) = promote::load_run(&store, &run)
        .await
        .expect("load the run")
        .expect("the run");
    assert!(
        recorded.iter().all(|u| u.policies.len() == 1),
        "the run's plan in state carries the policy (copy-digest reads it there)"
    );
    let warned = record("warn").policy.as_ref().expect("the policy report");
    assert_eq!(warned.warnings().count(), 1);
    assert_eq!(record("warn").status, UnitStatus::Done);
    let refused = record("refuse");
    assert_eq!(refused.status, UnitStatus::Failed);
    assert!(refused.policy.as_ref().is_some_and(|p| p.refuses()));
    let failure = refused.error.as_ref().expect("the failure");
    assert!(!failure.retryable);
    assert!(
        failure.message.starts_with("refused by policy: "),
        "{}",
        failure.message
    );
}

/// A folder of plain manifests: the one naming `app.policy.yaml` gets that policy, and the
/// policy file is not read as a manifest.
#[test]
fn a_plain_manifest_names_its_policy_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("app.yaml"),
        "registries:\n- name: staging.example/app\n  src: true\n- name: prod.example/app\nimages:\n- name: app\n  dmap:\n    \"sha256:93cf793ad44839594db937c0a59f4129d915285e503971dbdc81f70f2a9f4b1a\": [\"v1\"]\npolicy: app.policy.yaml\n",
    )
    .expect("write");
    let public_key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiW34gPIrS21iT/JMlk+QO6qolagZ\n1QlbApMud+3UZ/NzwDTMDvEsrkLEUKIvOTZ8sKfTV6diWojidtUGFtVhZw==\n-----END PUBLIC KEY-----\n";
    let key: String = public_key.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        dir.path().join("app.policy.yaml"),
        format!("keys:\n  ci: |\n{key}signature:\n  mode: warn\n  keys: [ci]\n"),
    )
    .expect("write");
    let loaded = manifest::load(&[dir.path().to_path_buf()]).expect("load");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.manifests.len(), 1);
    let policy = loaded.manifests[0].policy.as_ref().expect("the policy");
    assert!(policy.file.ends_with("app.policy.yaml"), "{}", policy.file);
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(
        plan.units[0].policies.len(),
        1,
        "the unit carries the policy"
    );
    let revision = promote::plan_revision(&plan);

    // Another project promoting the same staging digest under a policy of its own: the shared
    // unit carries both (one project cannot lower the other's bar), and the local run's
    // revision changes with the policies.
    let other = std::fs::read_to_string(dir.path().join("app.yaml"))
        .expect("read")
        .replace("prod.example/app", "mirror.example/app")
        .replace("app.policy.yaml", "other.policy.yaml");
    std::fs::write(dir.path().join("other.yaml"), other).expect("write");
    std::fs::write(
        dir.path().join("other.policy.yaml"),
        format!("keys:\n  ci: |\n{key}signature:\n  mode: require\n  keys: [ci]\n"),
    )
    .expect("write");
    let loaded = manifest::load(&[dir.path().to_path_buf()]).expect("load");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units.len(), 1);
    assert_eq!(plan.units[0].policies.len(), 2, "both projects' policies");
    assert!(plan.units[0].policies.iter().any(|p| p.requires_any()));
    assert_ne!(promote::plan_revision(&plan), revision);
}

/// A plain manifest's `policy` may not lead out of its folder, nor name a file the folder's
/// walk would read as a manifest.
#[test]
fn a_plain_manifest_policy_outside_its_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("manifests");
    std::fs::create_dir(&tree).expect("mkdir");
    std::fs::write(dir.path().join("secret.policy.yaml"), "token: s3cr3t\n").expect("write");
    std::os::unix::fs::symlink(
        dir.path().join("secret.policy.yaml"),
        tree.join("app.policy.yaml"),
    )
    .expect("symlink");
    let manifest = |policy: &str| {
        format!(
            "registries:\n- name: staging.example/app\n  src: true\n- name: prod.example/app\nimages:\n- name: app\n  dmap:\n    \"sha256:93cf793ad44839594db937c0a59f4129d915285e503971dbdc81f70f2a9f4b1a\": [\"v1\"]\npolicy: {policy}\n"
        )
    };
    std::fs::write(tree.join("app.yaml"), manifest("app.policy.yaml")).expect("write");
    let loaded = manifest::load(&[tree.join("app.yaml")]).expect("load");
    let messages: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("leads out of the manifest's folder"),
        "{}",
        messages[0]
    );
    assert!(!messages[0].contains("s3cr3t"));
    std::fs::write(tree.join("app.yaml"), manifest("rules.yaml")).expect("write");
    let loaded = manifest::load(&[tree.join("app.yaml")]).expect("load");
    assert!(
        loaded.diagnostics[0]
            .message
            .contains("names `policy.yaml` or `NAME.policy.yaml`"),
        "{:?}",
        loaded.diagnostics
    );
}
