//! `promoter manifest add` on real files: a project of the registry.k8s.io corpus (golden: the
//! diff is exactly the added lines), the idempotent case, a refused tag with its line, a CRLF
//! file kept CRLF, and a tag resolved in a real staging registry (CNCF distribution).

use std::path::Path;
use std::process::{Command, Output};

use promoter_tests::harness::image::{self, ManifestFormat, Seeder};
use promoter_tests::harness::registry::TestRegistry;

const PROJECT: &str = "k8s-staging-etcd-manager";

fn promoter(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the promoter binary")
}

/// A thin tree holding one project copied from the corpus.
fn corpus_project(dir: &Path, project: &str) -> String {
    let corpus = promoter_tests::registry_k8s_io_corpus();
    for part in ["manifests", "images"] {
        let to = dir.join(part).join(project);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(corpus.join(part).join(project)).expect("read the corpus") {
            let entry = entry.expect("an entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
    std::fs::read_to_string(dir.join("images").join(project).join("images.yaml")).expect("read")
}

fn images_yaml(dir: &Path, project: &str) -> String {
    std::fs::read_to_string(dir.join("images").join(project).join("images.yaml")).expect("read")
}

/// `text` with `lines` inserted after (1-based) line `after`.
fn inserted(text: &str, after: usize, lines: &[&str]) -> String {
    let mut all: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        all.insert(after + i, line);
    }
    format!("{}\n", all.join("\n"))
}

#[test]
fn adds_to_a_real_images_yaml_and_changes_nothing_else() {
    let dir = tempfile::tempdir().expect("a folder");
    let original = corpus_project(dir.path(), PROJECT);
    let digest = format!("sha256:{}", "f".repeat(64));
    let add = |image: &str, tag: &str| {
        promoter(
            dir.path(),
            &[
                "manifest",
                "add",
                ".",
                "--project",
                PROJECT,
                "--image",
                image,
                "--tag",
                tag,
                "--digest",
                &digest,
            ],
        )
    };

    // A new digest of an image listed four times: after its last listing's entry (line 45).
    let out = add("etcd-backup", "v3.1.0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = format!("    \"{digest}\": [\"v3.1.0\"]");
    let expected = inserted(&original, 45, &[&entry]);
    assert_eq!(images_yaml(dir.path(), PROJECT), expected);

    // A second tag on it: the same line, its list grown.
    assert!(add("etcd-backup", "v3.1").status.success());
    let expected = expected.replace(&entry, &format!("    \"{digest}\": [\"v3.1.0\", \"v3.1\"]"));
    assert_eq!(images_yaml(dir.path(), PROJECT), expected);

    // A new image: after the entry that ends last (before the file's trailing blank line),
    // indented like the others.
    assert!(add("etcd-new", "v1").status.success());
    let last = expected.trim_end().lines().count();
    let new_entry = format!("    \"{digest}\": [\"v1\"]");
    let expected = inserted(
        &expected,
        last,
        &["- name: etcd-new", "  dmap:", &new_entry],
    );
    assert_eq!(images_yaml(dir.path(), PROJECT), expected);

    // Again: nothing changes.
    let again = add("etcd-new", "v1");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to add"));
    assert_eq!(images_yaml(dir.path(), PROJECT), expected);

    // A tag that names another digest: refused with the line naming it, file untouched.
    let refused = add("etcd-backup", "v3.0.20241012");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("images/{PROJECT}/images.yaml:3: tag `v3.0.20241012` of image `etcd-backup` already names sha256:b79ec8ea")),
        "{stderr}"
    );
    assert_eq!(images_yaml(dir.path(), PROJECT), expected);

    // The tree still validates, with the additions planned.
    let plan = promoter(dir.path(), &["plan", ".", "--output", "json"]);
    assert!(plan.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
    let units = plan["units"].as_array().expect("units");
    assert!(units.iter().any(|u| {
        u["digest"] == digest.as_str()
            && u["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("/etcd-new"))
    }));
}

#[test]
fn a_crlf_file_stays_crlf() {
    let dir = tempfile::tempdir().expect("a folder");
    let corpus = promoter_tests::registry_k8s_io_corpus();
    let crlf = std::fs::read_dir(corpus.join("images"))
        .expect("read")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|p| {
            std::fs::read(corpus.join("images").join(p).join("images.yaml"))
                .is_ok_and(|b| b.windows(2).any(|w| w == b"\r\n"))
        })
        .expect("the corpus has a CRLF images.yaml");
    let original = corpus_project(dir.path(), &crlf);
    let loaded = promoter::manifest::load(&[dir.path().to_path_buf()]).expect("load");
    let image = loaded.manifests[0].images[0].name.to_string();
    let digest = format!("sha256:{}", "e".repeat(64));
    let out = promoter(
        dir.path(),
        &[
            "manifest",
            "add",
            ".",
            "--project",
            &crlf,
            "--image",
            &image,
            "--tag",
            "added",
            "--digest",
            &digest,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = images_yaml(dir.path(), &crlf);
    assert_eq!(
        after.matches('\n').count(),
        original.matches('\n').count() + 1
    );
    assert_eq!(
        after.matches("\r\n").count(),
        after.matches('\n').count(),
        "every line CRLF"
    );
    assert!(after.contains(&format!("\"{digest}\": [\"added\"]\r\n")));
}

#[test]
fn resolves_the_tag_in_staging() {
    let staging = TestRegistry::start();
    let pushed = Seeder::new(&staging).push_image(
        "staging/app",
        &image::single(ManifestFormat::Oci, "manifest-add"),
        Some("v2"),
    );
    let dir = tempfile::tempdir().expect("a folder");
    let manifest = format!(
        "# Promotes app.\nregistries:\n- name: {}/staging\n  src: true\n- name: {}/prod\nimages:\n- name: app\n  dmap:\n    \"sha256:{}\": [\"v1\"]\n",
        staging.host(),
        staging.host(),
        "1".repeat(64)
    );
    std::fs::write(dir.path().join("m.yaml"), &manifest).expect("write");
    let out = promoter(
        dir.path(),
        &["manifest", "add", "m.yaml", "--image", "app", "--tag", "v2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("m.yaml")).expect("read"),
        format!("{manifest}    \"{}\": [\"v2\"]\n", pushed.digest)
    );
    let missing = promoter(
        dir.path(),
        &[
            "manifest", "add", "m.yaml", "--image", "app", "--tag", "nope",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("app:nope does not exist in staging")
    );
}

#[test]
fn all_new_adds_every_matching_staging_tag_not_listed_yet() {
    let staging = TestRegistry::start();
    let seeder = Seeder::new(&staging);
    let listed = seeder.push_image(
        "staging/app",
        &image::single(ManifestFormat::Oci, "all-new-1"),
        Some("v1.0.0"),
    );
    let release = seeder.push_image(
        "staging/app",
        &image::single(ManifestFormat::Oci, "all-new-2"),
        Some("v1.1.0"),
    );
    // The same build under a second matching tag, a tag the pattern leaves out, and a cosign
    // signature tag.
    seeder.push_manifest("staging/app", "v1.1.1", &release.media_type, &release.bytes);
    seeder.push_manifest(
        "staging/app",
        "nightly",
        &release.media_type,
        &release.bytes,
    );
    seeder.push_manifest(
        "staging/app",
        &format!("{}.sig", listed.digest.replace(':', "-")),
        &release.media_type,
        &release.bytes,
    );
    let dir = tempfile::tempdir().expect("a folder");
    let manifest = format!(
        "registries:\n- name: {}/staging\n  src: true\n- name: {}/prod\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1.0.0\"]\n",
        staging.host(),
        staging.host(),
        listed.digest
    );
    std::fs::write(dir.path().join("m.yaml"), &manifest).expect("write");
    let args = [
        "manifest",
        "add",
        "m.yaml",
        "--image",
        "app",
        "--all-new",
        "--tag-pattern",
        r"v\d+\.\d+\.\d+",
    ];
    let out = promoter(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("m.yaml")).expect("read"),
        format!(
            "{manifest}    \"{}\": [\"v1.1.0\", \"v1.1.1\"]\n",
            release.digest
        )
    );
    // Run again: nothing new.
    let again = promoter(dir.path(), &args);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("Nothing to add"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn commit_records_the_addition_with_git() {
    let dir = tempfile::tempdir().expect("a folder");
    let original = corpus_project(dir.path(), PROJECT);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Release Engineer",
                "-c",
                "user.email=re@example.org",
            ])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "the corpus project"]);
    let digest = format!("sha256:{}", "d".repeat(64));
    let out = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args([
            "manifest",
            "add",
            ".",
            "--project",
            PROJECT,
            "--image",
            "etcd-dump",
            "--tag",
            "v3.2.0",
            "--digest",
            &digest,
            "--commit",
        ])
        .env("GIT_AUTHOR_NAME", "Release Engineer")
        .env("GIT_AUTHOR_EMAIL", "re@example.org")
        .env("GIT_COMMITTER_NAME", "Release Engineer")
        .env("GIT_COMMITTER_EMAIL", "re@example.org")
        .current_dir(dir.path())
        .output()
        .expect("run the promoter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = git(&["log", "-1", "--format=%B"]);
    assert!(message.starts_with("Promote etcd-dump\n"), "{message}");
    assert!(
        message.contains("- etcd-dump: v3.2.0 → sha256:dddddddddddd (a new digest)"),
        "{message}"
    );
    assert_eq!(git(&["status", "--porcelain"]), "", "everything committed");
    let changed = git(&["diff", "--numstat", "HEAD~1"]);
    assert_eq!(
        changed.trim(),
        format!("1\t0\timages/{PROJECT}/images.yaml")
    );
    assert_ne!(images_yaml(dir.path(), PROJECT), original);
}
