//! The state-store contract, on every backend against a real server: a local directory, S3 on
//! SeaweedFS and on moto, GCS on fake-gcs-server.
//!
//! Each backend gets the same checks: absent reads, create-once, compare-and-swap updates,
//! sorted prefix listings (nested keys, store prefixes), deletes, a race of 8 writers (exactly
//! one wins a create, then exactly one wins each of 20 update rounds), and the errors (missing
//! bucket, refused credentials). The servers come from `infra/local/test.sh`; a missing one
//! fails the test, naming that script.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use bytes::Bytes;
use promoter::state::{FileStore, GcsStore, S3Store, StateError, StateStore, Version};
use promoter_tests::harness::gcs::FakeGcs;
use promoter_tests::harness::moto::MotoServer;
use promoter_tests::harness::seaweed::SeaweedFs;

const BUCKET: &str = "promoter-state";
const MISSING_BUCKET: &str = "no-such-bucket";
const WRITERS: usize = 8;
const ROUNDS: usize = 20;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

/// Reads, conditional writes, listings and deletes on `store`.
async fn contract(store: &StateStore) {
    let url = store.url();
    let key = "runs/r1/run.json";

    assert!(
        store.get(key).await.expect("get absent").is_none(),
        "{url}: absent key reads as None"
    );
    let absent = Version("1".to_owned());
    assert_eq!(
        store
            .update(key, bytes("x"), &absent)
            .await
            .expect("update absent"),
        None,
        "{url}: updating an absent key loses"
    );

    let v1 = store
        .create(key, bytes("one"))
        .await
        .expect("create")
        .expect("first create wins");
    assert_eq!(
        store
            .create(key, bytes("again"))
            .await
            .expect("create again"),
        None,
        "{url}: second create loses"
    );
    let read = store
        .get(key)
        .await
        .expect("get")
        .expect("created key reads back");
    assert_eq!(
        read.bytes,
        bytes("one"),
        "{url}: a lost create changes nothing"
    );
    assert_eq!(
        read.version, v1,
        "{url}: get returns the version create returned"
    );

    let v2 = store
        .update(key, bytes("two"), &v1)
        .await
        .expect("update")
        .expect("update at the right version wins");
    assert_ne!(v2, v1, "{url}: an update makes a new version");
    assert_eq!(
        store
            .update(key, bytes("three"), &v1)
            .await
            .expect("stale update"),
        None,
        "{url}: stale update loses"
    );
    let read = store.get(key).await.expect("get").expect("present");
    assert_eq!(
        (read.bytes, read.version),
        (bytes("two"), v2.clone()),
        "{url}: content of the winning update"
    );

    // Listings: sorted, only under the prefix, nested keys included.
    for other in [
        "runs/r1/units/u2.json",
        "runs/r1/units/u1.json",
        "runs/r2/run.json",
        "runsx.json",
        "leases/a.json",
    ] {
        store
            .create(other, bytes(other))
            .await
            .expect("create")
            .expect("new key");
    }
    assert_eq!(
        store.list("runs/").await.expect("list"),
        [
            "runs/r1/run.json",
            "runs/r1/units/u1.json",
            "runs/r1/units/u2.json",
            "runs/r2/run.json"
        ],
        "{url}: list runs/"
    );
    assert_eq!(
        store.list("runs/r1/units/").await.expect("list"),
        ["runs/r1/units/u1.json", "runs/r1/units/u2.json"],
        "{url}: list nested"
    );
    assert_eq!(
        store.list("runs").await.expect("list"),
        [
            "runs/r1/run.json",
            "runs/r1/units/u1.json",
            "runs/r1/units/u2.json",
            "runs/r2/run.json",
            "runsx.json"
        ],
        "{url}: a prefix that is not a folder"
    );
    assert!(
        store.list("nothing/").await.expect("list").is_empty(),
        "{url}: empty listing"
    );
    let nested = store
        .get("runs/r1/units/u1.json")
        .await
        .expect("get nested")
        .expect("present");
    assert_eq!(nested.bytes, bytes("runs/r1/units/u1.json"));

    // Deletes: gone, idempotent, and the key can be created anew.
    store.delete("runs/r1/units/u2.json").await.expect("delete");
    assert!(
        store
            .get("runs/r1/units/u2.json")
            .await
            .expect("get deleted")
            .is_none(),
        "{url}: deleted"
    );
    store
        .delete("runs/r1/units/u2.json")
        .await
        .expect("deleting an absent key is fine");
    assert_eq!(
        store.list("runs/r1/units/").await.expect("list"),
        ["runs/r1/units/u1.json"],
        "{url}: after delete"
    );
    assert_eq!(
        store.update(key, bytes("x"), &v1).await.expect("update"),
        None,
        "{url}: still stale"
    );
    store.delete(key).await.expect("delete");
    assert_eq!(
        store
            .update(key, bytes("x"), &v2)
            .await
            .expect("update vanished"),
        None,
        "{url}: vanished key"
    );
    store
        .create(key, bytes("reborn"))
        .await
        .expect("create")
        .expect("a deleted key can be created again");
}

/// `prefixed` is `root` below `some/prefix`: keys are relative to it both ways.
async fn prefix_isolation(root: &StateStore, prefixed: &StateStore) {
    let url = prefixed.url();
    assert!(
        url.ends_with("/some/prefix"),
        "{url}: the URL names the prefix"
    );
    root.create("outside.json", bytes("outside"))
        .await
        .expect("create")
        .expect("new");
    contract(prefixed).await;
    assert_eq!(
        prefixed.list("").await.expect("list all"),
        [
            "leases/a.json",
            "runs/r1/run.json",
            "runs/r1/units/u1.json",
            "runs/r2/run.json",
            "runsx.json"
        ],
        "{url}: everything below the prefix, as relative keys"
    );
    let seen_from_root = root
        .get("some/prefix/runs/r1/units/u1.json")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(seen_from_root.bytes, bytes("runs/r1/units/u1.json"));
    assert!(
        prefixed.get("outside.json").await.expect("get").is_none(),
        "{url}: nothing outside the prefix"
    );
    assert_eq!(
        root.list("some/").await.expect("list").len(),
        5,
        "{}: the prefixed keys, seen from the root",
        root.url()
    );
}

/// 8 writers create one record at once: exactly one wins. Then 20 rounds where all 8 read the
/// current version and try to replace it: exactly one wins each round.
async fn race(store: Arc<StateStore>) {
    let url = store.url();
    let key = "leases/race.json";
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let content = format!("created by {writer}");
            store
                .create(key, bytes(&content))
                .await
                .map(|won| won.map(|version| (content, version)))
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(won) = task.await.expect("writer task").expect("create") {
            winners.push(won);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{url}: exactly one of {WRITERS} concurrent creates wins"
    );
    let (mut content, mut version) = winners.remove(0);

    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                let current = store
                    .get(key)
                    .await
                    .expect("get")
                    .expect("the record exists");
                // Everyone has read before anyone writes.
                barrier.wait().await;
                let next = format!("round {round}, writer {writer}");
                let won = store
                    .update(key, bytes(&next), &current.version)
                    .await
                    .expect("update");
                (current, won.map(|version| (next, version)))
            }));
        }
        let mut round_winners = Vec::new();
        for task in tasks {
            let (read, won) = task.await.expect("writer task");
            assert_eq!(
                read.bytes,
                bytes(&content),
                "{url}: round {round} read the last winner's content"
            );
            assert_eq!(
                read.version, version,
                "{url}: round {round} read the last winner's version"
            );
            round_winners.extend(won);
        }
        assert_eq!(
            round_winners.len(),
            1,
            "{url}: round {round}: exactly one of {WRITERS} updates wins"
        );
        (content, version) = round_winners.remove(0);
    }
    let last = store.get(key).await.expect("get").expect("present");
    assert_eq!(
        last.bytes,
        bytes(&content),
        "{url}: the final content is the last winner's"
    );
    assert_eq!(
        last.version, version,
        "{url}: the final version is the last winner's"
    );
}

/// Every operation on a store whose bucket does not exist names the bucket. SeaweedFS checks
/// `If-Match` before the bucket (412), so there an update may just lose (`update_may_lose`):
/// harmless, as updates follow a read, which does name the bucket.
async fn missing_bucket(store: &StateStore, update_may_lose: bool) {
    let url = store.url();
    let check = |result: Result<(), StateError>, operation: &str| match result {
        Err(StateError::MissingBucket {
            bucket,
            url: error_url,
        }) => {
            assert_eq!(bucket, MISSING_BUCKET, "{operation}");
            assert_eq!(error_url, url, "{operation}");
            let message = StateError::MissingBucket {
                bucket,
                url: error_url,
            }
            .to_string();
            assert!(message.contains(MISSING_BUCKET), "{operation}: {message}");
        }
        other => panic!("{url}: {operation} on a missing bucket gave {other:?}"),
    };
    check(store.get("a.json").await.map(drop), "get");
    check(store.create("a.json", bytes("a")).await.map(drop), "create");
    match store
        .update("a.json", bytes("a"), &Version("1".to_owned()))
        .await
    {
        Ok(None) if update_may_lose => {}
        result => check(result.map(drop), "update"),
    }
    check(store.list("").await.map(drop), "list");
}

/// A store that refuses the credentials: every operation is `Denied`, naming the key.
async fn denied(store: &StateStore) {
    let url = store.url();
    let check = |result: Result<(), StateError>, operation: &str, key: &str| match result {
        Err(StateError::Denied {
            url: error_url,
            key: error_key,
            reason,
        }) => {
            assert_eq!(error_url, url, "{operation}");
            assert_eq!(error_key, key, "{operation}");
            assert!(!reason.is_empty(), "{operation}: a reason");
        }
        other => panic!("{url}: {operation} with refused credentials gave {other:?}"),
    };
    check(store.get("a.json").await.map(drop), "get", "a.json");
    check(
        store.create("b.json", bytes("b")).await.map(drop),
        "create",
        "b.json",
    );
    check(store.list("runs/").await.map(drop), "list", "runs/");
    check(store.delete("c.json").await, "delete", "c.json");
}

// ---------------------------------------------------------------------------------------------
// Local directory
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_contract() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = StateStore::from(FileStore::open(&dir.path().display().to_string()).expect("open"));
    contract(&root).await;
    let other = tempfile::tempdir().expect("temporary folder");
    let root = StateStore::open(&format!("file://{}", other.path().display()))
        .await
        .expect("open");
    let prefixed = StateStore::open(&other.path().join("some/prefix").display().to_string())
        .await
        .expect("open prefixed");
    prefix_isolation(&root, &prefixed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_race() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = StateStore::from(FileStore::open(&dir.path().display().to_string()).expect("open"));
    race(Arc::new(store)).await;
}

// ---------------------------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------------------------

async fn s3_config(endpoint: &str, access_key: &str, secret_key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "state-backends-test",
        ))
        .load()
        .await
}

async fn s3_store(config: &aws_config::SdkConfig, location: &str) -> StateStore {
    StateStore::from(
        S3Store::with_config(config.clone(), location)
            .await
            .expect("open the S3 store"),
    )
}

async fn s3_backend(config: aws_config::SdkConfig, update_may_lose: bool) {
    let root = s3_store(&config, BUCKET).await;
    assert_eq!(root.url(), format!("s3://{BUCKET}"));
    contract(&root).await;
    // A second bucket for the prefixed store, so that the root listing above stays exact.
    let other_root = s3_store(&config, "promoter-prefixed").await;
    let prefixed = s3_store(&config, "promoter-prefixed/some/prefix/").await;
    prefix_isolation(&other_root, &prefixed).await;
    missing_bucket(&s3_store(&config, MISSING_BUCKET).await, update_may_lose).await;
    let prefixed = s3_store(&config, &format!("{MISSING_BUCKET}/some/prefix")).await;
    missing_bucket(&prefixed, update_may_lose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_contract() {
    let server = SeaweedFs::start(&[BUCKET, "promoter-prefixed"]);
    s3_backend(s3_config(&server.endpoint(), "any", "any").await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_race() {
    let server = SeaweedFs::start(&[BUCKET]);
    let config = s3_config(&server.endpoint(), "any", "any").await;
    race(Arc::new(s3_store(&config, &format!("{BUCKET}/race")).await)).await;
}

/// moto accepts any key, so refused credentials are checked on SeaweedFS with an identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_refuses_wrong_credentials() {
    let server =
        SeaweedFs::with_credentials(&[BUCKET], "promoter-test-key", "promoter-test-secret");
    let (key, secret) = server.credentials().expect("an identity");
    let good = s3_store(&s3_config(&server.endpoint(), key, secret).await, BUCKET).await;
    good.create("a.json", bytes("a"))
        .await
        .expect("create with the right key")
        .expect("new key");
    assert_eq!(good.list("").await.expect("list"), ["a.json"]);

    let wrong_secret = s3_store(
        &s3_config(&server.endpoint(), key, "not-the-secret").await,
        BUCKET,
    )
    .await;
    denied(&wrong_secret).await;
    let unknown_key = s3_store(
        &s3_config(&server.endpoint(), "unknown-key", secret).await,
        BUCKET,
    )
    .await;
    denied(&unknown_key).await;
    // The reason never carries the secret.
    let Err(error) = wrong_secret.get("a.json").await else {
        panic!("refused")
    };
    assert!(!error.to_string().contains(secret), "{error}");
    assert!(!error.to_string().contains("not-the-secret"), "{error}");
}

async fn moto_with_buckets(buckets: &[&str]) -> (MotoServer, aws_config::SdkConfig) {
    let server = MotoServer::start();
    let config = s3_config(&server.endpoint(), "test", "test").await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    for bucket in buckets {
        client
            .create_bucket()
            .bucket(*bucket)
            .send()
            .await
            .expect("create a bucket on moto");
    }
    (server, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_contract() {
    let (_server, config) = moto_with_buckets(&[BUCKET, "promoter-prefixed"]).await;
    s3_backend(config, false).await;
}

// No race test on moto: its conditional PUT (`If-Match`) checks and writes in two steps without
// a lock, so under load two of eight writers can both win (seen in CI, 2026-12-06). The S3
// store's compare-and-set is raced against SeaweedFS above, a real S3-compatible server.

// ---------------------------------------------------------------------------------------------
// GCS
// ---------------------------------------------------------------------------------------------

async fn gcs_store(endpoint: &str, location: &str) -> StateStore {
    StateStore::from(
        GcsStore::with_endpoint(endpoint, location)
            .await
            .expect("open the GCS store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcs_contract() {
    let server = FakeGcs::start(&[BUCKET, "promoter-prefixed"]);
    // `host:port`, as STORAGE_EMULATOR_HOST gives it.
    let root = gcs_store(&server.host(), BUCKET).await;
    assert_eq!(root.url(), format!("gs://{BUCKET}"));
    contract(&root).await;
    let other_root = gcs_store(&server.endpoint(), "promoter-prefixed").await;
    let prefixed = gcs_store(&server.endpoint(), "promoter-prefixed/some/prefix").await;
    prefix_isolation(&other_root, &prefixed).await;
    // Names with characters that need encoding.
    let odd = "runs/a b+c%d?e#f.json";
    root.create(odd, bytes("odd"))
        .await
        .expect("create")
        .expect("new");
    assert_eq!(
        root.get(odd).await.expect("get").expect("present").bytes,
        bytes("odd")
    );
    assert!(
        root.list("runs/")
            .await
            .expect("list")
            .contains(&odd.to_owned())
    );
    missing_bucket(&gcs_store(&server.endpoint(), MISSING_BUCKET).await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcs_race() {
    let server = FakeGcs::start(&[BUCKET]);
    race(Arc::new(
        gcs_store(&server.endpoint(), &format!("{BUCKET}/race")).await,
    ))
    .await;
}

/// fake-gcs-server has no auth: a server answering 403 to everything stands in for GCS
/// refusing a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_refusal_is_denied() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("start a refusing server");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let server = Arc::new(server);
    let serving = Arc::clone(&server);
    let thread = std::thread::spawn(move || {
        for request in serving.incoming_requests() {
            let body = r#"{"error":{"code":403,"message":"caller does not have storage.objects.get access"}}"#;
            let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(403));
        }
    });
    denied(&gcs_store(&format!("127.0.0.1:{port}"), BUCKET).await).await;
    server.unblock();
    thread.join().expect("the refusing server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_server_errors_are_retried() {
    use promoter_tests::harness::fake_registry::{Fake, Reply};
    // Two passing 503s (one with Retry-After), then the object: before the one retry policy,
    // the first 503 failed the read (and with it a webhook or a step).
    let fake = Fake::script(vec![
        Reply::status(503).body(b"backend unavailable"),
        Reply::status(503).header("Retry-After", "0"),
        Reply::status(200)
            .header("x-goog-generation", "7")
            .body(b"record"),
    ]);
    let store = gcs_store(&fake.host(), &format!("gs://{BUCKET}")).await;
    let object = store
        .get("runs/r/run.json")
        .await
        .expect("read after the retries")
        .expect("present");
    assert_eq!(object.bytes, Bytes::from_static(b"record"));
    assert_eq!(object.version, Version("7".to_owned()));
    assert_eq!(fake.seen().len(), 3);
}
