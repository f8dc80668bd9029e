//! Fetching the manifests folder through GitHub's trees and blobs API (`promoter::source::
//! github_tree`) from a fake GitHub on loopback, with the blob cache in a state folder: only the
//! folder's files are downloaded, a second push downloads only what changed, a blob that does
//! not hash to its id is refused, and a truncated tree sends the caller to the tarball.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use promoter::manifest;
use promoter::source::{GithubRepo, SourceError, TreeOutcome, git_blob_id, github_tree};
use promoter::state::StateStore;
use promoter_tests::harness::receiver::{Receiver, Reply};
use serde_json::json;

const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";
const TRUNCATED: &str = "3333333333333333333333333333333333333333";
const LYING: &str = "4444444444444444444444444444444444444444";

/// Commit → (path, content) of its files.
type Commits = HashMap<&'static str, Vec<(String, Vec<u8>)>>;

fn example_files(images_extra: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/thin");
    let mut files = vec![
        ("README.md".to_owned(), b"# the repository\n".to_vec()),
        ("docs/big.bin".to_owned(), vec![7u8; 200_000]),
    ];
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                let relative = path
                    .strip_prefix(&root)
                    .expect("below")
                    .to_string_lossy()
                    .into_owned();
                let mut content = std::fs::read(&path).expect("read");
                if relative == "images/hello/images.yaml" {
                    content.extend_from_slice(images_extra.as_bytes());
                }
                files.push((format!("registry/{relative}"), content));
            }
        }
    }
    files.sort();
    files
}

/// A fake GitHub API for `o/r`: trees of `commits`, and their blobs by id (`LYING`'s blob answers
/// other bytes than its id says).
fn fake_github(commits: Commits) -> Receiver {
    let blobs: HashMap<String, Vec<u8>> = commits
        .values()
        .flatten()
        .map(|(_, content)| (git_blob_id(content), content.clone()))
        .collect();
    let commits = Arc::new(Mutex::new(commits));
    Receiver::start(move |_, request| {
        let path = request.path.clone();
        if let Some(rest) = path.strip_prefix("/repos/o/r/git/trees/") {
            let sha = rest.trim_end_matches("?recursive=1");
            let commits = commits.lock().expect("commits");
            let Some(files) = commits.get(sha) else {
                return Reply::new(404, r#"{"message":"Not Found"}"#);
            };
            let mut tree: Vec<serde_json::Value> = files
                .iter()
                .map(|(path, content)| {
                    json!({"path": path, "mode": "100644", "type": "blob",
                           "sha": git_blob_id(content), "size": content.len()})
                })
                .collect();
            tree.push(json!({"path": "registry", "mode": "040000", "type": "tree",
                             "sha": "0".repeat(40)}));
            tree.push(
                json!({"path": "registry/current", "mode": "120000", "type": "blob",
                             "sha": git_blob_id(b"manifests"), "size": 9}),
            );
            let body = json!({"sha": sha, "tree": tree, "truncated": sha == TRUNCATED});
            return Reply::new(200, body.to_string()).header("Content-Type", "application/json");
        }
        if let Some(id) = path.strip_prefix("/repos/o/r/git/blobs/") {
            if request.header("accept") != Some("application/vnd.github.raw+json") {
                return Reply::new(415, "raw only");
            }
            return match blobs.get(id) {
                Some(content) if commits.lock().expect("commits").contains_key(LYING) => {
                    let mut other = content.clone();
                    other.push(b'\n');
                    Reply::new(200, other)
                }
                Some(content) => Reply::new(200, content.clone()),
                None => Reply::new(404, r#"{"message":"Not Found"}"#),
            };
        }
        Reply::new(404, r#"{"message":"Not Found"}"#)
    })
}

async fn fetch(
    github: &Receiver,
    sha: &str,
    cache: &StateStore,
) -> Result<TreeOutcome, SourceError> {
    let base = github.url("");
    let repo = GithubRepo {
        api_base: &base,
        repository: "o/r",
        token: Some("ghp_test"),
    };
    github_tree(&reqwest::Client::new(), &repo, sha, "registry", cache).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_downloads_the_tree_and_only_the_files_it_changed() {
    let first = example_files("");
    let second = example_files("# one more line\n");
    let folder_files = first
        .iter()
        .filter(|(p, _)| p.starts_with("registry/"))
        .count();
    let github = fake_github(HashMap::from([
        (FIRST, first.clone()),
        (SECOND, second.clone()),
        (TRUNCATED, first.clone()),
    ]));
    let state = tempfile::tempdir().expect("a folder");
    let cache = StateStore::open(&format!("file://{}", state.path().display()))
        .await
        .expect("state");

    let TreeOutcome::Fetched(fetched, cost) = fetch(&github, FIRST, &cache).await.expect("fetched")
    else {
        panic!("the tree is usable");
    };
    assert_eq!(
        cost.requests,
        1 + folder_files,
        "the tree and each file of the folder: {cost:?}"
    );
    assert_eq!(cost.cached, 0);
    assert_eq!(fetched.files, folder_files);
    let loaded = manifest::load(&[fetched.root().to_path_buf()]).expect("load");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    assert!(
        !fetched.tree().join("README.md").exists(),
        "outside the folder"
    );
    assert!(
        !fetched.root().join("current").exists(),
        "links are skipped"
    );
    let downloaded_first = cost.downloaded;
    assert!(
        downloaded_first < 200_000,
        "docs/big.bin is not downloaded: {cost:?}"
    );

    // The next push changes one file: the tree and that file.
    let TreeOutcome::Fetched(fetched, cost) =
        fetch(&github, SECOND, &cache).await.expect("fetched")
    else {
        panic!("the tree is usable");
    };
    assert_eq!(cost.requests, 2, "{cost:?}");
    assert_eq!(cost.cached, folder_files - 1, "{cost:?}");
    let changed = std::fs::read_to_string(fetched.root().join("images/hello/images.yaml"))
        .expect("the changed file");
    assert!(changed.ends_with("# one more line\n"));
    let blob_requests = github
        .requests()
        .iter()
        .filter(|r| r.path.contains("/git/blobs/"))
        .count();
    assert_eq!(blob_requests, folder_files + 1);
    let tree_request = github
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/git/trees/"))
        .expect("a tree request");
    assert_eq!(
        tree_request.header("authorization"),
        Some("Bearer ghp_test")
    );
    assert_eq!(
        tree_request.path,
        format!("/repos/o/r/git/trees/{FIRST}?recursive=1")
    );

    // A truncated tree, or a repository without one: the tarball.
    assert!(matches!(
        fetch(&github, TRUNCATED, &cache).await,
        Ok(TreeOutcome::UseTarball(_))
    ));
    assert!(matches!(
        fetch(&github, "5555555555555555555555555555555555555555", &cache).await,
        Ok(TreeOutcome::UseTarball(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_hash_to_its_id_is_refused_and_not_cached() {
    let github = fake_github(HashMap::from([(LYING, example_files(""))]));
    let state = tempfile::tempdir().expect("a folder");
    let cache = StateStore::open(&format!("file://{}", state.path().display()))
        .await
        .expect("state");
    let error = fetch(&github, LYING, &cache).await.expect_err("refused");
    assert!(matches!(error, SourceError::Malformed { .. }), "{error}");
    assert!(
        error.to_string().contains("does not hash to its id"),
        "{error}"
    );
    assert!(error.is_client_error() && !error.is_retryable());
    assert!(
        cache.list("sources/").await.expect("list").is_empty(),
        "nothing cached"
    );
}
