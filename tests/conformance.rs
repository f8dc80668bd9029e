//! Conformance with the Kubernetes promoter (kpromo): the real registry.k8s.io manifest tree
//! (65 projects, `tests/data/corpus/registry.k8s.io`) validates and plans to exactly the counts
//! its README gives with kpromo's semantics, and each of kpromo's rules is checked on both
//! sides: what it accepts we accept (with a warning where we would have refused), and what it
//! refuses we refuse. The rules are those of promo-tools' `promoter/image/schema/manifest.go`
//! and `promoter/image/promotion/edge.go`; `docs/manifests.md` lists the differences left.

use std::path::Path;

use promoter::manifest::{self, Loaded, Severity};
use promoter::plan;
use promoter_tests::registry_k8s_io_corpus;

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn messages(loaded: &Loaded, severity: Severity) -> Vec<String> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .map(ToString::to_string)
        .collect()
}

#[test]
fn registry_k8s_io_validates_and_plans_kpromos_edges() {
    let corpus = registry_k8s_io_corpus();
    let loaded = manifest::load(std::slice::from_ref(&corpus)).expect("readable");
    let errors = messages(&loaded, Severity::Error);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(loaded.manifests.len(), 65);

    // What a strict reader would refuse and kpromo accepts: each a warning at FILE:LINE:COL.
    let warnings = messages(&loaded, Severity::Warning);
    let etcd = "images/k8s-staging-etcd-manager/images.yaml";
    let listed_again = warnings
        .iter()
        .filter(|w| w.contains(etcd) && w.contains("is listed again"))
        .count();
    assert_eq!(listed_again, 11, "{warnings:#?}");
    assert!(
        warnings.iter().any(|w| w.contains(&format!("{etcd}:15:3:"))
            && w.contains("`etcd-backup` is listed again (first at line 1)")),
        "{warnings:#?}"
    );
    let boskos = "manifests/k8s-staging-boskos/promoter-manifest.yaml:47:3:";
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(boskos) && w.contains("it is one destination")),
        "{warnings:#?}"
    );
    assert!(warnings.iter().any(|w| w.contains("imagesPath")));
    assert_eq!(warnings.len(), 13, "{warnings:#?}");

    // The README's counts, with kpromo's semantics (an edge is a (destination repository,
    // digest) pair; a repeated registry or image merges).
    let plan = plan::build(&loaded.manifests, None);
    let summary = plan.summary();
    assert_eq!(summary.units, 16_543, "(source repository, digest) units");
    let digests: std::collections::HashSet<_> = plan.units.iter().map(|u| &u.digest).collect();
    assert_eq!(digests.len(), 16_504);
    assert_eq!(summary.edges, 538_090);
    let tags: usize = plan
        .units
        .iter()
        .flat_map(|u| &u.destinations)
        .map(|d| d.tags.len())
        .sum();
    assert_eq!(tags, 539_409, "(destination repository, tag) pairs");

    // The merged etcd-manager images: every listing's digests, once each.
    let etcd_backup = plan
        .units
        .iter()
        .filter(|u| u.source.as_str().ends_with("/etcd-backup"))
        .count();
    assert_eq!(etcd_backup, 4, "four listings of etcd-backup, four digests");
    // Boskos' repeated registry is one destination: no repository appears twice in a unit.
    for unit in &plan.units {
        let mut repositories: Vec<_> = unit.destinations.iter().map(|d| &d.repository).collect();
        let all = repositories.len();
        repositories.sort();
        repositories.dedup();
        assert_eq!(repositories.len(), all, "{}", unit.source);
    }
}

/// A thin tree of one project (`p`) with `registries` and `images` as given.
fn thin_tree(dir: &Path, registries: &str, images: &str) {
    std::fs::create_dir_all(dir.join("manifests/p")).expect("mkdir");
    std::fs::create_dir_all(dir.join("images/p")).expect("mkdir");
    std::fs::write(dir.join("manifests/p/promoter-manifest.yaml"), registries).expect("write");
    std::fs::write(dir.join("images/p/images.yaml"), images).expect("write");
}

const REGISTRIES: &str = "registries:\n- name: gcr.io/k8s-staging-p\n  src: true\n- name: us-docker.pkg.dev/k8s-artifacts-prod/images/p\n";

fn load_thin(registries: &str, images: &str) -> (Loaded, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a folder");
    thin_tree(dir.path(), registries, images);
    let loaded = manifest::load(&[dir.path().to_path_buf()]).expect("readable");
    (loaded, dir)
}

#[test]
fn an_image_listed_again_adds_its_digests_and_merges_tags() {
    let images = format!(
        "- name: app\n  dmap:\n    \"{DIGEST_A}\": [\"v1\"]\n- name: app\n  dmap:\n    \"{DIGEST_A}\": [\"v1.0\"]\n    \"{DIGEST_B}\": [\"v2\"]\n"
    );
    let (loaded, _dir) = load_thin(REGISTRIES, &images);
    assert!(messages(&loaded, Severity::Error).is_empty());
    let warnings = messages(&loaded, Severity::Warning);
    assert!(
        warnings[0].ends_with("images/p/images.yaml:4:3: warning: image `app` is listed again (first at line 1): its digests are added to that entry, as the Kubernetes promoter does"),
        "{warnings:?}"
    );
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units.len(), 2);
    let a = plan
        .units
        .iter()
        .find(|u| u.digest.as_str() == DIGEST_A)
        .expect("A");
    let tags: Vec<&str> = a.destinations[0].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["v1", "v1.0"]);
}

#[test]
fn a_tag_moved_by_a_later_listing_is_an_overlapping_edge() {
    let images = format!(
        "- name: app\n  dmap:\n    \"{DIGEST_A}\": [\"v1\"]\n- name: app\n  dmap:\n    \"{DIGEST_B}\": [\"v1\"]\n"
    );
    let (loaded, _dir) = load_thin(REGISTRIES, &images);
    let errors = messages(&loaded, Severity::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("images/p/images.yaml:6:5: tag `v1` of image `app` is also given to sha256:aaaaaaaaaaaa at line 3"),
        "{errors:?}"
    );
}

#[test]
fn a_registry_listed_twice_is_one_destination_unless_the_entries_differ() {
    let twice = format!("{REGISTRIES}- name: us-docker.pkg.dev/k8s-artifacts-prod/images/p\n");
    let images = format!("- name: app\n  dmap:\n    \"{DIGEST_A}\": [\"v1\"]\n");
    let (loaded, _dir) = load_thin(&twice, &images);
    assert!(messages(&loaded, Severity::Error).is_empty());
    assert!(messages(&loaded, Severity::Warning)[0].contains(
        "promoter-manifest.yaml:5:3: warning: registry `us-docker.pkg.dev/k8s-artifacts-prod/images/p` is listed twice (first at line 4): it is one destination"
    ));
    let plan = plan::build(&loaded.manifests, None);
    assert_eq!(plan.units[0].destinations.len(), 1);

    let differing = format!(
        "{REGISTRIES}- name: us-docker.pkg.dev/k8s-artifacts-prod/images/p\n  service-account: a@b.iam.gserviceaccount.com\n"
    );
    let (loaded, _dir) = load_thin(&differing, &images);
    let errors = messages(&loaded, Severity::Error);
    assert!(
        errors.len() == 1 && errors[0].contains("with a different `src` or `service-account`"),
        "{errors:?}"
    );
}

#[test]
fn kpromos_refusals_are_refusals() {
    let image = |dmap: &str| format!("- name: app\n  dmap:{dmap}\n");
    let digest = |d: &str, tags: &str| format!("\n    \"{d}\": {tags}");
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "empty dmap",
            REGISTRIES.into(),
            image(" {}"),
            "has an empty `dmap`",
        ),
        (
            "null dmap",
            REGISTRIES.into(),
            image(""),
            "has an empty `dmap`",
        ),
        (
            "no dmap",
            REGISTRIES.into(),
            "- name: app\n".into(),
            "has no `dmap`",
        ),
        (
            "empty image name",
            REGISTRIES.into(),
            format!("- name: \"\"\n  dmap:{}\n", digest(DIGEST_A, "[v1]")),
            "the name is empty",
        ),
        (
            "uppercase digest",
            REGISTRIES.into(),
            image(&digest(
                &DIGEST_A.to_uppercase().replace("SHA256", "sha256"),
                "[v1]",
            )),
            "invalid digest",
        ),
        (
            "tag starting with a dot",
            REGISTRIES.into(),
            image(&digest(DIGEST_A, "[\".v1\"]")),
            "invalid tag",
        ),
        (
            "tag of 129 characters",
            REGISTRIES.into(),
            image(&digest(DIGEST_A, &format!("[\"{}\"]", "a".repeat(129)))),
            "invalid tag",
        ),
        (
            "unknown field",
            REGISTRIES.into(),
            format!(
                "- name: app\n  tags: []\n  dmap:{}\n",
                digest(DIGEST_A, "[v1]")
            ),
            "`tags`",
        ),
        (
            "no registries",
            "registries: []\n".into(),
            image(&digest(DIGEST_A, "[v1]")),
            "`registries` is empty",
        ),
        (
            "no source",
            "registries:\n- name: gcr.io/k8s-staging-p\n- name: us-docker.pkg.dev/x/p\n".into(),
            image(&digest(DIGEST_A, "[v1]")),
            "no source registry",
        ),
        (
            "two sources",
            format!("{REGISTRIES}- name: us-docker.pkg.dev/x/p\n  src: true\n"),
            image(&digest(DIGEST_A, "[v1]")),
            "a second source registry",
        ),
        (
            "empty registry name",
            format!("{REGISTRIES}- name: \"\"\n"),
            image(&digest(DIGEST_A, "[v1]")),
            "invalid registry name",
        ),
        (
            "a digest twice in one dmap (YAML duplicate key)",
            REGISTRIES.into(),
            image(&format!(
                "{}{}",
                digest(DIGEST_A, "[v1]"),
                digest(DIGEST_A, "[v2]")
            )),
            "is listed twice",
        ),
    ];
    for (name, registries, images, expected) in cases {
        let (loaded, _dir) = load_thin(&registries, &images);
        let errors = messages(&loaded, Severity::Error);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{name}: expected an error containing {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn the_thin_tree_structure_is_kpromos() {
    // A promoter manifest without its images file: refused (kpromo: "corresponding file …
    // does not exist").
    let dir = tempfile::tempdir().expect("a folder");
    thin_tree(dir.path(), REGISTRIES, "");
    std::fs::remove_file(dir.path().join("images/p/images.yaml")).expect("rm");
    let loaded = manifest::load(&[dir.path().to_path_buf()]).expect("readable");
    assert!(
        messages(&loaded, Severity::Error)
            .iter()
            .any(|e| e.contains("has no images file")),
        "{:?}",
        loaded.diagnostics
    );
    // An images file holding only comments: no images yet, accepted.
    let (loaded, _dir) = load_thin(REGISTRIES, "# nothing promoted yet\n");
    assert!(messages(&loaded, Severity::Error).is_empty());
    assert_eq!(loaded.manifests[0].images.len(), 0);
    // Other files beside promoter-manifest.yaml are not read.
    let dir = tempfile::tempdir().expect("a folder");
    thin_tree(dir.path(), REGISTRIES, "");
    std::fs::write(dir.path().join("manifests/p/OWNERS"), "approvers: [a]\n").expect("write");
    std::fs::write(dir.path().join("manifests/p/notes.yaml"), "anything: [1\n").expect("write");
    let loaded = manifest::load(&[dir.path().to_path_buf()]).expect("readable");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
}
