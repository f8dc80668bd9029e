//! cosign 3 signatures in a real registry (CNCF distribution 2.8, no referrers API): sigstore
//! bundles attached as referrers through the fallback tag, a promotion record and a SLSA
//! verification summary per digest, in every mirror, checked by an independent verifier
//! (`tests/support/verify_bundles.py`: Python's `cryptography` over the DSSE encoding);
//! reruns writing nothing; concurrent signers of other keys keeping each other's entries.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use promoter::copy::{CopyOptions, Engine};
use promoter::plan::{Destination, Unit};
use promoter::reference::Digest;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::sign::attest::{PROMOTION_PREDICATE, SIGNATURE_PREDICATE, VSA_PREDICATE};
use promoter::sign::keys::{SigningKey, VerifyingKey};
use promoter::sign::{self, Artifact, KeySource, Provenance, SignatureFormat, Signer};
use promoter_tests::harness::image::{ManifestFormat, push_single};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::server::VENV;
use serde_json::Value;

/// What the independent verifier found for `digest` in `repository` (a path on `host`) with
/// the public key in `pem`: predicate type → bundles that verify, `rejected`, `hints`.
pub fn independently_verified(host: &str, repository: &str, digest: &str, pem: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/verify_bundles.py");
    let python = Path::new(VENV).join("bin/python");
    let output = Command::new(python)
        .arg(script)
        .args([host, repository, digest])
        .arg(pem)
        .output()
        .expect("run the Python verifier (infra/local/test.sh installs its venv)");
    assert!(
        output.status.success(),
        "verifier: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the verifier prints JSON")
}

fn key_files(dir: &Path, name: &str) -> (SigningKey, VerifyingKey, std::path::PathBuf) {
    let (private, public) = SigningKey::generate(&dir.join(name)).expect("generate a key");
    (
        SigningKey::from_pem_file(&private).expect("private key"),
        VerifyingKey::from_pem_file(&public).expect("public key"),
        public,
    )
}

fn client() -> Arc<Client> {
    Arc::new(Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"))
}

/// Unit `id`: `digest` from `source` to `mirrors` of `production`, tagged `v1`.
fn unit_to(
    id: &str,
    source: &promoter::reference::Repository,
    digest: &Digest,
    production: &TestRegistry,
    mirrors: &[&str],
) -> Unit {
    Unit {
        id: id.to_owned(),
        source: source.clone(),
        digest: digest.clone(),
        destinations: mirrors
            .iter()
            .map(|m| Destination {
                repository: promoter_tests::repository(&format!("{}/{m}", production.host())),
                tags: Arc::from(vec!["v1".parse().expect("tag")]),
            })
            .collect(),
        policies: Vec::new(),
    }
}

/// A unit of a new image from `staging` to `mirrors` of `production`, copied there.
async fn promoted(
    client: &Arc<Client>,
    staging: &TestRegistry,
    production: &TestRegistry,
    mirrors: &[&str],
    seed: &str,
) -> Unit {
    let image = push_single(
        staging,
        "staging/app",
        ManifestFormat::Oci,
        seed,
        Some("v1"),
    );
    let unit = unit_to(
        seed,
        &promoter_tests::repository(&format!("{}/staging/app", staging.host())),
        &image.digest.parse().expect("digest"),
        production,
        mirrors,
    );
    let report = Engine::new(Arc::clone(client), CopyOptions::default())
        .copy_unit(&unit)
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    unit
}

fn provenance() -> Provenance {
    Provenance {
        run: "revision-0123".to_owned(),
        revision: "0123abcd".to_owned(),
        manifest_repository: Some("org/manifests".to_owned()),
        checked: None,
    }
}

/// The referrer digests the fallback tag of `digest` lists in `repository`.
async fn listed(client: &Client, repository: &str, digest: &Digest) -> BTreeSet<String> {
    let repository = promoter_tests::repository(repository);
    let index = client
        .manifest_get(&repository, &digest.referrers_tag())
        .await
        .expect("read the fallback tag")
        .expect("a fallback tag");
    let json: Value = serde_json::from_slice(&index.bytes).expect("an index");
    json["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_verify_independently_in_every_mirror_once_per_digest() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let client = client();
    let mirrors = ["us/app", "eu/app", "asia/app"];
    let unit = promoted(&client, &staging, &production, &mirrors, "bundled-app").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public, pem) = key_files(dir.path(), "release");
    let (_, _, wrong_pem) = key_files(dir.path(), "wrong");
    let signer = Signer::new(KeySource::File(key), Vec::new())
        .await
        .expect("signer");
    assert_eq!(signer.format(), SignatureFormat::Both);

    let signed = signer
        .sign_unit(&client, &unit, &provenance())
        .await
        .expect("signed");
    assert!(signed.iter().all(|s| s.added), "{signed:?}");
    assert_eq!(signed.len(), 4 * mirrors.len(), "{signed:?}");

    let hint = sign::bundle::key_hint(&public);
    let mut everywhere = None;
    for mirror in mirrors {
        let found = independently_verified(&production.host(), mirror, unit.digest.as_str(), &pem);
        assert_eq!(found[SIGNATURE_PREDICATE], 1, "{mirror}: {found}");
        assert_eq!(found[PROMOTION_PREDICATE], 1, "{mirror}: {found}");
        assert_eq!(found[VSA_PREDICATE], 1, "{mirror}: {found}");
        assert_eq!(found["rejected"], 0, "{mirror}: {found}");
        assert!(
            found["hints"]
                .as_array()
                .is_some_and(|h| h.iter().all(|h| h == hint.as_str())),
            "{found}"
        );
        let wrong =
            independently_verified(&production.host(), mirror, unit.digest.as_str(), &wrong_pem);
        assert_eq!(
            wrong["rejected"], 3,
            "a wrong key verifies nothing: {wrong}"
        );
        // The same three bundles (same bytes, same referrer digests) in every mirror.
        let here = listed(
            &client,
            &format!("{}/{mirror}", production.host()),
            &unit.digest,
        )
        .await;
        assert_eq!(here.len(), 3);
        assert_eq!(everywhere.get_or_insert_with(|| here.clone()), &here);
        // The legacy signature is there too, and our reader finds both formats.
        let repository = promoter_tests::repository(&format!("{}/{mirror}", production.host()));
        let formats: BTreeSet<&str> = sign::verify_any(&client, &repository, &unit.digest, &public)
            .await
            .expect("verify")
            .iter()
            .map(sign::Found::format)
            .collect();
        assert_eq!(formats, BTreeSet::from(["bundle", "legacy"]), "{mirror}");
    }

    // The promotion record and the summary say where the promotion came from.
    let repository = promoter_tests::repository(&format!("{}/us/app", production.host()));
    let statements: Vec<_> = sign::verify::bundles(&client, &repository, &unit.digest, &public)
        .await
        .expect("bundles")
        .into_iter()
        .map(|b| b.statement.expect("verifies"))
        .collect();
    let promotion = statements
        .iter()
        .find(|s| s.predicate_type == PROMOTION_PREDICATE)
        .expect("a promotion record");
    assert_eq!(
        promotion.predicate["srcRef"],
        format!("{}@{}", unit.source, unit.digest)
    );
    assert_eq!(promotion.predicate["manifestRevision"], "0123abcd");
    assert_eq!(promotion.predicate["runId"], "revision-0123");
    let summary = statements
        .iter()
        .find(|s| s.predicate_type == VSA_PREDICATE)
        .expect("a summary");
    assert_eq!(summary.predicate["verificationResult"], "PASSED");

    // A rerun (another run, later) signs nothing and writes nothing.
    let before = everywhere.unwrap_or_default();
    let again = signer
        .sign_unit(
            &client,
            &unit,
            &Provenance {
                run: "another-run".to_owned(),
                ..provenance()
            },
        )
        .await
        .expect("signed again");
    assert!(again.iter().all(|s| !s.added), "{again:?}");
    for mirror in mirrors {
        let here = listed(
            &client,
            &format!("{}/{mirror}", production.host()),
            &unit.digest,
        )
        .await;
        assert_eq!(here, before, "{mirror}: nothing added");
    }

    // A mirror that lost its bundles gets the very same ones back (nothing signed anew).
    let eu = promoter_tests::repository(&format!("{}/eu/app", production.host()));
    let empty = sign::referrer::merged_index(None, &[]);
    assert!(empty.is_none(), "nothing to merge is no index");
    let wiped = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    });
    let wiped = bytes::Bytes::from(serde_json::to_vec(&wiped).expect("json"));
    client
        .manifest_put(
            &eu,
            &unit.digest.referrers_tag(),
            &promoter::registry::Manifest {
                media_type: "application/vnd.oci.image.index.v1+json".to_owned(),
                digest: Digest::of(&wiped),
                bytes: wiped,
            },
        )
        .await
        .expect("wipe eu's referrers");
    let repaired = signer
        .sign_unit(&client, &unit, &provenance())
        .await
        .expect("repaired");
    let added: Vec<_> = repaired.iter().filter(|s| s.added).collect();
    assert_eq!(added.len(), 3, "eu's three bundles only: {repaired:?}");
    assert!(
        added
            .iter()
            .all(|s| s.repository == eu && s.artifact != Artifact::LegacySignature)
    );
    let here = listed(
        &client,
        &format!("{}/eu/app", production.host()),
        &unit.digest,
    )
    .await;
    assert_eq!(here, before, "the same bundles as the other mirrors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signers_keep_each_others_entries_in_the_fallback_index() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let client = client();
    let mirrors = ["us/app", "eu/app"];
    let unit = promoted(&client, &staging, &production, &mirrors, "contended-app").await;
    let dir = tempfile::tempdir().expect("temp dir");

    // Another signer's bundle, pushed beforehand.
    let (early, early_public, _) = key_files(dir.path(), "early");
    Signer::new(KeySource::File(early), Vec::new())
        .await
        .expect("signer")
        .with_format(SignatureFormat::Bundle)
        .with_attestations(false)
        .sign_unit(&client, &unit, &provenance())
        .await
        .expect("the early signer");

    // Four signers of four keys at once, each adding three bundles to the same index.
    let mut keys = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (key, public, pem) = key_files(dir.path(), &format!("k{i}"));
        keys.push((public, pem));
        let client = Arc::clone(&client);
        let unit = unit.clone();
        tasks.push(tokio::spawn(async move {
            Signer::new(KeySource::File(key), Vec::new())
                .await
                .expect("signer")
                .with_format(SignatureFormat::Bundle)
                .sign_unit(&client, &unit, &provenance())
                .await
        }));
    }
    for task in tasks {
        task.await.expect("joined").expect("signed");
    }
    for mirror in mirrors {
        let here = listed(
            &client,
            &format!("{}/{mirror}", production.host()),
            &unit.digest,
        )
        .await;
        assert_eq!(
            here.len(),
            1 + 4 * 3,
            "{mirror}: every signer's entries: {here:?}"
        );
        let repository = promoter_tests::repository(&format!("{}/{mirror}", production.host()));
        for (public, pem) in &keys {
            let found =
                independently_verified(&production.host(), mirror, unit.digest.as_str(), pem);
            assert_eq!(found[SIGNATURE_PREDICATE], 1, "{mirror}: {found}");
            assert_eq!(found[PROMOTION_PREDICATE], 1, "{mirror}: {found}");
            assert_eq!(found[VSA_PREDICATE], 1, "{mirror}: {found}");
            assert!(
                !sign::verify_any(&client, &repository, &unit.digest, public)
                    .await
                    .expect("verify")
                    .is_empty()
            );
        }
        assert_eq!(
            sign::verify_any(&client, &repository, &unit.digest, &early_public)
                .await
                .expect("verify")
                .len(),
            1,
            "{mirror}: the early signer's bundle survives"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_bundle_satisfies_the_signature_policy_and_reaches_every_mirror() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let client = client();
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "bundle-staged",
        Some("v1"),
    );
    let source = promoter_tests::repository(&format!("{}/staging/app", staging.host()));
    let digest: Digest = image.digest.parse().expect("digest");
    let dir = tempfile::tempdir().expect("temp dir");
    let (maintainer, maintainer_public, maintainer_pem) = key_files(dir.path(), "maintainer");
    let (_, stranger_public, _) = key_files(dir.path(), "stranger");
    let mirrors = ["us/app", "eu/app"];
    let unit = unit_to("staged", &source, &digest, &production, &mirrors);
    // Another key is required: the unit is refused, nothing is written.
    let refused = Engine::new(Arc::clone(&client), CopyOptions::default())
        .requiring_signature(stranger_public)
        .copy_unit(&unit)
        .await;
    assert!(!refused.succeeded(), "unsigned by the stranger");

    // The maintainer signs staging the cosign 3 way only: a bundle, no `.sig`.
    let staging_unit = Unit {
        destinations: vec![Destination {
            repository: source.clone(),
            tags: Arc::from(vec!["v1".parse().expect("tag")]),
        }],
        ..unit.clone()
    };
    Signer::new(KeySource::File(maintainer), Vec::new())
        .await
        .expect("signer")
        .with_format(SignatureFormat::Bundle)
        .with_attestations(false)
        .sign_unit(&client, &staging_unit, &Provenance::default())
        .await
        .expect("the maintainer signs staging");
    let found = sign::verify_any(&client, &source, &digest, &maintainer_public)
        .await
        .expect("verify");
    assert_eq!(
        found.iter().map(sign::Found::format).collect::<Vec<_>>(),
        ["bundle"]
    );

    let report = Engine::new(Arc::clone(&client), CopyOptions::default())
        .requiring_signature(maintainer_public.clone())
        .copy_unit(&unit)
        .await;
    assert!(
        report.succeeded(),
        "a bundle satisfies the policy: {:?}",
        report.error
    );
    for mirror in mirrors {
        let found =
            independently_verified(&production.host(), mirror, digest.as_str(), &maintainer_pem);
        assert_eq!(
            found[SIGNATURE_PREDICATE], 1,
            "{mirror}: the maintainer's bundle: {found}"
        );
    }
}
