//! The registry client against a tiny fake registry (on `127.0.0.1`, spoken to over plain
//! HTTP) answering what real registries only do under load or failure: throttling
//! with `Retry-After`, server errors, refused connections, content that does not match its
//! digest, slow answers. Checks retries, the per-host rate and concurrency limits, and bearer
//! tokens being fetched and cached.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promoter_tests::harness::fake_registry::{Fake, Reply, Seen};

use promoter::http::retry::RetryPolicy;
use promoter::reference::{Digest, Reference, Repository, Tag};
use promoter::registry::limits::LimitConfig;
use promoter::registry::{Client, ClientConfig, Manifest, RegistryError};

/// A tag or digest, as the tests write them.
fn r(text: &str) -> Reference {
    text.parse().expect("a tag or digest")
}

/// A tag.
fn tag(text: &str) -> Tag {
    text.parse().expect("a tag")
}

/// A digest.
fn d(text: &str) -> Digest {
    text.parse().expect("a digest")
}

/// A client with `retry` and `limits`, no credentials.
fn client(retry: RetryPolicy, limits: LimitConfig) -> Client {
    Client::new(
        ClientConfig {
            retry,
            limits,
            ..ClientConfig::default()
        },
        Default::default(),
    )
    .expect("build the client")
}

/// Quick retries, for tests.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        budget: Duration::from_secs(60),
    }
}

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest HEAD answer.
fn found() -> Reply {
    Reply::status(200)
        .header("Docker-Content-Digest", DIGEST)
        .header("Content-Type", OCI_MANIFEST)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_after_the_servers_retry_after() {
    let fake = Fake::script(vec![Reply::status(429).header("Retry-After", "1"), found()]);
    let client = client(RetryPolicy::default(), LimitConfig::default());
    let started = Instant::now();
    let head = client
        .manifest_head(&fake.repository("app"), r("v1"))
        .await
        .expect("succeeds after the retry")
        .expect("found");
    let elapsed = started.elapsed();
    assert_eq!(head.digest, Some(d(DIGEST)));
    assert!(elapsed >= Duration::from_millis(950), "waited {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "waited {elapsed:?}");
    assert_eq!(client.counts.retried.load(Ordering::Relaxed), 1);
    assert_eq!(client.counts.total.load(Ordering::Relaxed), 2);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    assert!(
        seen.iter()
            .all(|s| s.method == "HEAD" && s.url == "/v2/app/manifests/v1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_by_the_policy() {
    let fake = Fake::script(vec![
        Reply::status(503).header("Retry-After", "120"),
        found(),
    ]);
    let client = client(
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(300),
            budget: Duration::from_secs(60),
        },
        LimitConfig::default(),
    );
    let started = Instant::now();
    let head = client
        .manifest_head(&fake.repository("app"), r("v1"))
        .await
        .expect("succeeds after the retry");
    assert!(head.is_some());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_success() {
    let bytes = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:1","size":1},"layers":[]}"#;
    let digest = Digest::of(bytes);
    let fake = Fake::script(vec![
        Reply::status(503).body(b"busy"),
        Reply::status(503).body(b"busy"),
        Reply::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", digest.as_str())
            .body(bytes),
    ]);
    let client = client(quick(4), LimitConfig::default());
    let manifest = client
        .manifest_get(&fake.repository("app"), &digest)
        .await
        .expect("succeeds on the third try")
        .expect("found");
    assert_eq!(
        manifest,
        Manifest {
            media_type: OCI_MANIFEST.to_owned(),
            bytes: bytes.to_vec().into(),
            digest: digest.clone(),
        }
    );
    assert_eq!(client.counts.retried.load(Ordering::Relaxed), 2);
    assert_eq!(client.counts.total.load(Ordering::Relaxed), 3);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_is_resolved_by_get_when_head_has_no_digest() {
    let bytes = b"{\"schemaVersion\":2}";
    let fake = Fake::start(move |seen, _| match seen.method.as_str() {
        // No Docker-Content-Digest on HEAD (some registries omit it).
        "HEAD" => Reply::status(200).header("Content-Type", OCI_MANIFEST),
        _ => Reply::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(bytes),
    });
    let client = client(quick(2), LimitConfig::default());
    let digest = client
        .resolve(&fake.repository("app"), &tag("v1"))
        .await
        .expect("resolved");
    assert_eq!(digest, Some(Digest::of(bytes)));
    let methods: Vec<String> = fake.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_absent_without_retry() {
    let fake = Fake::script(vec![Reply::status(404)]);
    let client = client(quick(5), LimitConfig::default());
    let head = client
        .manifest_head(&fake.repository("app"), d(DIGEST))
        .await
        .expect("404 is an answer");
    assert_eq!(head, None);
    assert_eq!(client.counts.total.load(Ordering::Relaxed), 1);
    assert_eq!(client.counts.retried.load(Ordering::Relaxed), 0);
    let exists = client
        .blob_exists(&fake.repository("app"), &d(DIGEST))
        .await
        .expect("404 is an answer");
    assert!(!exists);
    assert_eq!(fake.seen().len(), 2, "no retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_server_error_fails_after_the_configured_attempts() {
    let fake =
        Fake::script(vec![Reply::status(500).body(
            br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
        )]);
    let client = client(quick(3), LimitConfig::default());
    let error = client
        .manifest_head(&fake.repository("app"), r("v1"))
        .await
        .expect_err("500 every time");
    match &error {
        RegistryError::Status { status, what, .. } => {
            assert_eq!(status.as_u16(), 500);
            assert!(what.contains("/v2/app/manifests/v1"), "{what}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(error.is_retryable(), "a later run may succeed");
    assert_eq!(fake.seen().len(), 3, "three attempts in all");
    assert_eq!(client.counts.total.load(Ordering::Relaxed), 3);
    assert_eq!(client.counts.retried.load(Ordering::Relaxed), 2);

    // The body is reported with a GET (a HEAD answer has none).
    let error = client
        .manifest_get(&fake.repository("app"), r("v1"))
        .await
        .expect_err("500 every time");
    assert!(error.to_string().contains("disk on fire"), "{error}");
    assert_eq!(fake.seen().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_will_not_change_are_not_retried() {
    for status in [400, 403, 501] {
        let fake = Fake::script(vec![Reply::status(status)]);
        let client = client(quick(5), LimitConfig::default());
        let error = client
            .manifest_head(&fake.repository("app"), r("v1"))
            .await
            .expect_err("an error status");
        assert!(
            matches!(&error, RegistryError::Status { status: s, .. } if s.as_u16() == status),
            "{error:?}"
        );
        assert!(!error.is_retryable(), "{status}");
        assert_eq!(fake.seen().len(), 1, "{status} was retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_then_reported() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let repository: Repository = format!("127.0.0.1:{port}/app").parse().expect("HOST/PATH");
    let client = client(quick(3), LimitConfig::default());
    let error = client
        .manifest_head(&repository, r("v1"))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, RegistryError::Transport { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.counts.total.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_does_not_match_its_digest_is_refused() {
    let fake = Fake::script(vec![
        Reply::status(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(b"{\"not\":\"what was asked\"}"),
    ]);
    let client = client(quick(3), LimitConfig::default());
    let error = client
        .manifest_get(&fake.repository("app"), d(DIGEST))
        .await
        .expect_err("wrong content");
    match &error {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, DIGEST);
            assert_eq!(
                *actual,
                Digest::of(b"{\"not\":\"what was asked\"}").to_string()
            );
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!error.is_retryable());
    assert_eq!(fake.seen().len(), 1);

    // A registry that digests a pushed manifest differently is caught too.
    let fake = Fake::script(vec![
        Reply::status(201).header("Docker-Content-Digest", DIGEST),
    ]);
    let bytes = b"{}";
    let manifest = Manifest {
        media_type: OCI_MANIFEST.to_owned(),
        bytes: bytes.to_vec().into(),
        digest: Digest::of(bytes),
    };
    let error = client
        .manifest_put(&fake.repository("app"), r("v1"), &manifest)
        .await
        .expect_err("the registry announces another digest");
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_spaces_requests_per_host() {
    let fake = Fake::script(vec![found()]);
    let other = Fake::script(vec![found()]);
    let client = Arc::new(client(
        quick(1),
        LimitConfig {
            concurrency: 32,
            requests_per_second: NonZeroU32::new(10),
        },
    ));
    let repository = fake.repository("app");
    let started = Instant::now();
    let heads = (0..20).map(|_| {
        let client = Arc::clone(&client);
        let repository = repository.clone();
        tokio::spawn(async move { client.manifest_head(&repository, r("v1")).await })
    });
    for head in futures_join(heads).await {
        assert!(head.is_some(), "every HEAD answered");
    }
    let elapsed = started.elapsed();
    // A burst of 10, then one every 100 ms: the 20th starts ~1 s after the first.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 20);
    let first = seen.iter().map(|s| s.at).min().expect("requests");
    let last = seen.iter().map(|s| s.at).max().expect("requests");
    assert!(
        last - first >= Duration::from_millis(850),
        "the server saw 20 requests within {:?}",
        last - first
    );
    // In any window of 500 ms past the burst, at most ~6 requests.
    let mut times: Vec<Duration> = seen.iter().map(|s| s.at - first).collect();
    times.sort_unstable();
    let after_burst: Vec<Duration> = times[10..].to_vec();
    for (i, t) in after_burst.iter().enumerate() {
        let in_window = after_burst[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_millis(500))
            .count();
        assert!(
            in_window <= 6,
            "{in_window} requests within 500 ms: {times:?}"
        );
    }

    // Another host has a budget of its own.
    let other_started = Instant::now();
    client
        .manifest_head(&other.repository("app"), r("v1"))
        .await
        .expect("another host");
    assert!(other_started.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_caps_requests_in_flight() {
    let fake = Fake::script(vec![found().delay(Duration::from_millis(150))]);
    let client = Arc::new(client(
        quick(1),
        LimitConfig {
            concurrency: 2,
            requests_per_second: NonZeroU32::new(1000),
        },
    ));
    let repository = fake.repository("app");
    let started = Instant::now();
    let heads = (0..8).map(|_| {
        let client = Arc::clone(&client);
        let repository = repository.clone();
        tokio::spawn(async move { client.manifest_head(&repository, r("v1")).await })
    });
    for head in futures_join(heads).await {
        assert!(head.is_some());
    }
    assert_eq!(fake.max_in_flight(), 2, "two requests in flight at most");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

/// A fake token-auth registry: `/token` issues `tok-N`; `/v2/...` wants any issued token.
fn token_registry(delay: Duration) -> Fake {
    let issued = Arc::new(AtomicUsize::new(0));
    let port_cell: Arc<Mutex<Option<u16>>> = Arc::new(Mutex::new(None));
    let cell = Arc::clone(&port_cell);
    let fake = Fake::start(move |seen, _| {
        if seen.url.starts_with("/token") {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"token":"tok-{n}","expires_in":300}}"#);
            return Reply::status(200)
                .header("Content-Type", "application/json")
                .body(body.as_bytes());
        }
        match &seen.authorization {
            Some(value) if value.starts_with("Bearer tok-") => found(),
            _ => {
                let port = cell.lock().expect("port").unwrap_or(0);
                Reply::status(401)
                    .header(
                        "WWW-Authenticate",
                        &format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#),
                    )
                    .delay(delay)
            }
        }
    });
    *port_cell.lock().expect("port") = Some(fake.port);
    fake
}

fn token_requests(fake: &Fake) -> usize {
    fake.seen()
        .iter()
        .filter(|s| s.url.starts_with("/token"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_once_per_scope_and_reused() {
    let fake = token_registry(Duration::ZERO);
    let client = client(quick(2), LimitConfig::default());
    for _ in 0..5 {
        let head = client
            .manifest_head(&fake.repository("app"), r("v1"))
            .await
            .expect("authenticated");
        assert!(head.is_some());
    }
    assert_eq!(
        token_requests(&fake),
        1,
        "one token for repository:app:pull"
    );
    assert_eq!(client.auth().token_requests(), 1);
    // One 401, one token request... and five authorized HEADs.
    let registry_requests = fake.seen().len() - token_requests(&fake);
    assert_eq!(registry_requests, 6);
    let token_url = fake
        .seen()
        .into_iter()
        .find(|s| s.url.starts_with("/token"))
        .expect("a token request")
        .url;
    assert!(token_url.contains("service=fake"), "{token_url}");
    assert!(token_url.contains("repository%3Aapp%3Apull"), "{token_url}");

    // A new scope: the token is fetched up front, without another 401.
    let before = fake.seen().len();
    client
        .manifest_head(&fake.repository("other"), r("v1"))
        .await
        .expect("authenticated");
    let new: Vec<Seen> = fake.seen()[before..].to_vec();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new[0].url.starts_with("/token"));
    assert!(new[1].authorization.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_token() {
    // The 401 is slow, so that all first requests are answered 401 at about the same time.
    let fake = token_registry(Duration::from_millis(100));
    let client = Arc::new(client(quick(2), LimitConfig::default()));
    let repository = fake.repository("app");
    let heads = (0..8).map(|_| {
        let client = Arc::clone(&client);
        let repository = repository.clone();
        tokio::spawn(async move { client.manifest_head(&repository, r("v1")).await })
    });
    for head in futures_join(heads).await {
        assert!(head.is_some());
    }
    assert_eq!(
        token_requests(&fake),
        1,
        "8 concurrent HEADs of one repository need one token"
    );
}

/// Awaits every spawned HEAD, panicking on a task or request failure.
async fn futures_join(
    tasks: impl Iterator<
        Item = tokio::task::JoinHandle<
            Result<Option<promoter::registry::ManifestHead>, RegistryError>,
        >,
    >,
) -> Vec<Option<promoter::registry::ManifestHead>> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(
            task.await
                .expect("the task ran")
                .expect("the request succeeded"),
        );
    }
    out
}
