//! Fetching manifests (`promoter::source`) from real servers, then loading them.
//!
//! GitHub: a tiny_http server plays the API (`/repos/o/r/tarball/SHA` redirects to a
//! `/codeload/...` URL carrying a download token of its own) and serves tar.gz archives built
//! here from `examples/thin`, with GitHub's quirks: a `pax_global_header` entry, one top-level
//! folder, a symbolic link. Errors: 404, 503, a rate-limited 403, a `../` entry, a missing
//! subfolder. Object storage: `examples/thin` uploaded to SeaweedFS (a real S3 store) and read
//! back with `object_prefix("s3://...")`, and the `file://` variant.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use promoter::source::{Fetched, GithubRepo, SourceError, github_tarball, object_prefix};
use promoter::state::{S3Store, StateStore};
use promoter_tests::harness::child::ChildTest;
use promoter_tests::harness::receiver::{Receiver, Reply};
use promoter_tests::harness::seaweed::SeaweedFs;
use tar::{EntryType, Header};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "ghp_test_token_never_shown";
const DOWNLOAD_TOKEN: &str = "codeload-secret";
const BUCKET: &str = "manifests-bucket";
/// Set in the child process that runs the S3 scenario with its own environment.
const S3_CHILD: &str = "MANIFEST_SOURCE_S3_ENDPOINT";

fn thin_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/thin")
}

/// Every file below `root`, as (relative path with `/`, content), sorted.
fn files_of(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("below the root");
                let key = relative.to_string_lossy().replace('\\', "/");
                files.push((key, std::fs::read(&path).expect("read a file")));
            }
        }
    }
    files.sort();
    files
}

/// Appends an entry with `name` written as given (the builder's checks would refuse `..`).
fn raw_entry(tar: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, data: &[u8]) {
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    if kind == EntryType::Symlink {
        header.set_link_name("manifests").expect("link name");
    }
    header.set_cksum();
    tar.append(&header, data).expect("append an entry");
}

/// A tarball as GitHub makes it: a global pax header with the commit, `o-r-SHA/`, the thin
/// example tree, a README and a symbolic link; then `extra` entries as given.
fn github_archive(extra: &[(&str, &[u8])]) -> Vec<u8> {
    gzip(&github_tar(extra))
}

/// One gzip member of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// The tar of [`github_archive`], before compression.
fn github_tar(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let top = format!("o-r-{}", &SHA[..7]);
    let mut tar = tar::Builder::new(Vec::new());
    let comment = format!("52 comment={SHA}\n");
    raw_entry(
        &mut tar,
        "pax_global_header",
        EntryType::XGlobalHeader,
        comment.as_bytes(),
    );
    raw_entry(&mut tar, &format!("{top}/"), EntryType::Directory, b"");
    raw_entry(
        &mut tar,
        &format!("{top}/README.md"),
        EntryType::Regular,
        b"# manifests\n",
    );
    raw_entry(&mut tar, &format!("{top}/current"), EntryType::Symlink, b"");
    for (key, content) in files_of(&thin_example()) {
        raw_entry(
            &mut tar,
            &format!("{top}/{key}"),
            EntryType::Regular,
            &content,
        );
    }
    for (name, content) in extra {
        let kind = if name.starts_with("PaxHeader") {
            EntryType::XHeader
        } else {
            EntryType::Regular
        };
        raw_entry(&mut tar, name, kind, content);
    }
    tar.into_inner().expect("finish the tar")
}

/// A fake GitHub API and codeload on `127.0.0.1`: `/repos/o/<name>/tarball/<sha>` answers
/// by `<name>` (`r`, `evil`: a redirect; `missing`: 404; `flaky`: 503; `limited`: a
/// rate-limited 403; `hiccup`: 502 the first time, then a redirect), `/codeload/o/<name>/...`
/// serves `archives[name]`.
fn fake_github(archives: HashMap<&'static str, Vec<u8>>) -> Receiver {
    let hiccups = std::sync::atomic::AtomicUsize::new(0);
    Receiver::start(move |_, request| {
        let path = request.path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts[..] {
            ["repos", "o", "hiccup", "tarball", _]
                if hiccups.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 =>
            {
                Reply::new(502, "bad gateway")
            }
            ["repos", "o", "missing", "tarball", _] => Reply::new(
                404,
                r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#,
            ),
            ["repos", "o", "flaky", "tarball", _] => Reply::new(503, "upstream unavailable"),
            ["repos", "o", "limited", "tarball", _] => {
                Reply::new(403, r#"{"message":"API rate limit exceeded"}"#)
                    .header("x-ratelimit-remaining", "0")
            }
            ["repos", "o", name, "tarball", sha] => {
                // The API's own host and port, as the client sent them.
                let host = request.header("host").expect("a Host header");
                let location = format!(
                    "http://{host}/codeload/o/{name}/legacy.tar.gz/{sha}?token={DOWNLOAD_TOKEN}"
                );
                Reply::new(302, "").header("Location", &location)
            }
            ["codeload", "o", name, ..] if archives.contains_key(name) => {
                Reply::new(200, archives[name].clone()).header("Content-Type", "application/x-gzip")
            }
            _ => Reply::new(404, "no such route"),
        }
    })
}

/// Loads `fetched` as manifests and checks they are the thin example's two projects.
fn assert_thin_example(fetched: &Fetched) {
    let loaded = promoter::manifest::load(&[fetched.root().to_path_buf()]).expect("load");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    let projects: Vec<&str> = loaded
        .manifests
        .iter()
        .map(|m| m.project.as_str())
        .collect();
    assert_eq!(projects, ["hello", "tools"]);
}

/// The error and its causes, checked to hold no secret.
fn describe(error: &SourceError) -> String {
    let text = promoter::error_chain::error_chain(error);
    let debug = format!("{error:?}");
    for secret in [TOKEN, DOWNLOAD_TOKEN] {
        assert!(
            !text.contains(secret) && !debug.contains(secret),
            "{text}\n{debug}"
        );
    }
    text
}

async fn fetch(github: &Receiver, name: &str, subdir: &str) -> Result<Fetched, SourceError> {
    let api_base = github.url("");
    let repository = format!("o/{name}");
    let repo = GithubRepo {
        api_base: &api_base,
        repository: &repository,
        token: Some(TOKEN),
    };
    github_tarball(&reqwest::Client::new(), &repo, SHA, subdir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_tarball_is_fetched_and_loads() {
    let github = fake_github(HashMap::from([("r", github_archive(&[]))]));
    let fetched = fetch(&github, "r", "").await.expect("fetched");
    assert_thin_example(&fetched);
    assert_eq!(
        fetched.files, 5,
        "four manifests and the README; the link skipped"
    );
    assert!(
        !fetched.root().join("current").exists(),
        "links are not created"
    );
    assert!(fetched.root().join("README.md").is_file());

    let seen = github.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let api = &seen[0];
    assert_eq!(api.path, format!("/repos/o/r/tarball/{SHA}"));
    let h = |name: &str| api.header(name);
    assert_eq!(h("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(h("accept"), Some("application/vnd.github+json"));
    assert_eq!(h("x-github-api-version"), Some("2022-11-28"));
    assert!(
        h("user-agent").is_some_and(|ua| ua.starts_with("promoter/")),
        "{api:?}"
    );
    assert!(seen[1].path.starts_with("/codeload/o/r/"), "{seen:?}");

    // The temporary folder goes with the value.
    let tree = fetched.tree().to_path_buf();
    drop(fetched);
    assert!(!tree.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_hiccup_is_retried() {
    let github = fake_github(HashMap::from([("hiccup", github_archive(&[]))]));
    let fetched = fetch(&github, "hiccup", "")
        .await
        .expect("fetched after a 502");
    assert_thin_example(&fetched);
    let paths: Vec<String> = github.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 3, "502, redirect, download: {paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_subdirs() {
    let github = fake_github(HashMap::from([("r", github_archive(&[]))]));
    let fetched = fetch(&github, "r", "images/")
        .await
        .expect("an existing subfolder");
    assert_eq!(fetched.root(), fetched.tree().join("images"));
    assert!(fetched.root().join("hello/images.yaml").is_file());

    let error = fetch(&github, "r", "registry.k8s.io")
        .await
        .expect_err("missing subfolder");
    let text = describe(&error);
    assert!(
        matches!(error, SourceError::MissingSubdir { .. }),
        "{error:?}"
    );
    assert!(
        text.contains("`registry.k8s.io`") && text.contains("o/r@"),
        "{text}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_error_statuses() {
    let github = fake_github(HashMap::new());

    let error = fetch(&github, "missing", "").await.expect_err("404");
    let text = describe(&error);
    assert!(!error.is_retryable(), "{text}");
    assert!(text.contains("o/missing") && text.contains("404"), "{text}");
    assert!(
        text.contains("Not Found"),
        "GitHub's message is kept: {text}"
    );

    let error = fetch(&github, "flaky", "").await.expect_err("503");
    let text = describe(&error);
    assert!(error.is_retryable(), "{text}");
    assert!(text.contains("503") && text.contains("o/flaky"), "{text}");
    let tries = github
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/repos/o/flaky/"))
        .count();
    assert_eq!(
        tries,
        promoter::source::GITHUB_RETRY.attempts as usize,
        "a 503 is retried, within the policy"
    );

    let error = fetch(&github, "limited", "")
        .await
        .expect_err("rate limited");
    let text = describe(&error);
    assert!(error.is_retryable(), "{text}");
    assert!(
        text.contains("403") && text.contains("rate limited"),
        "{text}"
    );

    // Nothing listens: a connection error, retryable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let api_base = format!("http://127.0.0.1:{closed}");
    let repo = GithubRepo {
        api_base: &api_base,
        repository: "o/r",
        token: Some(TOKEN),
    };
    let error = github_tarball(&reqwest::Client::new(), &repo, SHA, "")
        .await
        .expect_err("connection refused");
    let text = describe(&error);
    assert!(matches!(error, SourceError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_archive_escaping_is_refused() {
    // Unique, so that an escape cannot be confused with a leftover.
    let name = format!("evil-{}-{SHA}", std::process::id());
    let entry = format!("../{name}");
    let archive = github_archive(&[(entry.as_str(), b"pwned".as_slice())]);
    let github = fake_github(HashMap::from([("evil", archive)]));

    let error = fetch(&github, "evil", "").await.expect_err("refused");
    let text = describe(&error);
    assert!(
        matches!(error, SourceError::UnsafeEntry { .. }),
        "{error:?}"
    );
    assert!(text.contains(&entry) && text.contains("o/evil@"), "{text}");
    assert!(!error.is_retryable());
    // The extraction folder is a child of the temporary folder: `..` from it lands there.
    let escaped = std::env::temp_dir().join(&name);
    assert!(!escaped.exists(), "{} was written", escaped.display());
}

/// An archive split over two gzip members (as `gzip a >x; gzip b >>x` makes) is read whole: an
/// invalid project in the second member used to be cut off, and the rest validated as if it
/// were all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_archive_in_two_gzip_members_is_read_whole() {
    let top = format!("o-r-{}", &SHA[..7]);
    let manifest = format!("{top}/manifests/late/promoter-manifest.yaml");
    let images = format!("{top}/images/late/images.yaml");
    let registries = std::fs::read(thin_example().join("manifests/hello/promoter-manifest.yaml"))
        .expect("a thin manifest");
    let extra: [(&str, &[u8]); 2] = [
        (&manifest, &registries),
        (&images, b"- name: Not-A-Valid-Name\n  dmap: {}\n"),
    ];
    let whole = github_tar(&extra);
    // The tar without the extra entries, less its two end-of-archive blocks.
    let split = github_tar(&[]).len() - 1024;
    let mut members = gzip(&whole[..split]);
    members.extend(gzip(&whole[split..]));
    let github = fake_github(HashMap::from([("r", members)]));

    let fetched = fetch(&github, "r", "").await.expect("fetched");
    assert_eq!(fetched.files, 7, "the second member's two files too");
    let loaded = promoter::manifest::load(&[fetched.root().to_path_buf()]).expect("load");
    assert!(!loaded.is_valid());
    let text: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|d| d.contains("images/late/images.yaml:1:9: invalid image name")),
        "{text:?}"
    );
}

/// A hostile archive (a PAX header claiming a megabyte of path) is refused once 64 KiB of
/// headers were read, and answered as the sender's fault: a 4xx, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_hostile_archive_is_the_senders_fault() {
    let top = format!("o-r-{}", &SHA[..7]);
    let path = format!("{top}/{}", "p".repeat(1 << 20));
    // `LEN path=VALUE\n`, LEN counting the whole record, itself included.
    let body = format!(" path={path}\n");
    let mut len = body.len();
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    let record = format!("{len}{body}");
    let archive = github_archive(&[
        ("PaxHeader/x", record.as_bytes()),
        (&format!("{top}/x"), b"x"),
    ]);
    let github = fake_github(HashMap::from([("hostile", archive)]));

    let error = fetch(&github, "hostile", "").await.expect_err("refused");
    let text = describe(&error);
    assert!(
        matches!(error, SourceError::OversizedHeader { limit: 65536, .. }),
        "{error:?}"
    );
    assert!(text.contains("o/hostile@") && text.len() < 400, "{text}");
    assert!(error.is_client_error() && !error.is_retryable());
    let status = promoter::steps::error::StepError::from(error).http_status();
    assert!((400..500).contains(&status), "answered {status}");
}

/// A folder of objects: `file://` URLs, the same code path as any state store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_prefix_from_a_local_folder() {
    let url = format!("file://{}", thin_example().display());
    let fetched = object_prefix(&url, "").await.expect("fetched");
    assert_thin_example(&fetched);
    assert_eq!(fetched.files, 4);
    let expected: u64 = files_of(&thin_example())
        .iter()
        .map(|(_, content)| content.len() as u64)
        .sum();
    assert_eq!(fetched.bytes, expected);

    let error = object_prefix(&url, "nope")
        .await
        .expect_err("missing subfolder");
    assert!(describe(&error).contains("`nope`"), "{error}");
}

/// S3 on SeaweedFS. `object_prefix` configures S3 from the environment, which a test may not
/// change while others run (and `unsafe` is forbidden): the scenario runs in a child process
/// of this test binary with `AWS_ENDPOINT_URL_S3` and credentials set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_prefix_from_s3() {
    if let Some(endpoint) = std::env::var_os(S3_CHILD) {
        return s3_child(&endpoint.to_string_lossy()).await;
    }
    let server = SeaweedFs::start(&[BUCKET]);
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(server.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("any", "any", None, None, "test"))
        .load()
        .await;
    let store = StateStore::from(
        S3Store::with_config(config, &format!("{BUCKET}/manifests"))
            .await
            .expect("open the bucket"),
    );
    for (key, content) in files_of(&thin_example()) {
        store
            .create(&key, Bytes::from(content))
            .await
            .expect("upload")
            .expect("a new object");
    }

    ChildTest::new(module_path!(), "object_prefix_from_s3")
        .s3(&server.endpoint())
        .env(S3_CHILD, server.endpoint())
        .run()
        .assert_one_passed();
}

/// The child's part: read the uploaded tree back through `s3://` URLs.
async fn s3_child(endpoint: &str) {
    let fetched = object_prefix(&format!("s3://{BUCKET}/manifests"), "")
        .await
        .unwrap_or_else(|e| panic!("fetch from {endpoint}: {}", describe(&e)));
    assert_thin_example(&fetched);
    assert_eq!(fetched.files, 4);

    let fetched = object_prefix(&format!("s3://{BUCKET}/manifests/"), "manifests")
        .await
        .expect("a subfolder");
    assert!(
        fetched
            .root()
            .join("hello/promoter-manifest.yaml")
            .is_file()
    );

    let error = object_prefix(&format!("s3://{BUCKET}/nothing-here"), "")
        .await
        .expect_err("empty prefix");
    assert!(matches!(error, SourceError::NoObjects { .. }), "{error:?}");
    assert!(describe(&error).contains("nothing-here"));

    let error = object_prefix("s3://no-such-bucket/manifests", "")
        .await
        .expect_err("missing bucket");
    let text = describe(&error);
    assert!(text.contains("no-such-bucket"), "{text}");
    assert!(!error.is_retryable(), "{text}");
}
