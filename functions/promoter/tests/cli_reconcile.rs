//! `promoter reconcile` against real registries (CNCF distribution): no drift right after a
//! promotion; then drift made behind the promoter's back with the registry API (a tag moved to
//! another image, a tag nobody asked for) and a digest the manifests ask for that was never
//! copied, each reported by kind by `--dry-run`, nothing changed in production; and a repair:
//! a tag deleted and a signature deleted restored (nothing else copied), a tag pushed by
//! someone reported and left.

use std::path::Path;
use std::process::{Command, Output};

use promoter_tests::harness::http::RawClient;
use promoter_tests::harness::image::{self, ManifestFormat, Seeder};
use promoter_tests::harness::registry::TestRegistry;

fn promoter(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the promoter binary")
}

#[test]
fn drift_behind_the_promoters_back_is_reported_by_kind() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let a = image::single(ManifestFormat::Oci, "reconcile-a");
    let b = image::single(ManifestFormat::Oci, "reconcile-b");
    let late = image::single(ManifestFormat::Oci, "reconcile-late");
    seeder.push_image("staging/app", &a, None);
    seeder.push_image("staging/app", &b, None);
    let dir = tempfile::tempdir().expect("a folder");
    let manifest = |extra: &str| {
        format!(
            "registries:\n- name: {}/staging\n  src: true\n- name: {}/us\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n    \"{}\": [\"v2\"]\n{extra}",
            staging.host(),
            production.host(),
            a.digest,
            b.digest
        )
    };
    std::fs::write(dir.path().join("m.yaml"), manifest("")).expect("write");
    let promoted = promoter(dir.path(), &["promote", "m.yaml", "--no-state"]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );

    let clean = promoter(dir.path(), &["reconcile", "m.yaml"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    assert!(String::from_utf8_lossy(&clean.stdout).starts_with("Drift in 0 of 1 repositories"));

    // Promoted without a key: with --signatures, both digests are named unsigned; signed by a
    // full run with a key (nothing copied), they are not.
    let unsigned = promoter(
        dir.path(),
        &["reconcile", "m.yaml", "--signatures", "--dry-run"],
    );
    let text = String::from_utf8_lossy(&unsigned.stdout);
    assert_eq!(unsigned.status.code(), Some(1), "{text}");
    assert!(text.contains("2 unsigned digests"), "{text}");
    assert!(
        text.contains(&format!("unsigned {}", &a.digest[..19])),
        "{text}"
    );
    let keys = promoter(dir.path(), &["keys", "generate", "release"]);
    assert!(keys.status.success());
    let signed = promoter(
        dir.path(),
        &["promote", "m.yaml", "--no-state", "--key", "release.key"],
    );
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let checked = promoter(
        dir.path(),
        &["reconcile", "m.yaml", "--signatures", "--dry-run"],
    );
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    // Behind the promoter's back: v2 moved to another image, a `debug` tag pushed; and the
    // manifests now ask for a digest that was never copied.
    let other = image::single(ManifestFormat::Oci, "reconcile-other");
    let prod = Seeder::new(&production);
    prod.push_image("us/app", &other, Some("v2"));
    prod.push_manifest("us/app", "debug", other.media_type, &other.manifest);
    seeder.push_image("staging/app", &late, None);
    std::fs::write(
        dir.path().join("m.yaml"),
        manifest(&format!("    \"{}\": [\"v3\"]\n", late.digest)),
    )
    .expect("write");

    let drifted = promoter(
        dir.path(),
        &["reconcile", "m.yaml", "--output", "json", "--dry-run"],
    );
    assert_eq!(
        drifted.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&drifted.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&drifted.stdout).expect("JSON");
    assert_eq!(report["schema"], "promoter.drift/v1");
    let summary = &report["summary"];
    assert_eq!(summary["drifted"], 1, "{report}");
    assert_eq!(summary["missing"], 1, "{report}");
    assert_eq!(summary["missing_tags"], 1, "{report}");
    assert_eq!(summary["moved_tags"], 1, "{report}");
    assert_eq!(summary["unknown_tags"], 1, "{report}");
    let repository = &report["repositories"][0];
    assert_eq!(repository["missing"][0], late.digest.as_str());
    assert_eq!(repository["moved_tags"][0][0], "v2");
    assert_eq!(repository["moved_tags"][0][1], b.digest.as_str());
    assert_eq!(repository["moved_tags"][0][2], other.digest.as_str());
    assert_eq!(repository["unknown_tags"][0][0], "debug");
    // One tag listing and a HEAD per tag (v1, v2, debug) and per untagged desired digest.
    assert!(
        summary["requests"].as_u64().is_some_and(|r| r <= 8),
        "{report}"
    );

    // Nothing was changed: v2 still points at the other image.
    let text = promoter(dir.path(), &["reconcile", "m.yaml", "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("moved tag v2"), "{text}");
    assert!(text.contains("unknown tag debug"), "{text}");
    assert!(text.contains("missing tag v3"), "{text}");
}

/// The digest `reference` resolves to in `repo`, if it does.
fn resolve(client: &RawClient, repo: &str, reference: &str) -> Option<String> {
    let response = client.get_manifest(repo, reference);
    (response.status == 200)
        .then(|| response.header("docker-content-digest").map(str::to_owned))
        .flatten()
}

/// Deletes the manifest `reference` resolves to (and with it every tag on it).
fn delete(client: &RawClient, repo: &str, reference: &str) {
    let digest = resolve(client, repo, reference).expect("it exists");
    let deleted = client.send(
        "DELETE",
        &format!("/v2/{repo}/manifests/{digest}"),
        repo,
        &[],
        None,
    );
    assert_eq!(deleted.status, 202, "delete {repo}@{digest}");
}

#[test]
fn reconcile_restores_what_was_removed_and_reports_what_was_added() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let a = image::single(ManifestFormat::Oci, "repair-a");
    let b = image::single(ManifestFormat::Oci, "repair-b");
    let c = image::single(ManifestFormat::Oci, "repair-c");
    for img in [&a, &b, &c] {
        seeder.push_image("staging/app", img, None);
    }
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            "registries:\n- name: {}/staging\n  src: true\n- name: {}/us\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n    \"{}\": [\"v2\"]\n    \"{}\": [\"v3\"]\n",
            staging.host(),
            production.host(),
            a.digest,
            b.digest,
            c.digest
        ),
    )
    .expect("write");
    assert!(
        promoter(dir.path(), &["keys", "generate", "release"])
            .status
            .success()
    );
    let promoted = promoter(
        dir.path(),
        &[
            "promote",
            "m.yaml",
            "--key",
            "release.key",
            "--revision",
            "r1",
        ],
    );
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );

    // Behind the promoter's back: `b` deleted (its tag v2 with it), `c`'s signatures deleted
    // (its `.sig` image and its referrers fallback index), a `hotfix` tag pushed onto `a`.
    let client = RawClient::for_registry(&production);
    delete(&client, "us/app", "v2");
    let hex = &c.digest["sha256:".len()..];
    delete(&client, "us/app", &format!("sha256-{hex}.sig"));
    delete(&client, "us/app", &format!("sha256-{hex}"));
    Seeder::new(&production).push_manifest("us/app", "hotfix", a.media_type, &a.manifest);

    let repaired = promoter(
        dir.path(),
        &[
            "reconcile",
            "m.yaml",
            "--key",
            "release.key",
            "--output",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&repaired.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON ({e}): {}{}",
            String::from_utf8_lossy(&repaired.stdout),
            String::from_utf8_lossy(&repaired.stderr)
        )
    });
    // The pushed tag is left for people: exit 1.
    assert_eq!(repaired.status.code(), Some(1), "{report}");
    let summary = &report["summary"];
    assert_eq!(summary["missing"], 1, "{report}");
    assert_eq!(summary["unsigned"], 1, "{report}");
    assert_eq!(summary["unknown_tags"], 1, "{report}");
    assert_eq!(summary["repairs"], 2, "only b and c: {report}");
    assert_eq!(report["repair"]["status"], "complete", "{report}");
    let record = report["record"].as_str().expect("a drift record");
    assert!(record.starts_with("drift/"), "{report}");

    // Restored: v2 → b again, c signed again; the pushed tag is still there.
    assert_eq!(
        resolve(&client, "us/app", "v2").as_deref(),
        Some(b.digest.as_str())
    );
    assert!(resolve(&client, "us/app", &format!("sha256-{hex}.sig")).is_some());
    assert!(resolve(&client, "us/app", &format!("sha256-{hex}")).is_some());
    assert_eq!(
        resolve(&client, "us/app", "hotfix").as_deref(),
        Some(a.digest.as_str())
    );
    let verified = promoter(
        dir.path(),
        &[
            "verify",
            &format!("{}/us/app@{}", production.host(), c.digest),
            "--key",
            "release.pub",
        ],
    );
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // The repair run holds only the two units, recorded as a reconcile.
    let run = report["repair"]["id"].as_str().expect("a run id");
    let shown = promoter(dir.path(), &["runs", "show", run, "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["run"]["units"], 2, "{shown}");
    assert_eq!(shown["run"]["trigger"]["kind"], "reconcile", "{shown}");

    // Again: only the pushed tag is left, nothing to repair.
    let again = promoter(
        dir.path(),
        &[
            "reconcile",
            "m.yaml",
            "--key",
            "release.key",
            "--output",
            "json",
        ],
    );
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["summary"]["drifted"], 1, "{again}");
    assert_eq!(again["summary"]["repairs"], 0, "{again}");
    assert!(again["repair"].is_null(), "{again}");
}

#[test]
fn a_repair_that_fails_is_planned_again_by_the_next_promotion() {
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let a = image::single(ManifestFormat::Oci, "again-a");
    let b = image::single(ManifestFormat::Oci, "again-b");
    seeder.push_image("staging/app", &a, None);
    seeder.push_image("staging/app", &b, None);
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            "registries:\n- name: {}/staging\n  src: true\n- name: {}/us\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n    \"{}\": [\"v2\"]\n",
            staging.host(),
            production.host(),
            a.digest,
            b.digest
        ),
    )
    .expect("write");
    let promoted = promoter(dir.path(), &["promote", "m.yaml", "--revision", "r1"]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );

    // `b` gone from production, and (for now) from staging too: its repair fails.
    delete(&RawClient::for_registry(&production), "us/app", "v2");
    delete(&RawClient::for_registry(&staging), "staging/app", &b.digest);
    let failed = promoter(dir.path(), &["reconcile", "m.yaml", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("JSON");
    assert_eq!(failed.status.code(), Some(1), "{report}");
    assert_eq!(report["summary"]["repairs"], 1, "{report}");
    assert_ne!(report["repair"]["status"], "complete", "{report}");

    // Staging has it again: the next incremental promotion plans it (the ledger no longer
    // says it is promoted) and copies it.
    seeder.push_image("staging/app", &b, None);
    let again = promoter(
        dir.path(),
        &["promote", "m.yaml", "--revision", "r2", "--output", "json"],
    );
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert!(again.status.success(), "{summary}");
    assert_eq!(summary["summary"]["copied"], 1, "{summary}");
    let client = RawClient::for_registry(&production);
    assert_eq!(
        resolve(&client, "us/app", "v2").as_deref(),
        Some(b.digest.as_str())
    );
}
