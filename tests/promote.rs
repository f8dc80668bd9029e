//! The transfer engine against real registries: images pushed to an anonymous staging
//! registry by the harness's raw seeder are promoted with `promoter::copy::Engine` to
//! production registries, then production is read back with skopeo (an independent client)
//! and compared byte for byte with staging, by digest and by every tag, in every destination.
//!
//! Covers every manifest kind, single-flight of shared blobs, fan-out reading staging once,
//! idempotence, refused tag moves, missing and corrupt sources, Basic and bearer-token auth,
//! Docker config credentials (file and credential helper), dry runs and a YAML manifest end to
//! end.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use promoter::copy::{Action, CopyError, CopyOptions, Engine, UnitReport};
use promoter::plan::{self, Destination, Unit};
use promoter::reference::{Digest, Tag};
use promoter::registry::auth::docker_config::{Credential, DockerConfig};
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig, RegistryError};
use promoter_tests::harness::child::ChildTest;
use promoter_tests::harness::image::{self, IndexFormat, ManifestFormat, Platform, Pushed, Seeder};
use promoter_tests::harness::skopeo::list_tags;
use promoter_tests::harness::{RawClient, TestRegistry, digest_of, inspect_raw, try_inspect_raw};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `HOST/PATH` of a repository in a test registry.
fn repo(registry: &TestRegistry, path: &str) -> String {
    format!("{}/{path}", registry.host())
}

/// A unit copying `digest` from `source` (`HOST/PATH`) to each `(HOST/PATH, tags)`.
fn unit(source: &str, digest: &str, destinations: &[(String, &[&str])]) -> Unit {
    let digest: Digest = digest.parse().expect("a valid sha256 digest");
    let source = promoter_tests::repository(source);
    Unit {
        id: plan::unit_id(&source, &digest),
        source,
        digest,
        destinations: destinations
            .iter()
            .map(|(repository, tags)| Destination {
                repository: promoter_tests::repository(repository),
                tags: tags
                    .iter()
                    .map(|t| t.parse::<Tag>().expect("a valid tag"))
                    .collect::<Vec<_>>()
                    .into(),
            })
            .collect(),
        policies: Vec::new(),
    }
}

/// A client with explicit credentials by host (none: anonymous everywhere).
fn client_with(explicit: HashMap<String, Credential>) -> Arc<Client> {
    let sources = CredentialSources {
        explicit,
        ..CredentialSources::default()
    };
    Arc::new(Client::new(ClientConfig::default(), sources).expect("build the registry client"))
}

/// An anonymous client.
fn anonymous_client() -> Arc<Client> {
    client_with(HashMap::new())
}

/// Explicit Basic credentials for a test registry's host.
fn explicit_for(registry: &TestRegistry) -> HashMap<String, Credential> {
    let creds = registry.credentials().expect("a registry with credentials");
    HashMap::from([(
        registry.host(),
        Credential::Basic {
            username: creds.username.clone(),
            password: creds.password.clone(),
        },
    )])
}

/// An engine with the default parallelism.
fn engine(client: &Arc<Client>, dry_run: bool) -> Engine {
    Engine::new(
        Arc::clone(client),
        CopyOptions {
            dry_run,
            ..CopyOptions::default()
        },
    )
}

/// Panics with every failed report's error.
fn assert_all_succeeded(reports: &[UnitReport]) {
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("{}@{}: {e}", r.source, r.digest))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "units failed:\n{}",
        failures.join("\n")
    );
}

/// The `Content-Type` a registry serves a manifest with.
fn served_content_type(registry: &TestRegistry, repo: &str, digest: &str) -> String {
    let response = RawClient::for_registry(registry).get_manifest(repo, digest);
    assert_eq!(
        response.status,
        200,
        "GET {repo}@{digest} on {}",
        registry.host()
    );
    response
        .header("content-type")
        .expect("a Content-Type")
        .to_owned()
}

/// Checks that `prod` holds `pushed` (as staging holds it) in `repo`: the same bytes by digest
/// and by each tag, the same `Content-Type`, every blob with its digest, and every child of an
/// index by digest.
fn assert_copied(
    staging: &TestRegistry,
    pushed: &Pushed,
    prod: &TestRegistry,
    repo: &str,
    tags: &[&str],
) {
    let creds = prod.credentials();
    let staged = inspect_raw(staging, &pushed.repo, &pushed.digest, None);
    assert_eq!(staged, pushed.bytes, "staging serves what was seeded");
    let by_digest = inspect_raw(prod, repo, &pushed.digest, creds);
    assert_eq!(
        by_digest,
        staged,
        "{}/{repo}@{}: bytes differ from staging",
        prod.host(),
        pushed.digest
    );
    assert_eq!(digest_of(&by_digest), pushed.digest);
    for tag in tags {
        let by_tag = inspect_raw(prod, repo, tag, creds);
        assert_eq!(by_tag, staged, "{}/{repo}:{tag}: bytes differ", prod.host());
    }
    assert_eq!(
        served_content_type(prod, repo, &pushed.digest),
        served_content_type(staging, &pushed.repo, &pushed.digest),
        "{}/{repo}@{}: Content-Type differs from staging",
        prod.host(),
        pushed.digest
    );
    let raw = RawClient::for_registry(prod);
    for blob in &pushed.blobs {
        let response = raw.get_blob(repo, blob);
        assert_eq!(
            response.status,
            200,
            "{}/{repo} lacks blob {blob}",
            prod.host()
        );
        assert_eq!(digest_of(&response.body), *blob, "blob {blob} corrupted");
    }
    for child in &pushed.children {
        assert_copied(staging, child, prod, repo, &[]);
    }
}

/// HEAD of a blob in a repository: its status.
fn blob_status(registry: &TestRegistry, repo: &str, digest: &str) -> u16 {
    RawClient::for_registry(registry)
        .send(
            "HEAD",
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            &[],
            None,
        )
        .status
}

/// True when the action writes to a registry (anything but `Present`).
fn is_write(action: &Action) -> bool {
    !matches!(action, Action::Present { .. })
}

/// Every action of every report.
fn all_actions(reports: &[UnitReport]) -> Vec<&Action> {
    reports.iter().flat_map(|r| r.actions.iter()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1-2. Every manifest kind is copied exactly
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_platform_images_are_copied_byte_for_byte() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    let kinds = [
        ("oci", ManifestFormat::Oci),
        ("docker", ManifestFormat::Docker),
        ("oci-bare", ManifestFormat::OciWithoutMediaType),
    ];
    let mut pushed = Vec::new();
    let mut units = Vec::new();
    for (name, format) in kinds {
        let p = image::push_single(&staging, &format!("staging/{name}"), format, name, None);
        units.push(unit(
            &repo(&staging, &p.repo),
            &p.digest,
            &[
                (repo(&prod, &format!("us/{name}")), &["v1", "latest"]),
                (repo(&prod, &format!("eu/{name}")), &["v1"]),
            ],
        ));
        pushed.push((name, p));
    }
    let client = anonymous_client();
    let reports = engine(&client, false).promote(&units).await;
    assert_eq!(reports.len(), 3);
    assert_all_succeeded(&reports);
    for (report, unit) in reports.iter().zip(&units) {
        assert_eq!(report.id, unit.id, "reports come back in the units' order");
        assert_eq!(report.digest, unit.digest.as_str());
        // One manifest per destination, and each tag written.
        let manifests = report
            .actions
            .iter()
            .filter(|a| matches!(a, Action::PutManifest { .. }))
            .count();
        let tags = report
            .actions
            .iter()
            .filter(|a| matches!(a, Action::PutTag { .. }))
            .count();
        assert_eq!((manifests, tags), (2, 3), "{:?}", report.actions);
        assert!(!report.was_present());
    }
    for (name, p) in &pushed {
        assert_copied(&staging, p, &prod, &format!("us/{name}"), &["v1", "latest"]);
        assert_copied(&staging, p, &prod, &format!("eu/{name}"), &["v1"]);
    }
    // The bare OCI manifest (no mediaType field) keeps the OCI Content-Type.
    let (_, bare) = &pushed[2];
    assert_eq!(
        served_content_type(&prod, "eu/oci-bare", &bare.digest),
        image::OCI_MANIFEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_indexes_are_copied_with_their_children() {
    let staging = TestRegistry::start();
    let prod_a = TestRegistry::start();
    let prod_b = TestRegistry::start();
    let mut cases = Vec::new();
    for (name, format) in [
        ("index", IndexFormat::Oci),
        ("list", IndexFormat::DockerList),
    ] {
        let p = image::push_multi(&staging, &format!("staging/{name}"), format, name, None);
        assert_eq!(p.children.len(), 2);
        cases.push((name, p));
    }
    let units: Vec<Unit> = cases
        .iter()
        .map(|(name, p)| {
            unit(
                &repo(&staging, &p.repo),
                &p.digest,
                &[
                    (repo(&prod_a, &format!("mirror/{name}")), &["1.0"]),
                    (repo(&prod_b, &format!("mirror/{name}")), &["1.0", "stable"]),
                ],
            )
        })
        .collect();
    let client = anonymous_client();
    let reports = engine(&client, false).promote(&units).await;
    assert_all_succeeded(&reports);
    for (report, (name, p)) in reports.iter().zip(&cases) {
        // Children are written before the index, in every destination.
        for to in [
            repo(&prod_a, &format!("mirror/{name}")),
            repo(&prod_b, &format!("mirror/{name}")),
        ] {
            let position = |digest: &str| {
                report.actions.iter().position(|a| {
                    matches!(a, Action::PutManifest { digest: d, to: t } if d == digest && *t == to)
                })
            };
            let index_at = position(&p.digest).expect("the index was written");
            for child in &p.children {
                let child_at = position(&child.digest).expect("each child was written");
                assert!(child_at < index_at, "child after its index in {to}");
            }
        }
    }
    for (name, p) in &cases {
        let path = format!("mirror/{name}");
        assert_copied(&staging, p, &prod_a, &path, &["1.0"]);
        assert_copied(&staging, p, &prod_b, &path, &["1.0", "stable"]);
        // Children are present by digest only: the index is what is tagged.
        let tags = list_tags(&prod_b, &path, None).expect("list tags");
        let mut tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        assert_eq!(tags, ["1.0", "stable"]);
    }
}

// ---------------------------------------------------------------------------------------------
// 3-4. Blobs move once per registry; staging is read once
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_base_layer_is_uploaded_once_per_registry() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    let base = image::base_layer().digest;
    let mut pushed = Vec::new();
    let mut units = Vec::new();
    for i in 0..6 {
        let p = image::push_single(
            &staging,
            &format!("staging/app{i}"),
            ManifestFormat::Oci,
            &format!("shared-{i}"),
            Some("dev"),
        );
        assert_eq!(p.blobs[1], base, "every image starts with the base layer");
        let destinations: Vec<(String, &[&str])> = (0..3)
            .map(|r| (repo(&prod, &format!("region{r}/app{i}")), &["v1"][..]))
            .collect();
        units.push(unit(&repo(&staging, &p.repo), &p.digest, &destinations));
        pushed.push(p);
    }
    let client = anonymous_client();
    let reports = engine(&client, false).promote(&units).await;
    assert_all_succeeded(&reports);

    let actions = all_actions(&reports);
    let uploads_of = |digest: &str| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::CopyBlob { digest: d, .. } if d == digest))
            .count()
    };
    let mounts_of = |digest: &str| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::MountBlob { digest: d, .. } if d == digest))
            .count()
    };
    assert_eq!(
        uploads_of(&base),
        1,
        "the base layer is uploaded once for the host: {actions:#?}"
    );
    assert_eq!(
        mounts_of(&base),
        17,
        "and mounted into the 17 other repositories"
    );
    for p in &pushed {
        for blob in p.blobs.iter().filter(|b| **b != base) {
            assert_eq!(uploads_of(blob), 1, "{blob}: one upload");
            assert_eq!(mounts_of(blob), 2, "{blob}: two mounts");
        }
    }
    // Mounts come from the same host.
    for action in &actions {
        if let Action::MountBlob { from, to, .. } = action {
            assert_eq!(from.host(), prod.host(), "{from}");
            assert_eq!(to.host(), prod.host(), "{to}");
            assert_ne!(from, to);
        }
    }
    for (i, p) in pushed.iter().enumerate() {
        for r in 0..3 {
            assert_copied(&staging, p, &prod, &format!("region{r}/app{i}"), &["v1"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_three_registries_reads_staging_once() {
    let staging = TestRegistry::start();
    let prods = [
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    ];
    let big = image::image(
        ManifestFormat::Oci,
        Platform::linux("amd64"),
        vec![image::base_layer(), image::layer("fan-out", 8 << 20)],
        "fan-out",
    );
    let pushed = Seeder::new(&staging).push_image("staging/big", &big, None);
    let unique_bytes: u64 =
        (big.config.len() + big.layers.iter().map(|l| l.bytes.len()).sum::<usize>()) as u64;
    assert!(unique_bytes > 8 << 20);

    // Two repositories in each registry: the second gets its blobs by mount.
    let destinations: Vec<(String, &[&str])> = prods
        .iter()
        .flat_map(|p| {
            [
                (repo(p, "a/big"), &["v1"][..]),
                (repo(p, "b/big"), &["v1"][..]),
            ]
        })
        .collect();
    let units = [unit(
        &repo(&staging, "staging/big"),
        &pushed.digest,
        &destinations,
    )];
    let client = anonymous_client();
    let engine = engine(&client, false);
    let reports = engine.promote(&units).await;
    assert_all_succeeded(&reports);
    assert_eq!(
        engine.progress().bytes_read.load(Ordering::Relaxed),
        unique_bytes,
        "each blob is read from staging exactly once"
    );
    let uploads = reports[0]
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CopyBlob { .. }))
        .count();
    let mounts = reports[0]
        .actions
        .iter()
        .filter(|a| matches!(a, Action::MountBlob { .. }))
        .count();
    assert_eq!(
        (uploads, mounts),
        (9, 9),
        "3 blobs uploaded to each registry, mounted into its second repository"
    );
    for prod in &prods {
        assert_copied(&staging, &pushed, prod, "a/big", &["v1"]);
        assert_copied(&staging, &pushed, prod, "b/big", &["v1"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_on_the_staging_host_mounts_from_staging() {
    let registry = TestRegistry::start();
    let pushed = image::push_single(
        &registry,
        "staging/same",
        ManifestFormat::Docker,
        "same-host",
        None,
    );
    let units = [unit(
        &repo(&registry, "staging/same"),
        &pushed.digest,
        &[(repo(&registry, "prod/same"), &["v1"])],
    )];
    let client = anonymous_client();
    let engine = engine(&client, false);
    let reports = engine.promote(&units).await;
    assert_all_succeeded(&reports);
    assert_eq!(
        engine.progress().bytes_read.load(Ordering::Relaxed),
        0,
        "nothing is streamed"
    );
    for action in &reports[0].actions {
        assert!(
            !matches!(action, Action::CopyBlob { .. }),
            "uploaded instead of mounting: {action:?}"
        );
    }
    let mounts: Vec<&Action> = reports[0]
        .actions
        .iter()
        .filter(|a| matches!(a, Action::MountBlob { .. }))
        .collect();
    assert_eq!(mounts.len(), pushed.blobs.len());
    for mount in mounts {
        let Action::MountBlob { from, .. } = mount else {
            unreachable!("filtered")
        };
        assert_eq!(*from, repo(&registry, "staging/same"));
    }
    assert_copied(&registry, &pushed, &registry, "prod/same", &["v1"]);
}

// ---------------------------------------------------------------------------------------------
// 5. Idempotence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_finds_everything_present() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    let single = image::push_single(
        &staging,
        "staging/one",
        ManifestFormat::Docker,
        "again",
        None,
    );
    let multi = image::push_multi(&staging, "staging/multi", IndexFormat::Oci, "again", None);
    let units = vec![
        unit(
            &repo(&staging, "staging/one"),
            &single.digest,
            &[
                (repo(&prod, "x/one"), &["v1", "latest"]),
                (repo(&prod, "y/one"), &["v1"]),
            ],
        ),
        unit(
            &repo(&staging, "staging/multi"),
            &multi.digest,
            &[
                (repo(&prod, "x/multi"), &["2.0"]),
                (repo(&prod, "y/multi"), &[]),
            ],
        ),
    ];
    let first_client = anonymous_client();
    let first = engine(&first_client, false).promote(&units).await;
    assert_all_succeeded(&first);
    let first_requests = first_client.counts.total.load(Ordering::Relaxed);

    let second_client = anonymous_client();
    let second_engine = engine(&second_client, false);
    let second = second_engine.promote(&units).await;
    assert_all_succeeded(&second);
    for report in &second {
        assert!(report.was_present(), "{:?}", report.actions);
        assert!(!report.actions.iter().any(is_write), "{:?}", report.actions);
        assert_eq!(report.actions.len(), 2, "one Present per destination");
    }
    let second_requests = second_client.counts.total.load(Ordering::Relaxed);
    // At most one HEAD of the digest and one per tag, in each destination; plus finding the
    // digest's artifacts in staging: one tag listing per source repository and, until the
    // staging host says it has no referrers API, one referrers query per unit.
    let heads: u64 = units
        .iter()
        .flat_map(|u| &u.destinations)
        .map(|d| 1 + d.tags.len() as u64)
        .sum();
    let sources: std::collections::HashSet<&str> =
        units.iter().map(|u| u.source.as_str()).collect();
    let discovery = sources.len() as u64 + units.len() as u64;
    assert!(
        second_requests <= heads + discovery,
        "{second_requests} requests on a second run, more than {heads} HEADs + {discovery}"
    );
    assert!(
        second_requests * 4 <= first_requests,
        "second run: {second_requests} requests, first: {first_requests}"
    );
    assert_eq!(
        second_engine.progress().bytes_read.load(Ordering::Relaxed),
        0
    );

    // A new tag on a promoted digest: only the tag is written.
    let retag = [unit(
        &repo(&staging, "staging/one"),
        &single.digest,
        &[(repo(&prod, "y/one"), &["v1", "v1.0.1"])],
    )];
    let third = engine(&anonymous_client(), false).promote(&retag).await;
    assert_all_succeeded(&third);
    assert_eq!(
        third[0].actions,
        [
            Action::Present {
                at: promoter_tests::repository(&repo(&prod, "y/one"))
            },
            Action::PutTag {
                tag: "v1.0.1".parse().expect("a tag"),
                to: promoter_tests::repository(&repo(&prod, "y/one"))
            }
        ]
    );
    assert_copied(&staging, &single, &prod, "y/one", &["v1", "v1.0.1"]);
    assert_copied(&staging, &single, &prod, "x/one", &["v1", "latest"]);
    assert_copied(&staging, &multi, &prod, "x/multi", &["2.0"]);
    assert_copied(&staging, &multi, &prod, "y/multi", &[]);
}

// ---------------------------------------------------------------------------------------------
// 6-8. Failures stay contained
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_move_is_refused_and_other_units_proceed() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    // Production already has `app:v1` on another image.
    let existing = image::push_single(&prod, "app", ManifestFormat::Oci, "old", Some("v1"));
    let wanted = image::push_single(&staging, "staging/app", ManifestFormat::Oci, "new", None);
    let other = image::push_single(&staging, "staging/app", ManifestFormat::Oci, "ok", None);
    assert_ne!(existing.digest, wanted.digest);
    let units = [
        unit(
            &repo(&staging, "staging/app"),
            &wanted.digest,
            // A clean destination too: the whole unit is refused, nothing goes anywhere.
            &[
                (repo(&prod, "app"), &["v1"]),
                (repo(&prod, "clean/app"), &["v1"]),
            ],
        ),
        unit(
            &repo(&staging, "staging/app"),
            &other.digest,
            &[(repo(&prod, "app"), &["v2"])],
        ),
    ];
    let client = anonymous_client();
    let reports = engine(&client, false).promote(&units).await;

    match &reports[0].error {
        Some(
            error @ CopyError::TagMove {
                repository,
                tag,
                current,
                wanted: asked,
            },
        ) => {
            assert_eq!(*repository, repo(&prod, "app"));
            assert_eq!(tag, "v1");
            assert_eq!(*current, existing.digest);
            assert_eq!(*asked, wanted.digest);
            let message = error.to_string();
            assert!(
                message.contains(&existing.digest) && message.contains(&wanted.digest),
                "{message}"
            );
            assert!(!error.is_retryable());
        }
        other => panic!("expected a tag move, got {other:?}"),
    }
    assert!(
        !reports[0].actions.iter().any(is_write),
        "{:?}",
        reports[0].actions
    );
    assert_all_succeeded(&reports[1..]);

    assert_eq!(
        inspect_raw(&prod, "app", "v1", None),
        existing.bytes,
        "the tag did not move"
    );
    for path in ["app", "clean/app"] {
        assert!(
            try_inspect_raw(&prod, path, &wanted.digest, None).is_err(),
            "{path}: the refused digest was copied"
        );
    }
    assert!(try_inspect_raw(&prod, "clean/app", "v1", None).is_err());
    assert_copied(&staging, &other, &prod, "app", &["v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_digest_fails_only_its_unit() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    let present = image::push_single(&staging, "staging/m", ManifestFormat::Oci, "here", None);
    let absent = image::single(ManifestFormat::Oci, "never-pushed").digest;
    let units = [
        unit(
            &repo(&staging, "staging/m"),
            &absent,
            &[(repo(&prod, "m"), &["gone"])],
        ),
        unit(
            &repo(&staging, "staging/m"),
            &present.digest,
            &[(repo(&prod, "m"), &["here"])],
        ),
    ];
    let reports = engine(&anonymous_client(), false).promote(&units).await;
    match &reports[0].error {
        Some(CopyError::SourceMissing { repository, digest }) => {
            assert_eq!(*repository, repo(&staging, "staging/m"));
            assert_eq!(*digest, absent);
        }
        other => panic!("expected SourceMissing, got {other:?}"),
    }
    assert!(!reports[0].actions.iter().any(is_write));
    assert_all_succeeded(&reports[1..]);
    assert!(try_inspect_raw(&prod, "m", &absent, None).is_err());
    assert!(try_inspect_raw(&prod, "m", "gone", None).is_err());
    assert_copied(&staging, &present, &prod, "m", &["here"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_staging_blob_is_never_committed() {
    let staging = TestRegistry::start();
    let prod_a = TestRegistry::start();
    let prod_b = TestRegistry::start();
    // A multi-chunk layer, so that the upload has started when the mismatch is found.
    let bad = image::image(
        ManifestFormat::Oci,
        Platform::linux("amd64"),
        vec![image::base_layer(), image::layer("corrupt-me", 1 << 20)],
        "corrupt",
    );
    let seeder = Seeder::new(&staging);
    let pushed = seeder.push_image("staging/c", &bad, None);
    let good = image::push_single(&staging, "staging/c", ManifestFormat::Oci, "fine", None);
    let layer = bad.layers[1].digest.clone();
    let path = staging.blob_path(&layer);
    let mut bytes = std::fs::read(&path).expect("the layer on disk");
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt the layer");

    let destinations = [
        (repo(&prod_a, "c"), &["v1"][..]),
        (repo(&prod_b, "c"), &["v1"][..]),
    ];
    let units = [
        unit(&repo(&staging, "staging/c"), &pushed.digest, &destinations),
        unit(
            &repo(&staging, "staging/c"),
            &good.digest,
            &[(repo(&prod_a, "c"), &["v2"])],
        ),
    ];
    let reports = engine(&anonymous_client(), false).promote(&units).await;
    match &reports[0].error {
        Some(error @ CopyError::BlobDigestMismatch { expected, actual }) => {
            assert_eq!(*expected, layer);
            assert_eq!(*actual, digest_of(&bytes));
            assert!(!error.is_retryable());
        }
        other => panic!("expected BlobDigestMismatch, got {other:?}"),
    }
    assert!(
        !reports[0]
            .actions
            .iter()
            .any(|a| matches!(a, Action::PutManifest { .. } | Action::PutTag { .. })),
        "{:?}",
        reports[0].actions
    );
    assert_all_succeeded(&reports[1..]);
    for prod in [&prod_a, &prod_b] {
        assert_eq!(
            blob_status(prod, "c", &layer),
            404,
            "the corrupt blob landed"
        );
        assert!(try_inspect_raw(prod, "c", &pushed.digest, None).is_err());
        assert!(try_inspect_raw(prod, "c", "v1", None).is_err());
    }
    assert_copied(&staging, &good, &prod_a, "c", &["v2"]);
}

// ---------------------------------------------------------------------------------------------
// 9-10. Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_production_with_explicit_credentials() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::with_htpasswd("promoter", "s3cret");
    let pushed = image::push_multi(
        &staging,
        "staging/b",
        IndexFormat::DockerList,
        "basic",
        None,
    );
    let units = [unit(
        &repo(&staging, "staging/b"),
        &pushed.digest,
        &[
            (repo(&prod, "b"), &["v1"]),
            (repo(&prod, "mirror/b"), &["v1"]),
        ],
    )];
    let client = client_with(explicit_for(&prod));
    let reports = engine(&client, false).promote(&units).await;
    assert_all_succeeded(&reports);
    assert_eq!(client.auth().token_requests(), 0, "Basic needs no token");
    assert_copied(&staging, &pushed, &prod, "b", &["v1"]);
    assert_copied(&staging, &pushed, &prod, "mirror/b", &["v1"]);
    assert!(
        try_inspect_raw(&prod, "b", "v1", None).is_err(),
        "auth enforced"
    );
}

/// Promotes two units into two repositories of a token-auth registry; returns the client,
/// the reports and the registry's token requests right after the promotion.
async fn promote_to_token_registry(
    staging: &TestRegistry,
    prod: &TestRegistry,
) -> (Arc<Client>, Vec<UnitReport>, Vec<Pushed>) {
    let single = image::push_single(staging, "staging/t", ManifestFormat::Oci, "token", None);
    let multi = image::push_multi(staging, "staging/t", IndexFormat::Oci, "token", None);
    let destinations = [
        (repo(prod, "t"), &["v1"][..]),
        (repo(prod, "mirror/t"), &["v1"][..]),
    ];
    let other = [
        (repo(prod, "t"), &["multi"][..]),
        (repo(prod, "mirror/t"), &["multi"][..]),
    ];
    let units = [
        unit(&repo(staging, "staging/t"), &single.digest, &destinations),
        unit(&repo(staging, "staging/t"), &multi.digest, &other),
    ];
    let client = client_with(explicit_for(prod));
    let reports = engine(&client, false).promote(&units).await;
    (client, reports, vec![single, multi])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_production_caches_tokens() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::with_token_auth();
    let (client, reports, pushed) = promote_to_token_registry(&staging, &prod).await;
    assert_all_succeeded(&reports);
    let tokens = prod.token_requests();
    let requests = client.counts.total.load(Ordering::Relaxed);
    assert_eq!(
        client.auth().token_requests(),
        tokens as u64,
        "the client's count matches the issuer's"
    );
    assert!(tokens > 0, "a token registry needs tokens");
    assert!(
        (tokens as u64) * 4 <= requests,
        "tokens are reused: {tokens} token requests for {requests} registry requests"
    );
    assert_copied(&staging, &pushed[0], &prod, "t", &["v1"]);
    assert_copied(&staging, &pushed[0], &prod, "mirror/t", &["v1"]);
    assert_copied(&staging, &pushed[1], &prod, "t", &["multi"]);
    assert_copied(&staging, &pushed[1], &prod, "mirror/t", &["multi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_fetches_one_token_per_scope() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::with_token_auth();
    let (client, reports, _) = promote_to_token_registry(&staging, &prod).await;
    assert_all_succeeded(&reports);
    // Scopes the promoter may need in repositories t and mirror/t: pull, pull+push, and
    // pull+push with pull on the other one (a cross-repository mount), each.
    let distinct_scopes = 6;
    let tokens = client.auth().token_requests();
    assert!(
        tokens <= distinct_scopes,
        "{tokens} token requests for at most {distinct_scopes} distinct scopes: {:?}",
        prod.token_issuer().map(|i| i.scopes())
    );
}

/// Promotes one image to `prod` with `credentials`, expecting an auth error that names the
/// host and mentions credentials; production must stay without the image.
async fn assert_auth_refused(
    staging: &TestRegistry,
    pushed: &Pushed,
    prod: &TestRegistry,
    credentials: HashMap<String, Credential>,
) {
    let units = [unit(
        &repo(staging, &pushed.repo),
        &pushed.digest,
        &[(repo(prod, "n"), &["v1"])],
    )];
    let reports = engine(&client_with(credentials), false)
        .promote(&units)
        .await;
    match &reports[0].error {
        Some(error @ CopyError::Registry(RegistryError::Auth { host, reason })) => {
            assert_eq!(*host, prod.host());
            assert!(reason.contains("credentials"), "{reason}");
            let message = error.to_string();
            assert!(message.contains(&prod.host()), "{message}");
            assert!(!error.is_retryable());
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(!reports[0].actions.iter().any(is_write));
    assert!(try_inspect_raw(prod, "n", &pushed.digest, prod.credentials()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_fail_with_a_clear_auth_error() {
    let staging = TestRegistry::start();
    let pushed = image::push_single(&staging, "staging/n", ManifestFormat::Oci, "nocreds", None);
    let basic = TestRegistry::with_htpasswd("promoter", "s3cret");
    let token = TestRegistry::with_token_auth();
    // No credentials at all: Basic, then bearer (the token endpoint refuses anonymous).
    assert_auth_refused(&staging, &pushed, &basic, HashMap::new()).await;
    assert_auth_refused(&staging, &pushed, &token, HashMap::new()).await;
    // Wrong password.
    let wrong = HashMap::from([(
        basic.host(),
        Credential::Basic {
            username: "promoter".to_owned(),
            password: "wrong".to_owned(),
        },
    )]);
    assert_auth_refused(&staging, &pushed, &basic, wrong).await;
}

/// A Docker `config.json` with `auth` entries (base64 `user:password`) for each registry.
fn write_docker_config(dir: &Path, registries: &[&TestRegistry]) -> std::path::PathBuf {
    let auths: serde_json::Map<String, serde_json::Value> = registries
        .iter()
        .map(|r| {
            let c = r.credentials().expect("credentials");
            let auth = base64::engine::general_purpose::STANDARD.encode(c.colon_pair());
            // Keys are matched by host, whatever their form (docker writes URLs too).
            let key = if r.token_issuer().is_some() {
                format!("http://{}/v2/", r.host())
            } else {
                r.host()
            };
            (key, serde_json::json!({ "auth": auth }))
        })
        .collect();
    let path = dir.join("config.json");
    let json = serde_json::json!({ "auths": auths });
    std::fs::write(&path, json.to_string()).expect("write config.json");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_auths_are_used() {
    let staging = TestRegistry::start();
    let basic = TestRegistry::with_htpasswd("cfg-user", "cfg-pass");
    let token = TestRegistry::with_token_auth();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = write_docker_config(dir.path(), &[&basic, &token]);
    let docker = DockerConfig::from_path(&config).expect("read config.json");
    let client = Arc::new(
        Client::new(
            ClientConfig::default(),
            CredentialSources {
                docker: Some(docker),
                ..CredentialSources::default()
            },
        )
        .expect("build the client"),
    );
    let pushed = image::push_single(&staging, "staging/d", ManifestFormat::Docker, "cfg", None);
    let units = [unit(
        &repo(&staging, "staging/d"),
        &pushed.digest,
        &[(repo(&basic, "d"), &["v1"]), (repo(&token, "d"), &["v1"])],
    )];
    let reports = engine(&client, false).promote(&units).await;
    assert_all_succeeded(&reports);
    assert!(token.token_requests() > 0);
    assert_copied(&staging, &pushed, &basic, "d", &["v1"]);
    assert_copied(&staging, &pushed, &token, "d", &["v1"]);
}

/// Set in the child process of [`docker_credential_helper_is_run`].
const HELPER_CHILD: &str = "PROMOTER_TEST_HELPER_CHILD";
/// Where the helper logs its calls.
const HELPER_LOG: &str = "PROMOTER_TEST_HELPER_LOG";
const HELPER_USER: &str = "helper-user";
const HELPER_PASSWORD: &str = "helper-pass";

/// A credential helper on `PATH`. `PATH` is process-wide and may not be changed safely while
/// other tests run (and `unsafe` is forbidden), so the test runs itself again in a child
/// process whose `PATH` starts with the helper's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_credential_helper_is_run() {
    if std::env::var_os(HELPER_CHILD).is_some() {
        return credential_helper_scenario().await;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let script = dir.path().join("docker-credential-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nread -r server\nprintf '%s %s\\n' \"$1\" \"$server\" >> \"${HELPER_LOG}\"\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{HELPER_USER}\",\"Secret\":\"{HELPER_PASSWORD}\"}}\\n' \"$server\"\n"
        ),
    )
    .expect("write the helper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("make the helper executable");
    let log = dir.path().join("helper.log");
    let path = std::env::join_paths(std::iter::once(dir.path().to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    ChildTest::new(module_path!(), "docker_credential_helper_is_run")
        .env("PATH", path)
        .env(HELPER_CHILD, "1")
        .env(HELPER_LOG, &log)
        .run()
        .assert_one_passed();
    let calls = std::fs::read_to_string(&log).expect("the helper was run");
    assert_eq!(calls.lines().count(), 1, "asked once, then cached: {calls}");
    assert!(calls.starts_with("get 127.0.0.1:"), "{calls}");
}

/// The child's part: promote to a Basic-auth registry whose credentials only the helper has.
async fn credential_helper_scenario() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::with_htpasswd(HELPER_USER, HELPER_PASSWORD);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir.path().join("config.json");
    let json = serde_json::json!({ "credHelpers": { prod.host(): "test" } });
    std::fs::write(&config, json.to_string()).expect("write config.json");
    let docker = DockerConfig::from_path(&config).expect("read config.json");
    let client = Arc::new(
        Client::new(
            ClientConfig::default(),
            CredentialSources {
                docker: Some(docker),
                ..CredentialSources::default()
            },
        )
        .expect("build the client"),
    );
    let pushed = image::push_single(&staging, "staging/h", ManifestFormat::Oci, "helper", None);
    let units = [unit(
        &repo(&staging, "staging/h"),
        &pushed.digest,
        &[(repo(&prod, "h"), &["v1"]), (repo(&prod, "h2"), &["v1"])],
    )];
    let reports = engine(&client, false).promote(&units).await;
    assert_all_succeeded(&reports);
    assert_copied(&staging, &pushed, &prod, "h", &["v1"]);
    assert_copied(&staging, &pushed, &prod, "h2", &["v1"]);
    let log = std::env::var_os(HELPER_LOG).expect("the helper log's path");
    let calls = std::fs::read_to_string(log).expect("the helper log");
    assert_eq!(calls.trim(), format!("get {}", prod.host()));
}

// ---------------------------------------------------------------------------------------------
// 11. Dry run
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_and_writes_nothing() {
    let staging = TestRegistry::start();
    let prod = TestRegistry::start();
    let single = image::push_single(&staging, "staging/dry", ManifestFormat::Oci, "dry", None);
    let multi = image::push_multi(
        &staging,
        "staging/dry",
        IndexFormat::DockerList,
        "dry",
        None,
    );
    let units = [
        unit(
            &repo(&staging, "staging/dry"),
            &single.digest,
            &[
                (repo(&prod, "dry"), &["v1"]),
                (repo(&prod, "dry2"), &["v1"]),
            ],
        ),
        unit(
            &repo(&staging, "staging/dry"),
            &multi.digest,
            &[(repo(&prod, "dry"), &["multi"])],
        ),
    ];
    let client = anonymous_client();
    let engine = engine(&client, true);
    let reports = engine.promote(&units).await;
    assert_all_succeeded(&reports);
    // The two images share their blobs (same seed): whichever unit goes first would upload
    // them, the other mounts them. Every blob is copied once per registry in all.
    let all: Vec<&Action> = reports.iter().flat_map(|r| &r.actions).collect();
    assert!(
        all.iter().any(|a| matches!(a, Action::CopyBlob { .. })),
        "{all:?}"
    );
    let mut copied: Vec<&str> = all
        .iter()
        .filter_map(|a| match a {
            Action::CopyBlob { digest, .. } => Some(digest.as_str()),
            _ => None,
        })
        .collect();
    let count = copied.len();
    copied.sort_unstable();
    copied.dedup();
    assert_eq!(
        copied.len(),
        count,
        "a blob copied twice into one registry: {all:?}"
    );
    // Nothing mounts a blob into the repository it would come from.
    assert!(
        !all.iter()
            .any(|a| matches!(a, Action::MountBlob { to, from, .. } if to == from)),
        "{all:?}"
    );
    for report in &reports {
        let has = |f: fn(&Action) -> bool| report.actions.iter().any(f);
        assert!(has(|a| matches!(a, Action::PutManifest { .. })));
        assert!(has(|a| matches!(a, Action::PutTag { .. })));
        assert!(!report.was_present());
    }
    // The index: two children and the index itself.
    let manifests = reports[1]
        .actions
        .iter()
        .filter(|a| matches!(a, Action::PutManifest { .. }))
        .count();
    assert_eq!(manifests, 3);
    assert_eq!(engine.progress().bytes_read.load(Ordering::Relaxed), 0);

    for (path, reference) in [
        ("dry", single.digest.as_str()),
        ("dry", "v1"),
        ("dry2", "v1"),
        ("dry", multi.digest.as_str()),
        ("dry", "multi"),
    ] {
        assert!(
            try_inspect_raw(&prod, path, reference, None).is_err(),
            "{path}:{reference} written by a dry run"
        );
    }
    assert!(list_tags(&prod, "dry", None).map_or(true, |t| t.is_empty()));
    for blob in single.all_blobs().iter().chain(&multi.all_blobs()) {
        assert_eq!(blob_status(&prod, "dry", blob), 404, "{blob}");
    }
    let catalog = RawClient::for_registry(&prod).send("GET", "/v2/_catalog", "", &[], None);
    let catalog: serde_json::Value = serde_json::from_slice(&catalog.body).expect("catalog JSON");
    assert_eq!(
        catalog["repositories"].as_array().map_or(0, Vec::len),
        0,
        "{catalog}"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end from a YAML manifest
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_manifest_is_promoted_end_to_end() {
    let staging = TestRegistry::start();
    let prod_a = TestRegistry::start();
    let prod_b = TestRegistry::start();
    let single = image::push_single(&staging, "team/web", ManifestFormat::Oci, "yaml", None);
    let multi = image::push_multi(&staging, "team/api", IndexFormat::Oci, "yaml", None);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let manifest = dir.path().join("promoter-manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "registries:\n\
             - name: {staging}/team\n  src: true\n\
             - name: {a}/prod\n\
             - name: {b}/mirror/prod\n\
             images:\n\
             - name: web\n  dmap:\n    \"{web}\": [\"1.0\", \"latest\"]\n\
             - name: api\n  dmap:\n    \"{api}\": [\"2.0\"]\n",
            staging = staging.host(),
            a = prod_a.host(),
            b = prod_b.host(),
            web = single.digest,
            api = multi.digest,
        ),
    )
    .expect("write the manifest");
    let loaded = promoter::manifest::load(&[manifest]).expect("load the manifest");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units.len(), 2);
    let reports = engine(&anonymous_client(), false)
        .promote(&plan.units)
        .await;
    assert_all_succeeded(&reports);
    for (prod, prefix) in [(&prod_a, "prod"), (&prod_b, "mirror/prod")] {
        assert_copied(
            &staging,
            &single,
            prod,
            &format!("{prefix}/web"),
            &["1.0", "latest"],
        );
        assert_copied(&staging, &multi, prod, &format!("{prefix}/api"), &["2.0"]);
    }
}
