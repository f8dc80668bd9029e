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

/// Runs git in `dir` as a release engineer; its standard output.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Release Engineer",
            "-c",
            "user.email=re@example.org",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    let dir_path = dir.path();
    git(dir_path, &["init", "-q"]);
    git(dir_path, &["add", "."]);
    git(dir_path, &["commit", "-qm", "the corpus project"]);
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
    let message = git(dir_path, &["log", "-1", "--format=%B"]);
    assert!(message.starts_with("Promote etcd-dump\n"), "{message}");
    assert!(
        message.contains("- etcd-dump: v3.2.0 → sha256:dddddddddddd (a new digest)"),
        "{message}"
    );
    assert_eq!(
        git(dir_path, &["status", "--porcelain"]),
        "",
        "everything committed"
    );
    let changed = git(dir_path, &["diff", "--numstat", "HEAD~1"]);
    assert_eq!(
        changed.trim(),
        format!("1\t0\timages/{PROJECT}/images.yaml")
    );
    assert_ne!(images_yaml(dir.path(), PROJECT), original);
}

/// A fake of the parts of GitHub's API `--pull-request` uses, for `org/manifests` whose `main`
/// holds `path` as `served`; answers only the token `test-token`.
fn fake_github(
    path: &str,
    served: &str,
    pull_status: u16,
) -> promoter_tests::harness::receiver::Receiver {
    use base64::Engine as _;
    use promoter_tests::harness::receiver::{Receiver, Reply};
    let encoded = base64::engine::general_purpose::STANDARD.encode(served);
    // GitHub wraps the base64 content at 60 characters.
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let contents =
        serde_json::json!({"sha": "blob-1", "encoding": "base64", "content": wrapped.join("\n")});
    let path = path.to_owned();
    Receiver::start(move |_, request| {
        if request.header("Authorization") != Some("Bearer test-token") {
            return Reply::new(401, r#"{"message": "Bad credentials"}"#);
        }
        let repo = "/repos/org/manifests";
        let json = |status: u16, value: serde_json::Value| Reply::new(status, value.to_string());
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", p) if p == repo => json(200, serde_json::json!({"default_branch": "main"})),
            ("GET", p) if p == format!("{repo}/contents/{path}?ref=main") => {
                json(200, contents.clone())
            }
            ("GET", p) if p == format!("{repo}/git/ref/heads/main") => {
                json(200, serde_json::json!({"object": {"sha": "c0ffee"}}))
            }
            ("POST", p) if p == format!("{repo}/git/refs") => {
                json(201, serde_json::json!({"ref": "ok"}))
            }
            ("PUT", p) if p == format!("{repo}/contents/{path}") => json(
                200,
                serde_json::json!({"content": {"sha": "blob-2"}, "commit": {"sha": "c0ffee2"}}),
            ),
            ("POST", p) if p == format!("{repo}/pulls") && pull_status == 201 => json(
                201,
                serde_json::json!({"number": 7, "html_url": "https://github.example/org/manifests/pull/7"}),
            ),
            ("POST", p) if p == format!("{repo}/pulls") => Reply::new(
                pull_status,
                r#"{"message": "Validation Failed: a pull request already exists"}"#,
            ),
            ("DELETE", p) if p.starts_with(&format!("{repo}/git/refs/heads/promote/")) => {
                Reply::new(204, "")
            }
            _ => Reply::new(404, r#"{"message": "Not Found"}"#),
        }
    })
}

/// A git repository holding the corpus project, its `origin` on GitHub; the images file.
fn repository_with_origin(dir: &Path) -> String {
    let original = corpus_project(dir, PROJECT);
    git(dir, &["init", "-q", "-b", "main"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "git@github.com:org/manifests.git",
        ],
    );
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "corpus"]);
    original
}

fn add_with_pull_request(dir: &Path, api: &str) -> Output {
    let digest = format!("sha256:{}", "e".repeat(64));
    Command::new(env!("CARGO_BIN_EXE_promoter"))
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
            "--pull-request",
        ])
        .env("GITHUB_TOKEN", "test-token")
        .env_remove("PROMOTER_GITHUB_TOKEN")
        .env("PROMOTER_GITHUB_API", api)
        .current_dir(dir)
        .output()
        .expect("run the promoter")
}

#[test]
fn pull_request_opens_through_the_github_api() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("a folder");
    let original = repository_with_origin(dir.path());
    let path = format!("images/{PROJECT}/images.yaml");
    let github = fake_github(&path, &original, 201);
    let out = add_with_pull_request(dir.path(), &github.url(""));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Opened pull request #7: https://github.example/org/manifests/pull/7"),
        "{stdout}"
    );
    let edited = images_yaml(dir.path(), PROJECT);
    assert_ne!(edited, original);

    let requests = github.requests();
    let calls: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /repos/org/manifests".to_owned(),
            format!("GET /repos/org/manifests/contents/{path}?ref=main"),
            "GET /repos/org/manifests/git/ref/heads/main".to_owned(),
            "POST /repos/org/manifests/git/refs".to_owned(),
            format!("PUT /repos/org/manifests/contents/{path}"),
            "POST /repos/org/manifests/pulls".to_owned(),
        ]
    );
    let branch_ref = requests[3].json();
    assert_eq!(
        branch_ref["sha"], "c0ffee",
        "the branch starts at the base commit"
    );
    let branch = branch_ref["ref"]
        .as_str()
        .expect("ref")
        .trim_start_matches("refs/heads/")
        .to_owned();
    assert!(branch.starts_with("promote/etcd-dump-v3.2.0-"), "{branch}");
    let put = requests[4].json();
    assert_eq!(put["branch"], branch.as_str());
    assert_eq!(put["sha"], "blob-1", "the update names the base's blob");
    let content = base64::engine::general_purpose::STANDARD
        .decode(put["content"].as_str().expect("content"))
        .expect("base64");
    assert_eq!(
        String::from_utf8(content).expect("UTF-8"),
        edited,
        "the commit holds the edited file"
    );
    let pull = requests[5].json();
    assert_eq!(pull["head"], branch.as_str());
    assert_eq!(pull["base"], "main");
    assert_eq!(pull["title"], "Promote etcd-dump v3.2.0");
    let body = pull["body"].as_str().expect("body");
    assert!(
        body.contains(&format!("Adds to `{path}`")) && body.contains("v3.2.0"),
        "{body}"
    );
}

#[test]
fn pull_request_is_refused_when_the_base_differs_from_the_checkout() {
    let dir = tempfile::tempdir().expect("a folder");
    let original = repository_with_origin(dir.path());
    let path = format!("images/{PROJECT}/images.yaml");
    let github = fake_github(&path, &format!("{original}# changed on main since\n"), 201);
    let out = add_with_pull_request(dir.path(), &github.url(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("differs from the file edited here: update your checkout"),
        "{stderr}"
    );
    assert!(
        github.requests().iter().all(|r| r.method == "GET"),
        "nothing written on GitHub"
    );
}

#[test]
fn a_failed_pull_request_removes_its_branch() {
    let dir = tempfile::tempdir().expect("a folder");
    let original = repository_with_origin(dir.path());
    let path = format!("images/{PROJECT}/images.yaml");
    let github = fake_github(&path, &original, 422);
    let out = add_with_pull_request(dir.path(), &github.url(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("422") && stderr.contains("Validation Failed"),
        "{stderr}"
    );
    let requests = github.requests();
    let created = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/git/refs"))
        .expect("the branch was created")
        .json()["ref"]
        .as_str()
        .expect("ref")
        .to_owned();
    let last = requests.last().expect("requests");
    assert_eq!(last.method, "DELETE");
    assert_eq!(
        last.path,
        format!("/repos/org/manifests/git/{created}"),
        "the branch it created is deleted again"
    );
}
