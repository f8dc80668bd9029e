//! `promoter snapshot` against a real registry (CNCF distribution): repositories found through
//! the catalog, tags resolved, an index's untagged children left out (and listed with `all`),
//! a digest pushed without a tag invisible (distribution cannot list it), signature tags left
//! out; then round-tripped: snapshot → plain manifest → plan onto an empty mirror → copy →
//! snapshot of the mirror, identical.

use std::sync::Arc;

use promoter::copy::{CopyOptions, Engine};
use promoter::manifest;
use promoter::plan;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::snapshot::{self, Options, SnapshotImage};
use promoter_tests::harness::TestRegistry;
use promoter_tests::harness::image::{self, IndexFormat, ManifestFormat, Seeder};
use promoter_tests::harness::lambda::built_binary;

fn client() -> Client {
    Client::new(ClientConfig::default(), CredentialSources::default()).expect("a client")
}

fn tags(image: &SnapshotImage, digest: &str) -> Option<Vec<String>> {
    let digest = promoter_tests::digest(digest);
    image
        .digests
        .get(&digest)
        .map(|t| t.iter().map(ToString::to_string).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_lists_a_real_registry_and_round_trips_through_a_promotion() {
    let staging = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let app = seeder.push_image(
        "team/app",
        &image::single(ManifestFormat::Oci, "app-1"),
        Some("v1"),
    );
    seeder.push_manifest("team/app", "latest", &app.media_type, &app.bytes);
    let app2 = seeder.push_image(
        "team/app",
        &image::single(ManifestFormat::Docker, "app-2"),
        Some("1.0"),
    );
    let untagged = seeder.push_image(
        "team/app",
        &image::single(ManifestFormat::Oci, "untagged"),
        None,
    );
    let multi = seeder.push_index(
        "team/tools/multi",
        &image::multi_platform(IndexFormat::Oci, "multi"),
        Some("v2"),
    );
    // A cosign signature tag: not an image to promote.
    seeder.push_manifest(
        "team/app",
        &format!("{}.sig", app.digest.replace(':', "-")),
        &app2.media_type,
        &app2.bytes,
    );
    // Outside the prefix.
    seeder.push_image(
        "other/thing",
        &image::single(ManifestFormat::Oci, "other"),
        Some("v1"),
    );

    let client = client();
    let prefix = promoter_tests::repository(&format!("{}/team", staging.host()));
    let images = snapshot::snapshot(&client, &prefix, Options::default())
        .await
        .expect("a snapshot");
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["app", "tools/multi"]);
    let app_image = &images[0];
    assert_eq!(
        tags(app_image, &app.digest),
        Some(vec!["latest".into(), "v1".into()])
    );
    assert_eq!(tags(app_image, &app2.digest), Some(vec!["1.0".into()]));
    assert_eq!(
        tags(app_image, &untagged.digest),
        None,
        "distribution cannot list it"
    );
    assert_eq!(
        app_image.digests.len(),
        2,
        "no signature image: {app_image:?}"
    );
    let multi_image = &images[1];
    assert_eq!(
        multi_image.digests.len(),
        1,
        "the index only: {multi_image:?}"
    );
    assert_eq!(tags(multi_image, &multi.digest), Some(vec!["v2".into()]));

    // With `all`: the index's children (untagged) and the signature tag too.
    let everything = snapshot::snapshot(&client, &prefix, Options { all: true })
        .await
        .expect("a snapshot");
    assert_eq!(everything[1].digests.len(), 1 + multi.children.len());
    for child in &multi.children {
        assert_eq!(tags(&everything[1], &child.digest), Some(vec![]));
    }
    assert_eq!(everything[0].digests.len(), 2);
    assert!(
        tags(&everything[0], &app2.digest).is_some_and(|t| t.iter().any(|t| t.ends_with(".sig"))),
        "{:?}",
        everything[0]
    );

    // The CLI prints the same, in both formats.
    let yaml = snapshot::images_yaml(&images);
    let cli = |output: &str| {
        let run = std::process::Command::new(built_binary("promoter"))
            .args(["snapshot", prefix.as_str(), "--output", output])
            .output()
            .expect("run promoter snapshot");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        String::from_utf8(run.stdout).expect("UTF-8")
    };
    assert_eq!(cli("yaml"), yaml);
    let csv = cli("csv");
    assert!(csv.starts_with("image,digest,tag\n"), "{csv}");
    assert!(
        csv.contains(&format!("tools/multi,{},v2\n", multi.digest)),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");

    // Round trip: the snapshot as a manifest, promoted onto an empty mirror.
    let mirror = TestRegistry::start();
    let dir = tempfile::tempdir().expect("a folder");
    let manifest_path = dir.path().join("promoter-manifest.yaml");
    let indented: String = yaml.lines().map(|l| format!("{l}\n")).collect();
    std::fs::write(
        &manifest_path,
        format!(
            "registries:\n- name: {}/team\n  src: true\n- name: {}/copy\nimages:\n{indented}",
            staging.host(),
            mirror.host()
        ),
    )
    .expect("write the manifest");
    let loaded = manifest::load(&[manifest_path]).expect("readable");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units.len(), 3);
    let engine = Engine::new(Arc::new(client), CopyOptions::default());
    for unit in &plan.units {
        let report = engine.copy_unit(unit).await;
        assert!(report.succeeded(), "{:?}", report.error);
    }
    let mirror_prefix = promoter_tests::repository(&format!("{}/copy", mirror.host()));
    let copied = snapshot::snapshot(&self::client(), &mirror_prefix, Options::default())
        .await
        .expect("a snapshot of the mirror");
    assert_eq!(snapshot::images_yaml(&copied), yaml);
}

/// A registry answering `tags/list` as Google's do (GCR, Artifact Registry): `child` names the
/// repositories below, `manifest` lists every digest with its tags and media type, untagged
/// ones too. One request per repository, no catalog, no HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_googles_listing_extension() {
    use promoter_tests::harness::fake_registry::{Fake, Reply};
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let (child, sig, loose) = (d('b'), d('c'), d('e'));
    let page = |json: String| Reply::status(200).body(json.as_bytes());
    let index_json = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":1}}]}}"#
    );
    let index = image::sha256_digest(index_json.as_bytes());
    let (index_for_fake, child_c, index_c, sig_c, loose_c) = (
        index_json.clone(),
        child.clone(),
        index.clone(),
        sig.clone(),
        loose.clone(),
    );
    let fake = Fake::start(move |seen, _| {
        let path = seen.url.split('?').next().unwrap_or_default();
        match path {
            "/v2/k8s-artifacts-prod/tags/list" => page(
                r#"{"child":["images"],"manifest":{},"name":"k8s-artifacts-prod","tags":[]}"#
                    .into(),
            ),
            "/v2/k8s-artifacts-prod/images/tags/list" => page(
                r#"{"child":["pause"],"manifest":{},"name":"k8s-artifacts-prod/images","tags":[]}"#
                    .into(),
            ),
            "/v2/k8s-artifacts-prod/images/pause/tags/list" => page(format!(
                r#"{{"child":[],"manifest":{{
                    "{index_c}":{{"mediaType":"application/vnd.oci.image.index.v1+json","tag":["3.10","latest"]}},
                    "{child_c}":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":[]}},
                    "{sig_c}":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":["{}.sig"]}},
                    "{loose_c}":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":[]}}
                }},"name":"k8s-artifacts-prod/images/pause","tags":["3.10","latest"]}}"#,
                index_c.replace(':', "-")
            )),
            p if p.starts_with("/v2/k8s-artifacts-prod/images/pause/manifests/") => {
                Reply::status(200)
                    .header("Content-Type", "application/vnd.oci.image.index.v1+json")
                    .body(index_for_fake.as_bytes())
            }
            _ => Reply::status(404),
        }
    });
    let prefix = promoter_tests::repository(&format!("{}/k8s-artifacts-prod", fake.host()));
    let images = snapshot::snapshot(&client(), &prefix, Options::default())
        .await
        .expect("a snapshot");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].name, "images/pause");
    assert_eq!(
        tags(&images[0], &index),
        Some(vec!["3.10".into(), "latest".into()])
    );
    assert_eq!(
        tags(&images[0], &loose),
        Some(vec![]),
        "an untagged digest Google lists"
    );
    assert_eq!(tags(&images[0], &child), None, "an index child");
    assert_eq!(tags(&images[0], &sig), None, "a signature image");
    let seen = fake.seen();
    assert!(seen.iter().all(|s| !s.url.contains("_catalog")), "{seen:?}");
    assert!(seen.iter().all(|s| s.method != "HEAD"), "{seen:?}");
    let listings = seen.iter().filter(|s| s.url.contains("/tags/list")).count();
    assert_eq!(listings, 3, "each repository listed once: {seen:?}");
}
