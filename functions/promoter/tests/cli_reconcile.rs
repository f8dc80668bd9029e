//! `promoter reconcile` against real registries (CNCF distribution): no drift right after a
//! promotion; then drift made behind the promoter's back with the registry API (a tag moved to
//! another image, a tag nobody asked for) and a digest the manifests ask for that was never
//! copied, each reported by kind, nothing changed in production.

use std::path::Path;
use std::process::{Command, Output};

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
    let unsigned = promoter(dir.path(), &["reconcile", "m.yaml", "--signatures"]);
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
    let checked = promoter(dir.path(), &["reconcile", "m.yaml", "--signatures"]);
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

    let drifted = promoter(dir.path(), &["reconcile", "m.yaml", "--output", "json"]);
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
    let text = promoter(dir.path(), &["reconcile", "m.yaml"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("moved tag v2"), "{text}");
    assert!(text.contains("unknown tag debug"), "{text}");
    assert!(text.contains("missing tag v3"), "{text}");
}
