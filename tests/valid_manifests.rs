//! Valid manifests: the real registry.k8s.io sample, the shipped examples, and a thin-manifest
//! tree shaped like Kubernetes' (12 projects, 20 regional destinations each, two projects
//! sharing a source registry). Each must load without errors and plan the expected edges.

use std::path::{Path, PathBuf};

use promoter::manifest::{self, Loaded, Severity};
use promoter::plan::{self, Plan};
use promoter_tests::{data_dir, k8s_corpus};

fn load_valid(paths: &[PathBuf]) -> Loaded {
    let loaded = manifest::load(paths).expect("paths are readable");
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
    loaded
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Edges per project: (digest, destination) pairs the plan sends for it.
fn edges_of(plan: &Plan, project: &str) -> usize {
    plan.projects
        .iter()
        .filter(|p| p.project == project)
        .flat_map(|p| &p.images)
        .map(|i| i.destinations)
        .sum()
}

#[test]
fn kubernetes_corpus_validates_and_plans_unchanged() {
    let corpus = k8s_corpus();
    let loaded = load_valid(&[corpus]);
    // `imagesPath` is accepted, ignored, and warned about exactly once.
    let warnings: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("imagesPath"));

    let plan = plan::build(&loaded.manifests, None);
    // Figures from the corpus README: 23 × 14 and 22 × 51.
    assert_eq!(edges_of(&plan, "k8s-staging-coredns"), 322);
    assert_eq!(edges_of(&plan, "k8s-staging-kueue"), 1122);
    assert_eq!(plan.summary().edges, 322 + 1122);
    assert_eq!(plan.units.len(), 14 + 51);
    // An image name with a slash lands below every destination.
    let chart = plan
        .units
        .iter()
        .find(|u| {
            u.source.as_str() == "us-central1-docker.pkg.dev/k8s-staging-images/kueue/charts/kueue"
        })
        .expect("charts/kueue is planned");
    assert!(chart.destinations.iter().any(|d| d.repository.as_str()
        == "us-west2-docker.pkg.dev/k8s-artifacts-prod/images/kueue/charts/kueue"));
    // A digest with two tags keeps both in every destination.
    assert!(
        plan.units
            .iter()
            .any(|u| u.destinations.iter().all(|d| d.tags.len() == 2))
    );
}

#[test]
fn kubernetes_shaped_tree_plans_every_edge() {
    let loaded = load_valid(&[data_dir().join("valid/k8s-like")]);
    assert_eq!(loaded.manifests.len(), 12);
    let plan = plan::build(&loaded.manifests, None);
    let summary = plan.summary();
    // 28 images × 4 digests, plus one image shared by two projects: 113 units.
    assert_eq!(summary.units, 113);
    assert_eq!(summary.edges, 112 * 20 + 2 * 20);
    // Two projects promote the same staging digest: one unit, 40 destinations, one read.
    let common = plan
        .units
        .iter()
        .find(|u| u.source.as_str().ends_with("/shared/common"))
        .expect("the shared image is planned");
    assert_eq!(common.destinations.len(), 40);
    // Units are sorted and their ids are unique.
    let keys: Vec<_> = plan.units.iter().map(|u| (&u.source, &u.digest)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let mut ids: Vec<_> = plan.units.iter().map(|u| &u.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), plan.units.len());
}

#[test]
fn examples_validate_together() {
    let loaded = load_valid(&[
        examples().join("promoter-manifest.yaml"),
        examples().join("thin"),
    ]);
    assert_eq!(loaded.manifests.len(), 3);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
}

#[test]
fn base_plans_only_additions_and_a_retag_is_an_addition() {
    let current = load_valid(&[examples().join("thin")]);
    let base = load_valid(&[examples().join("thin-base")]);
    let plan = plan::build(&current.manifests, Some(&base.manifests));
    assert!(plan.removals.is_empty());
    assert_eq!(plan.units.len(), 3);
    // `latest` is added to a digest the base already promoted with `1.0`: a retag.
    let retag = plan
        .units
        .iter()
        .find(|u| u.source.as_str().ends_with("/hello/hello"))
        .expect("the retagged digest is planned");
    assert_eq!(retag.destinations.len(), 3);
    for d in &retag.destinations {
        let tags: Vec<&str> = d.tags.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            tags,
            ["latest"],
            "only the new tag, not 1.0 which the base set"
        );
    }
    let change = plan
        .projects
        .iter()
        .flat_map(|p| &p.images)
        .find(|i| i.image.as_str() == "hello")
        .expect("retag listed for the summary");
    assert!(!change.new_digest);
}

#[test]
fn planning_against_itself_is_empty() {
    let current = load_valid(&[examples().join("thin")]);
    let plan = plan::build(&current.manifests, Some(&current.manifests));
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn removals_are_listed_with_the_base_location() {
    let current = load_valid(&[examples().join("thin-removal")]);
    let base = load_valid(&[examples().join("thin-base")]);
    let plan = plan::build(&current.manifests, Some(&base.manifests));
    // hello/hello gone from 3 mirrors; tag v1 of tools/debug gone from 3 mirrors.
    assert_eq!(plan.removals.len(), 6);
    assert_eq!(plan.removals.iter().filter(|r| r.digest_removed).count(), 3);
    let diagnostics = plan::removal_diagnostics(&plan.removals);
    assert_eq!(
        diagnostics.len(),
        2,
        "one per manifest entry, not per destination"
    );
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(lines[0].ends_with(
        "thin-base/images/hello/images.yaml:4:5: the change removes sha256:589cfe70f8f0 (tags `1.0`) from 3 destinations (e.g. `127.0.0.1:5002/asia/hello/hello`), which the base promoted; the promoter never deletes from production: keep the entry, or pass --allow-removal (production keeps the image either way)"
    ), "{}", lines[0]);
    assert!(
        lines[1].contains("removes tag `v1` of sha256:7ebf941186ca"),
        "{}",
        lines[1]
    );
}

#[test]
fn identical_edges_from_two_manifests_are_merged_not_conflicting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest = format!("sha256:{}", "ab".repeat(32));
    for (file, tag) in [("a.yaml", "v1"), ("b.yaml", "stable")] {
        let text = format!(
            "registries:\n- name: gcr.io/staging\n  src: true\n- name: gcr.io/prod\nimages:\n- name: app\n  dmap:\n    \"{digest}\": [\"{tag}\"]\n"
        );
        std::fs::write(dir.path().join(file), text).expect("write manifest");
    }
    let loaded = load_valid(&[dir.path().to_path_buf()]);
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units.len(), 1);
    let destinations = &plan.units[0].destinations;
    assert_eq!(destinations.len(), 1);
    let tags: Vec<&str> = destinations[0].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["stable", "v1"]);
}

/// A 2 MB manifest (10,000 images, and one digest with 100,000 tags) is checked in time linear
/// in its size. Repeats used to be searched for among all earlier entries: 2 MB of images took
/// 20 s, 2 MB of tags 110 s (release build). No clock is read here: a quadratic check makes
/// this test run for many minutes instead of seconds.
#[test]
fn a_two_megabyte_manifest_is_checked_in_linear_time() {
    use std::fmt::Write as _;

    let mut text = String::from(
        "registries:\n- name: gcr.io/k8s-staging-big\n  src: true\n- name: registry.k8s.io/big\n\
         images:\n",
    );
    for i in 0..10_000 {
        let _ = write!(
            text,
            "- name: image-{i}\n  dmap:\n    \"sha256:{i:064x}\": [\"v{i}\"]\n"
        );
    }
    let tags: Vec<String> = (0..100_000).map(|i| format!("\"t{i}\"")).collect();
    let _ = write!(
        text,
        "- name: many-tags\n  dmap:\n    \"sha256:{}\": [{}]\n",
        "f".repeat(64),
        tags.join(", ")
    );
    assert!(text.len() > 2_000_000, "{} bytes", text.len());
    let dir = tempfile::TempDir::new().expect("a temporary folder");
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, &text).expect("write the manifest");

    let loaded = load_valid(&[path]);
    let images = &loaded.manifests[0].images;
    assert_eq!(images.len(), 10_001);
    assert_eq!(images[10_000].digests[0].tags.len(), 100_000);
}
