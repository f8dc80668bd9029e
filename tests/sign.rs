//! Cosign-format signatures in a real registry (CNCF distribution): signing, verifying,
//! idempotence, a second signer's signature surviving ours, and tampered signatures refused,
//! with our signatures also checked by an independent implementation (the `sigstore` crate's
//! cosign verification).

use std::sync::Arc;

use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::sign::keys::{SigningKey, VerifyingKey};
use promoter::sign::{self, Artifact, Provenance, Pushed, cosign};
use promoter_tests::harness::image::{ManifestFormat, push_single};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::skopeo;

fn key_pair(dir: &std::path::Path, name: &str) -> (SigningKey, VerifyingKey) {
    let (private, public) = SigningKey::generate(&dir.join(name)).expect("generate a key");
    (
        SigningKey::from_pem_file(&private).expect("private key"),
        VerifyingKey::from_pem_file(&public).expect("public key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_appended_verified_and_tamper_evident() {
    let registry = TestRegistry::start();
    let image = push_single(
        &registry,
        "prod/app",
        ManifestFormat::Oci,
        "signed-app",
        Some("v1"),
    );
    let other = push_single(
        &registry,
        "prod/app",
        ManifestFormat::Oci,
        "other-app",
        Some("v2"),
    );
    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );
    let repository = promoter_tests::repository(&format!("{}/prod/app", registry.host()));
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, our_public) = key_pair(dir.path(), "ours");
    let (theirs, their_public) = key_pair(dir.path(), "theirs");

    assert!(
        sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &our_public
        )
        .await
        .expect("verify")
        .is_empty()
    );

    // A second signer signed first; our signature is appended, theirs survives.
    let their_signature = sign::sign(
        &theirs,
        "registry.example/app",
        &promoter_tests::digest(&image.digest),
        serde_json::Map::new(),
    )
    .expect("sign");
    assert_eq!(
        sign::push(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &their_signature,
            &their_public
        )
        .await
        .expect("push"),
        Pushed::Added
    );
    let mut optional = serde_json::Map::new();
    optional.insert("run".to_owned(), serde_json::Value::from("r1"));
    let signed = sign::sign(
        &ours,
        "registry.example/app",
        &promoter_tests::digest(&image.digest),
        optional,
    )
    .expect("sign");
    assert_eq!(
        sign::push(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &signed,
            &our_public
        )
        .await
        .expect("push"),
        Pushed::Added
    );
    // Signing again is a no-op.
    let again = sign::sign(
        &ours,
        "registry.example/app",
        &promoter_tests::digest(&image.digest),
        serde_json::Map::new(),
    )
    .expect("sign");
    assert_eq!(
        sign::push(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &again,
            &our_public
        )
        .await
        .expect("push"),
        Pushed::AlreadySigned
    );

    let ours_found = sign::verify(
        &client,
        &repository,
        &promoter_tests::digest(&image.digest),
        &our_public,
    )
    .await
    .expect("verify");
    assert_eq!(ours_found.len(), 1);
    assert_eq!(
        ours_found[0].critical.identity.docker_reference,
        "registry.example/app"
    );
    assert_eq!(
        sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &their_public
        )
        .await
        .expect("verify")
        .len(),
        1
    );

    // The signature image is where cosign looks, shaped as cosign writes it.
    let tag = cosign::signature_tag(&promoter_tests::digest(&image.digest));
    let raw = skopeo::inspect_raw(&registry, "prod/app", tag.as_str(), None);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).expect("signature manifest");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert_eq!(layer["mediaType"], cosign::PAYLOAD_MEDIA_TYPE);
        assert!(layer["annotations"][cosign::SIGNATURE_ANNOTATION].is_string());
    }

    // An independent verifier (sigstore-rs, as `cosign verify --key` would) accepts ours and
    // refuses a key that did not sign.
    let reference = format!("{}/prod/app@{}", registry.host(), image.digest);
    assert!(independently_verified(&reference, &dir.path().join("ours.pub")).await);
    assert!(!independently_verified(&reference, &fresh_key(dir.path(), "stranger")).await);

    // Tampered: our valid signature of ANOTHER digest, filed under this digest's tag, does not
    // verify for this digest; nor does a signature over other bytes.
    let wrong_digest = sign::sign(
        &ours,
        "registry.example/app",
        &promoter_tests::digest(&other.digest),
        serde_json::Map::new(),
    )
    .expect("sign");
    let (_, fresh_public) = key_pair(dir.path(), "fresh");
    sign::push(
        &client,
        &repository,
        &promoter_tests::digest(&image.digest),
        &wrong_digest,
        &fresh_public,
    )
    .await
    .expect("push");
    let forged = sign::Signed {
        payload: signed.payload.slice(..signed.payload.len() - 1),
        signature: signed.signature.clone(),
    };
    sign::push(
        &client,
        &repository,
        &promoter_tests::digest(&other.digest),
        &forged,
        &fresh_public,
    )
    .await
    .expect("push");
    assert!(
        sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(&other.digest),
            &our_public
        )
        .await
        .expect("verify")
        .is_empty()
    );
    assert_eq!(
        sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &our_public
        )
        .await
        .expect("verify")
        .len(),
        1
    );
}

/// Writes a fresh key pair and returns its public key file.
fn fresh_key(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    SigningKey::generate(&dir.join(name))
        .expect("generate a key")
        .1
}

/// True when the `sigstore` crate finds a signature of `reference` by the key in `public`.
async fn independently_verified(reference: &str, public: &std::path::Path) -> bool {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
    use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

    let config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    };
    let mut client = ClientBuilder::default()
        .with_oci_client_config(config)
        .build()
        .expect("sigstore client");
    let image: OciReference = reference.parse().expect("an image reference");
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &image)
        .await
        .expect("signature layers");
    let pem = std::fs::read(public).expect("public key");
    let verifier = PublicKeyVerifier::try_from(&pem).expect("a P-256 public key");
    let constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    verify_constraints(&layers, constraints.iter()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_signatures_and_attestations_reach_every_mirror() {
    use promoter::copy::{Action, CopyOptions, Engine};
    use promoter::plan::{Destination, Unit};
    use promoter::sign::{KeySource, Signer};

    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "carried-app",
        Some("v1"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (maintainer, maintainer_public) = key_pair(dir.path(), "maintainer");
    let (release, release_public) = key_pair(dir.path(), "release");
    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );
    let source = promoter_tests::repository(&format!("{}/staging/app", staging.host()));
    // In staging: the maintainer's signature, and an attestation (any image under the `.att` tag).
    let signed = sign::sign(
        &maintainer,
        "staging/app",
        &promoter_tests::digest(&image.digest),
        serde_json::Map::new(),
    )
    .expect("sign");
    sign::push(
        &client,
        &source,
        &promoter_tests::digest(&image.digest),
        &signed,
        &maintainer_public,
    )
    .await
    .expect("push");
    let att_tag = format!("{}.att", image.digest.replace(':', "-"));
    let attestation = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "attestation",
        Some(&att_tag),
    );

    let mirrors = ["us/app", "eu/app"];
    let unit = Unit {
        id: "carry".to_owned(),
        source: source.clone(),
        digest: image.digest.parse().expect("digest"),
        destinations: mirrors
            .iter()
            .map(|m| Destination {
                repository: promoter_tests::repository(&format!("{}/{m}", production.host())),
                tags: Arc::from(vec!["v1".parse().expect("tag")]),
            })
            .collect(),
        policies: Vec::new(),
    };
    let engine = Engine::new(Arc::clone(&client), CopyOptions::default());
    let report = engine.copy_unit(&unit).await;
    assert!(report.succeeded(), "{:?}", report.error);
    // Then the sign step's work: the release key signs in every mirror.
    Signer::new(KeySource::File(release), Vec::new())
        .await
        .expect("signer")
        .sign_unit(&client, &unit, &Provenance::default())
        .await
        .expect("signed");
    let carried = report
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CopyArtifact { .. }))
        .count();
    assert_eq!(
        carried, 4,
        "a .sig and a .att to each of 2 mirrors: {:?}",
        report.actions
    );

    for mirror in mirrors {
        let repository = promoter_tests::repository(&format!("{}/{mirror}", production.host()));
        // Both signers verify in every mirror.
        assert_eq!(
            sign::verify(
                &client,
                &repository,
                &promoter_tests::digest(&image.digest),
                &maintainer_public
            )
            .await
            .expect("verify")
            .len(),
            1
        );
        assert_eq!(
            sign::verify(
                &client,
                &repository,
                &promoter_tests::digest(&image.digest),
                &release_public
            )
            .await
            .expect("verify")
            .len(),
            1
        );
        // The attestation arrives byte for byte.
        let bytes = skopeo::inspect_raw(&production, mirror, &att_tag, None);
        assert_eq!(bytes, attestation.bytes, "{mirror}: attestation bytes");
    }

    // Again: nothing new to carry or sign.
    let again = engine.copy_unit(&unit).await;
    assert!(again.was_present(), "{:?}", again.actions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_sign_and_the_signature_verifies_independently() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    use promoter::copy::{CopyOptions, Engine};
    use promoter::plan::{Destination, Unit};
    use promoter::sign::kms::KmsKey;
    use promoter::sign::{KeySource, Signer};
    use promoter_tests::harness::moto::MotoServer;

    let moto = MotoServer::start();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let created = aws_sdk_kms::Client::new(&config)
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .expect("create a KMS key in moto");
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .expect("a key id");
    let kms = KmsKey::with_config(&config, key_id);
    let public = kms.verifying_key().await.expect("the public key from KMS");

    // A key KMS does not know is a permanent failure (retrying it only fills the dead-letter
    // queue), named with its cause; a KMS that cannot be reached is worth retrying.
    let missing = KmsKey::with_config(&config, "alias/no-such-key".to_owned());
    let error = missing.sign(b"payload").await.expect_err("no such key");
    let text = promoter::error_chain::error_chain(&error);
    assert!(!error.is_retryable(), "{text}");
    assert!(text.contains("NotFoundException"), "{text}");
    let closed = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let unreachable = KmsKey::with_config(&closed, "alias/any".to_owned());
    let error = unreachable
        .sign(b"payload")
        .await
        .expect_err("nothing listens");
    assert!(
        error.is_retryable(),
        "{}",
        promoter::error_chain::error_chain(&error)
    );

    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "kms-app",
        None,
    );
    let unit = Unit {
        id: "kms".to_owned(),
        source: promoter_tests::repository(&format!("{}/staging/app", staging.host())),
        digest: image.digest.parse().expect("digest"),
        destinations: vec![Destination {
            repository: promoter_tests::repository(&format!("{}/prod/app", production.host())),
            tags: Arc::from(vec!["v1".parse().expect("tag")]),
        }],
        policies: Vec::new(),
    };
    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );
    let engine = Engine::new(Arc::clone(&client), CopyOptions::default());
    let report = engine.copy_unit(&unit).await;
    assert!(report.succeeded(), "{:?}", report.error);
    Signer::new(KeySource::Kms(kms), Vec::new())
        .await
        .expect("signer")
        .sign_unit(&client, &unit, &Provenance::default())
        .await
        .expect("signed with KMS");

    let repository = promoter_tests::repository(&format!("{}/prod/app", production.host()));
    assert_eq!(
        sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(&image.digest),
            &public
        )
        .await
        .expect("verify")
        .len(),
        1
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("kms.pub");
    std::fs::write(&pem, public.to_pem()).expect("write the public key");
    let reference = format!("{}/prod/app@{}", production.host(), image.digest);
    assert!(
        independently_verified(&reference, &pem).await,
        "sigstore-rs accepts the KMS signature"
    );
    // The KMS key's bundles (signature, promotion record, summary) verify independently too.
    let bundles =
        crate::bundles::independently_verified(&production.host(), "prod/app", &image.digest, &pem);
    for predicate in [
        sign::attest::SIGNATURE_PREDICATE,
        sign::attest::PROMOTION_PREDICATE,
        sign::attest::VSA_PREDICATE,
    ] {
        assert_eq!(bundles[predicate], 1, "{predicate}: {bundles}");
    }
    assert_eq!(bundles["rejected"], 0, "{bundles}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_are_signed_when_asked() {
    use promoter::copy::{CopyOptions, Engine};
    use promoter::plan::{Destination, Unit};
    use promoter::sign::{KeySource, Signer};
    use promoter_tests::harness::image::{IndexFormat, push_multi};

    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let index = push_multi(
        &staging,
        "staging/multi",
        IndexFormat::Oci,
        "signed-multi",
        None,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = key_pair(dir.path(), "release");
    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );
    let unit = Unit {
        id: "multi".to_owned(),
        source: promoter_tests::repository(&format!("{}/staging/multi", staging.host())),
        digest: index.digest.parse().expect("digest"),
        destinations: vec![Destination {
            repository: promoter_tests::repository(&format!("{}/prod/multi", production.host())),
            tags: Arc::from(vec!["v1".parse().expect("tag")]),
        }],
        policies: Vec::new(),
    };
    let signer = Signer::new(KeySource::File(key), Vec::new())
        .await
        .expect("signer")
        .with_children(true);
    let report = Engine::new(Arc::clone(&client), CopyOptions::default())
        .copy_unit(&unit)
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    let signed = signer
        .sign_unit(&client, &unit, &Provenance::default())
        .await
        .expect("signed");
    let legacy = signed
        .iter()
        .filter(|s| s.artifact == Artifact::LegacySignature)
        .count();
    assert_eq!(
        legacy,
        1 + index.children.len(),
        "the index and each child, in the one destination: {signed:?}"
    );
    let bundles = signed
        .iter()
        .filter(|s| s.artifact == Artifact::SignatureBundle)
        .count();
    assert_eq!(bundles, 1 + index.children.len(), "{signed:?}");
    assert_eq!(
        signed
            .iter()
            .filter(|s| s.artifact == Artifact::Promotion && s.child.is_none())
            .count(),
        1,
        "the index alone gets a promotion record: {signed:?}"
    );
    let repository = promoter_tests::repository(&format!("{}/prod/multi", production.host()));
    assert!(!index.children.is_empty());
    for digest in std::iter::once(&index.digest).chain(index.children.iter().map(|c| &c.digest)) {
        let found = sign::verify(
            &client,
            &repository,
            &promoter_tests::digest(digest),
            &public,
        )
        .await
        .expect("verify");
        assert_eq!(found.len(), 1, "{digest} is signed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_referrers_reach_every_mirror_through_the_fallback_tag() {
    use promoter::copy::{CopyOptions, Engine};
    use promoter::plan::{Destination, Unit};
    use promoter_tests::harness::image::{Seeder, sha256_digest};

    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "referred-app",
        None,
    );
    // An SBOM artifact whose subject is the image (OCI 1.1), and the referrers fallback tag
    // `sha256-<hex>` listing it, as clients do on registries without the referrers API.
    let seeder = Seeder::new(&staging);
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"referred-app"}"#;
    let sbom_digest = sha256_digest(sbom);
    seeder.push_blob("staging/app", &sbom_digest, sbom);
    let empty = b"{}";
    seeder.push_blob("staging/app", &sha256_digest(empty), empty);
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(empty), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom_digest, "size": sbom.len()}],
        "subject": {"mediaType": image.media_type, "digest": image.digest, "size": image.bytes.len()},
    }))
    .expect("artifact JSON");
    let artifact_digest = sha256_digest(&artifact);
    seeder.push_manifest(
        "staging/app",
        &artifact_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &artifact,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": artifact_digest,
            "size": artifact.len(),
            "artifactType": "application/spdx+json",
        }],
    }))
    .expect("index JSON");
    let fallback_tag = image.digest.replace(':', "-");
    seeder.push_manifest(
        "staging/app",
        &fallback_tag,
        "application/vnd.oci.image.index.v1+json",
        &index,
    );

    let client = Arc::new(
        Client::new(ClientConfig::default(), CredentialSources::default()).expect("client"),
    );
    let mirrors = ["us/app", "eu/app"];
    let unit = Unit {
        id: "referrers".to_owned(),
        source: promoter_tests::repository(&format!("{}/staging/app", staging.host())),
        digest: image.digest.parse().expect("digest"),
        destinations: mirrors
            .iter()
            .map(|m| Destination {
                repository: promoter_tests::repository(&format!("{}/{m}", production.host())),
                tags: Arc::from(Vec::new()),
            })
            .collect(),
        policies: Vec::new(),
    };
    let report = Engine::new(Arc::clone(&client), CopyOptions::default())
        .copy_unit(&unit)
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    for mirror in mirrors {
        assert_eq!(
            skopeo::inspect_raw(&production, mirror, &artifact_digest, None),
            artifact,
            "{mirror}: the referrer"
        );
        assert_eq!(
            skopeo::inspect_raw(&production, mirror, &fallback_tag, None),
            index,
            "{mirror}: the fallback tag"
        );
    }
}
