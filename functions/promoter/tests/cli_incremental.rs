//! Incremental runs (`desired − promoted`), as a user sees them with `promoter promote` and
//! local state, against real registries (CNCF distribution): a manifest change costs what it
//! changes. One digest added to a promoted set copies one unit, in a number of registry
//! requests that does not grow with the set; a retag writes only tags; a new mirror gets every
//! digest while the others are not read; a unit that failed (its source missing) is retried by
//! the next change; `--full` observes everything again.

use std::path::Path;
use std::process::{Command, Output};

use promoter_tests::harness::http::RawClient;
use promoter_tests::harness::image::{self, ManifestFormat, Seeder};
use promoter_tests::harness::registry::TestRegistry;

/// Images promoted before the one-digest change.
const PROMOTED: usize = 12;

fn promote(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .arg("promote")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the promoter binary")
}

fn summary(output: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["summary"].clone()
}

/// `release.key` and `release.pub` in `dir`, by `promoter keys generate`.
fn generate_key(dir: &Path) {
    let keys = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["keys", "generate", "release"])
        .current_dir(dir)
        .output()
        .expect("generate a key");
    assert_eq!(keys.status.code(), Some(0));
}

fn count(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{field}` in {summary}"))
}

/// A manifest promoting `images` (name, digest, tags) from `staging` to `mirrors`.
fn manifest(
    staging: &TestRegistry,
    mirrors: &[String],
    images: &[(String, String, Vec<&str>)],
) -> String {
    let mut text = format!(
        "registries:\n- name: {}/staging\n  src: true\n",
        staging.host()
    );
    for mirror in mirrors {
        text.push_str(&format!("- name: {mirror}\n"));
    }
    text.push_str("images:\n");
    for (name, digest, tags) in images {
        let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
        text.push_str(&format!(
            "- name: {name}\n  dmap:\n    \"{digest}\": [{}]\n",
            tags.join(", ")
        ));
    }
    text
}

#[test]
fn a_change_costs_what_it_changes() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let mut images: Vec<(String, String, Vec<&str>)> = (0..PROMOTED)
        .map(|i| {
            let name = format!("img-{i}");
            let image = image::single(ManifestFormat::Oci, &format!("incremental-{i}"));
            seeder.push_image(&format!("staging/{name}"), &image, None);
            (name, image.digest, vec!["v1"])
        })
        .collect();
    let mut mirrors = vec![
        format!("{}/us", production.host()),
        format!("{}/eu", production.host()),
    ];
    let dir = tempfile::tempdir().expect("a folder");
    let write = |images: &[(String, String, Vec<&str>)], mirrors: &[String]| {
        std::fs::write(
            dir.path().join("m.yaml"),
            manifest(&staging, mirrors, images),
        )
        .expect("write the manifest");
    };
    write(&images, &mirrors);
    let run = |args: &[&str]| {
        let mut all = vec!["m.yaml", "--output", "json"];
        all.extend_from_slice(args);
        promote(dir.path(), &all)
    };

    let first = run(&[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = summary(&first);
    assert_eq!(count(&first, "copied"), PROMOTED as u64);

    // One digest added, and one whose source is not in staging yet (it fails).
    let added = image::single(ManifestFormat::Oci, "incremental-added");
    seeder.push_image("staging/added", &added, None);
    let late = image::single(ManifestFormat::Oci, "incremental-late");
    images.push(("added".to_owned(), added.digest.clone(), vec!["v1"]));
    images.push(("late".to_owned(), late.digest.clone(), vec!["v1"]));
    write(&images, &mirrors);
    let second = run(&[]);
    assert_eq!(second.status.code(), Some(1), "the late unit fails");
    let second = summary(&second);
    assert_eq!(count(&second, "copied"), 1, "{second}");
    assert_eq!(count(&second, "failed"), 1, "{second}");
    assert_eq!(count(&second, "done_earlier"), PROMOTED as u64, "{second}");
    let one_digest = count(&second, "requests");
    // A unit to two mirrors and a failed one: about 30 requests whatever PROMOTED is; the
    // whole set would be observed with two HEADs per edge and tag.
    assert!(
        one_digest <= 60,
        "a one-digest change made {one_digest} registry requests: {second}"
    );

    // A retag, once the late image is in staging: the next change retries the failed unit.
    seeder.push_image("staging/late", &late, None);
    images[0].2.push("v1.0");
    write(&images, &mirrors);
    let third = run(&[]);
    assert_eq!(
        third.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let third = summary(&third);
    assert_eq!(
        count(&third, "copied"),
        2,
        "the retag and the late unit: {third}"
    );
    assert_eq!(count(&third, "failed"), 0);
    assert_eq!(
        count(&third, "blobs_copied"),
        late.blob_digests().len() as u64,
        "the retag copies no blob: {third}"
    );

    // A new mirror: every digest goes there, the others are not read again.
    mirrors.push(format!("{}/asia", production.host()));
    write(&images, &mirrors);
    let fourth = run(&[]);
    assert_eq!(fourth.status.code(), Some(0));
    let fourth = summary(&fourth);
    let all = (PROMOTED + 2) as u64;
    assert_eq!(count(&fourth, "copied"), all, "{fourth}");
    assert_eq!(
        count(&fourth, "manifests_written"),
        all,
        "one manifest per digest, in asia only: {fourth}"
    );

    // Nothing changed: nothing planned, no registry contacted.
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            "{}# a comment changes the revision, not the plan\n",
            manifest(&staging, &mirrors, &images)
        ),
    )
    .expect("write");
    let idle = summary(&run(&[]));
    assert_eq!(count(&idle, "requests"), 0, "{idle}");
    assert_eq!(count(&idle, "done_earlier"), all);

    // --full observes everything again: all present, requests growing with the set (the
    // engine's reads per unit: staging's tag list, production's tags), where the incremental
    // change above did not.
    let full = run(&["--full", "--revision", "full-check"]);
    assert_eq!(full.status.code(), Some(0));
    let full = summary(&full);
    assert_eq!(count(&full, "present"), all, "{full}");
    let observed = count(&full, "requests");
    assert!(
        observed >= 2 * all,
        "--full: {observed} requests for {all} units, one-digest change: {one_digest}"
    );
    println!(
        "requests: first run {}, one-digest change {one_digest}, new mirror {}, --full {observed} ({PROMOTED} images)",
        count(&first, "requests"),
        count(&fourth, "requests"),
    );
}

/// Signing with state: a digest signed in legacy format only is signed again (bundles and
/// attestations added, nothing copied) by the next run that asks for them; `runs show` says
/// what each digest carries; a fallback index wiped behind the promoter's back is not noticed
/// by an incremental run (production is not read) and is repaired by `--full`, which copies
/// nothing and pushes the same bundles back.
#[test]
fn signing_upgrades_and_repairs_without_copying() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let image = image::single(ManifestFormat::Oci, "signed-incremental");
    seeder.push_image("staging/app", &image, None);
    let mirrors = vec![
        format!("{}/us", production.host()),
        format!("{}/eu", production.host()),
    ];
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::write(
        dir.path().join("m.yaml"),
        manifest(
            &staging,
            &mirrors,
            &[("app".to_owned(), image.digest.clone(), vec!["v1"])],
        ),
    )
    .expect("write the manifest");
    generate_key(dir.path());
    let run = |args: &[&str]| {
        let mut all = vec!["m.yaml", "--output", "json", "--key", "release.key"];
        all.extend_from_slice(args);
        let out = promote(dir.path(), &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        summary(&out)
    };

    // Each run is a new revision (the same plan again is the same run, done earlier).
    let legacy = run(&["--signature-format", "legacy", "--revision", "r1"]);
    assert_eq!(count(&legacy, "copied"), 1);
    assert_eq!(count(&legacy, "signatures_added"), 2, "{legacy}");
    // Attestations asked for now: signed again, nothing copied.
    let upgraded = run(&["--revision", "r2"]);
    // (A unit that gained signatures counts as written, not as `present`.)
    for field in ["blobs_copied", "manifests_written", "tags_written"] {
        assert_eq!(count(&upgraded, field), 0, "{field}: {upgraded}");
    }
    assert_eq!(
        count(&upgraded, "signatures_added"),
        6,
        "3 bundles × 2 mirrors: {upgraded}"
    );
    assert_eq!(count(&upgraded, "signing_operations"), 3, "{upgraded}");
    let run_id = upgraded["run"]["id"].as_str().expect("a run id").to_owned();
    let shown = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["runs", "show", &run_id])
        .current_dir(dir.path())
        .output()
        .expect("runs show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("signed+attested"), "{text}");
    // Nothing left to do.
    let idle = run(&["--revision", "r3"]);
    assert_eq!(count(&idle, "requests"), 0, "{idle}");

    // Behind the promoter's back: eu's referrers index emptied.
    let tag = image.digest.replace(':', "-");
    let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let put = RawClient::for_registry(&production).send(
        "PUT",
        &format!("/v2/eu/app/manifests/{tag}"),
        "eu/app",
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        Some(&empty[..]),
    );
    assert_eq!(put.status, 201, "wipe eu's referrers index");
    let unnoticed = run(&["--revision", "r4"]);
    assert_eq!(count(&unnoticed, "requests"), 0, "{unnoticed}");
    let repaired = run(&["--full", "--revision", "r5"]);
    for field in ["blobs_copied", "manifests_written", "tags_written"] {
        assert_eq!(count(&repaired, field), 0, "{field}: {repaired}");
    }
    assert_eq!(
        count(&repaired, "signatures_added"),
        3,
        "eu's three bundles: {repaired}"
    );
    assert_eq!(
        count(&repaired, "signing_operations"),
        0,
        "the bundles us holds are reused: {repaired}"
    );
}

/// Two `promoter promote --key` of the same digests at once, on one state: each digest ends
/// with exactly one legacy signature layer and one bundle per statement in every mirror (the
/// sign step's per-digest lease keeps the two processes from both signing a digest).
#[test]
fn two_promotions_at_once_sign_each_digest_once() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let images: Vec<(String, String, Vec<&str>)> = (0..12)
        .map(|i| {
            let name = format!("img-{i}");
            let image = image::single(ManifestFormat::Oci, &format!("twice-signed-{i}"));
            seeder.push_image(&format!("staging/{name}"), &image, None);
            (name, image.digest, vec!["v1"])
        })
        .collect();
    let mirrors = vec![
        format!("{}/us", production.host()),
        format!("{}/eu", production.host()),
    ];
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::write(
        dir.path().join("m.yaml"),
        manifest(&staging, &mirrors, &images),
    )
    .expect("write the manifest");
    generate_key(dir.path());
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_promoter"))
            .args([
                "promote",
                "m.yaml",
                "--output",
                "json",
                "--key",
                "release.key",
                "--parallel-units",
                "2",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the promoter")
    };
    let (a, b) = (spawn(), spawn());
    let mut operations = 0;
    for child in [a, b] {
        let out = child.wait_with_output().expect("the promoter ends");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        operations += count(&summary(&out), "signing_operations");
    }
    assert_eq!(
        operations,
        4 * images.len() as u64,
        "4 signing operations per digest, both processes together"
    );
    let registry = RawClient::for_registry(&production);
    let get = |repository: &str, reference: &str| -> serde_json::Value {
        let got = registry.get_manifest(repository, reference);
        assert_eq!(got.status, 200, "GET {repository}:{reference}");
        serde_json::from_slice(&got.body).expect("JSON")
    };
    for mirror in ["us", "eu"] {
        for (name, digest, _) in &images {
            let hex = digest.trim_start_matches("sha256:");
            let repository = format!("{mirror}/{name}");
            let sig = get(&repository, &format!("sha256-{hex}.sig"));
            assert_eq!(
                sig["layers"].as_array().map(Vec::len),
                Some(1),
                "{mirror}/{name}"
            );
            let index = get(&repository, &format!("sha256-{hex}"));
            let mut kinds: Vec<&str> = index["manifests"]
                .as_array()
                .expect("manifests")
                .iter()
                .filter_map(|m| m["annotations"]["dev.sigstore.bundle.predicateType"].as_str())
                .collect();
            kinds.sort_unstable();
            assert_eq!(
                kinds,
                [
                    "https://k8s.io/promo-tools/promotion/v1",
                    "https://sigstore.dev/cosign/sign/v1",
                    "https://slsa.dev/verification_summary/v1",
                ],
                "{mirror}/{name}: one bundle per statement"
            );
        }
    }
}
