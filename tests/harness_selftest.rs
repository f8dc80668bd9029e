//! Self-test of the real-registry harness: every registry kind starts, every image kind pushed
//! by the raw seeder reads back byte for byte through skopeo, auth is enforced, and a blob
//! corrupted on disk is served with a digest mismatch.

use promoter_tests::harness::http::RawClient;
use promoter_tests::harness::image::{self, IndexFormat, ManifestFormat, Pushed, Seeder};
use promoter_tests::harness::{Credentials, TestRegistry, digest_of, inspect_raw, skopeo};

/// Reads `pushed` (and its children) back with skopeo, by tag and by digest.
fn assert_reads_back(registry: &TestRegistry, pushed: &Pushed) {
    let creds = registry.credentials();
    let by_digest = inspect_raw(registry, &pushed.repo, &pushed.digest, creds);
    assert_eq!(by_digest, pushed.bytes, "{}@{}", pushed.repo, pushed.digest);
    assert_eq!(digest_of(&by_digest), pushed.digest);
    if let Some(tag) = &pushed.tag {
        let by_tag = inspect_raw(registry, &pushed.repo, tag, creds);
        assert_eq!(by_tag, pushed.bytes, "{}:{tag}", pushed.repo);
    }
    // The registry serves it with the media type it was pushed with.
    let response = RawClient::for_registry(registry).get_manifest(&pushed.repo, &pushed.digest);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some(pushed.media_type.as_str())
    );
    assert_eq!(
        response.header("docker-content-digest"),
        Some(pushed.digest.as_str())
    );
    for child in &pushed.children {
        assert_reads_back(registry, child);
    }
}

#[test]
fn images_are_deterministic() {
    let a = image::single(ManifestFormat::Oci, "same");
    let b = image::single(ManifestFormat::Oci, "same");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.manifest, b.manifest);
    let index = image::multi_platform(IndexFormat::Oci, "same");
    assert_eq!(
        index.digest,
        image::multi_platform(IndexFormat::Oci, "same").digest
    );
    // Children of an index and separate images share the base layer.
    let base = image::base_layer().digest;
    assert!(index.children.iter().all(|c| c.layers[0].digest == base));
    assert_eq!(a.layers[0].digest, base);
    let other = image::single(ManifestFormat::Oci, "other");
    assert_ne!(a.digest, other.digest);
    // No mediaType field at all in that variant.
    let bare = image::single(ManifestFormat::OciWithoutMediaType, "same");
    let json: serde_json::Value = serde_json::from_slice(&bare.manifest).expect("JSON");
    assert!(json.get("mediaType").is_none());
    assert_ne!(bare.digest, a.digest);
}

#[test]
fn anonymous_registry_round_trips_every_kind() {
    let registry = TestRegistry::start();
    let seeder = Seeder::new(&registry);
    let mut pushed = Vec::new();
    for (repo, format) in [
        ("kinds/oci", ManifestFormat::Oci),
        ("kinds/oci-bare", ManifestFormat::OciWithoutMediaType),
        ("kinds/docker", ManifestFormat::Docker),
    ] {
        let image = image::single(format, repo);
        pushed.push(seeder.push_image(repo, &image, Some("v1")));
        // Untagged, by digest only.
        let untagged = image::single(format, &format!("{repo}-untagged"));
        pushed.push(seeder.push_image(repo, &untagged, None));
    }
    for (repo, format) in [
        ("kinds/index", IndexFormat::Oci),
        ("kinds/list", IndexFormat::DockerList),
    ] {
        pushed.push(seeder.push_index(repo, &image::multi_platform(format, repo), Some("multi")));
    }
    // A multi-MiB layer.
    let big = image::image(
        ManifestFormat::Oci,
        image::Platform::linux("amd64"),
        vec![image::base_layer(), image::layer("big", 6 << 20)],
        "big",
    );
    assert!(big.layers[1].bytes.len() > 6 << 20);
    pushed.push(seeder.push_image("kinds/big", &big, Some("big")));

    for p in &pushed {
        assert_reads_back(&registry, p);
    }
    // Every blob is there, with its digest.
    let client = RawClient::for_registry(&registry);
    for p in &pushed {
        for blob in p.all_blobs() {
            let response = client.get_blob(&p.repo, &blob);
            assert_eq!(response.status, 200, "{}@{blob}", p.repo);
            assert_eq!(digest_of(&response.body), blob);
        }
    }
    assert_eq!(
        skopeo::list_tags(&registry, "kinds/oci", None).expect("list tags"),
        vec!["v1".to_owned()]
    );
}

#[test]
fn htpasswd_registry_refuses_anonymous() {
    let registry = TestRegistry::with_htpasswd("alice", "s3cret");
    assert_eq!(
        registry.credentials(),
        Some(&Credentials::new("alice", "s3cret"))
    );
    let anonymous = RawClient::anonymous(&registry).send("GET", "/v2/", "", &[], None);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    let wrong = RawClient::new(&registry.host(), Some(Credentials::new("alice", "wrong"))).send(
        "GET",
        "/v2/",
        "",
        &[],
        None,
    );
    assert_eq!(wrong.status, 401);

    let pushed = image::push_single(
        &registry,
        "auth/basic",
        ManifestFormat::Docker,
        "basic",
        Some("v1"),
    );
    assert_reads_back(&registry, &pushed);
    let refused = skopeo::try_inspect_raw(&registry, "auth/basic", "v1", None);
    assert!(
        refused.is_err(),
        "anonymous skopeo read a protected registry"
    );
}

#[test]
fn token_registry_issues_tokens() {
    let registry = TestRegistry::with_token_auth();
    let anonymous = RawClient::anonymous(&registry).send("GET", "/v2/", "", &[], None);
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(registry.token_requests(), 0);

    let seeder = Seeder::new(&registry);
    let pushed = seeder.push_index(
        "auth/token",
        &image::multi_platform(IndexFormat::Oci, "t"),
        Some("v1"),
    );
    let after_first = registry.token_requests();
    assert!(after_first > 0);
    // The seeder caches its tokens: a second push to the same repository asks for none.
    seeder.push_image(
        "auth/token",
        &image::single(ManifestFormat::Oci, "t2"),
        Some("v2"),
    );
    assert_eq!(registry.token_requests(), after_first);
    let issuer = registry.token_issuer().expect("an issuer");
    assert!(
        issuer
            .scopes()
            .iter()
            .any(|s| s == "repository:auth/token:pull,push"),
        "{:?}",
        issuer.scopes()
    );

    assert_reads_back(&registry, &pushed);
    assert!(
        registry.token_requests() > after_first,
        "skopeo got its own tokens"
    );

    // Wrong issuer credentials: no token, so no access.
    let wrong = RawClient::new(
        &registry.host(),
        Some(Credentials::new("token-user", "wrong")),
    )
    .get_manifest("auth/token", "v1");
    assert_eq!(wrong.status, 401);
}

#[test]
fn corrupted_blob_is_served_with_another_digest() {
    let registry = TestRegistry::start();
    let pushed = image::push_single(
        &registry,
        "corrupt/me",
        ManifestFormat::Oci,
        "corrupt",
        Some("v1"),
    );
    let layer = pushed.blobs.last().expect("a layer").clone();
    let path = registry.blob_path(&layer);
    assert!(path.starts_with(registry.storage_root()));
    let mut bytes = std::fs::read(&path).expect("the blob on disk");
    bytes[0] ^= 0xff; // same length, one byte flipped
    std::fs::write(&path, &bytes).expect("corrupt the blob");

    let response = RawClient::for_registry(&registry).get_blob("corrupt/me", &layer);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, bytes);
    assert_ne!(digest_of(&response.body), layer);
}

#[test]
fn the_harness_works_inside_an_async_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let registry = TestRegistry::start();
        let pushed = image::push_single(&registry, "async/ok", ManifestFormat::Oci, "async", None);
        let response = RawClient::for_registry(&registry).get_manifest("async/ok", &pushed.digest);
        assert_eq!(response.body, pushed.bytes);
    });
}
