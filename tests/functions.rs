//! The five Lambda binaries, as built, run through cargo-lambda's Runtime API emulator
//! ([`promoter_tests::harness::lambda`]) against real servers: a staging and a production
//! registry (CNCF distribution), SQS queues in moto, state in a local folder, a fake GitHub
//! API serving the manifests' tarball, and a webhook receiver. Nothing of the promoter is
//! mocked: each function gets its raw Lambda payload (Function URL request, SQS batch,
//! EventBridge event, a bare message) and the outcomes are read back from the registries, the
//! queues and state.
//!
//! 1. validate-manifest, through its Function URL: a signed GitHub push is accepted (202), its
//!    run recorded and one copy message per unit sent (taking over the claim of a first
//!    delivery whose handler died); the same delivery again is a duplicate
//!    that sends nothing; a wrongly signed or unsigned push gets 401 and records nothing;
//!    `promoter runs redrive` enqueues the run's unfinished units again.
//! 2. copy-digest, with an SQS batch: the good unit is copied byte for byte and a sign message
//!    sent; a unit whose lease another worker holds is the only `batchItemFailures` entry; a
//!    message for an unknown run fails for good and is not listed.
//! 3. audit: an ECR EventBridge event (invoked directly) is approved against the desired index
//!    in state; a Pub/Sub push through the Function URL (`?token=`) is unapproved, recorded and
//!    alerted through the notify queue; its redelivery with a Bearer header is a duplicate; a
//!    wrong or missing token gets 401.
//! 4. sign signs the copied unit (the message copy-digest sent) and production then holds a
//!    valid signature by the key; notify delivers the audit's alert (the message audit sent)
//!    to the webhook, once even when the message is delivered again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_sdk_sqs::types::Message;
use base64::Engine as _;
use bytes::Bytes;
use promoter::plan::unit_id;
use promoter::reference::Digest;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::sign::keys::{SigningKey, VerifyingKey};
use promoter::state::StateStore;
use promoter::state::ledger::{DESIRED_CURRENT, desired_key, lease_key};
use promoter::state::records::{DesiredIndex, LeaseRecord, encode, now};
use promoter_tests::harness::image::{ManifestFormat, Pushed, push_single, sha256_digest};
use promoter_tests::harness::lambda::{Answer, Emulator, built_binary};
use promoter_tests::harness::moto::MotoServer;
use promoter_tests::harness::receiver::{Receiver, Reply};
use promoter_tests::harness::{TestRegistry, inspect_raw, try_inspect_raw};
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "github-webhook-secret";
const AUDIT_TOKEN: &str = "audit-token";
const REPOSITORY: &str = "o/manifests";
const SHA: &str = "5f0c6a1e2b3d4c5f60718293a4b5c6d7e8f90a1b";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------------------
// A fake GitHub API (the webhook receiver is the harness's `Receiver`)
// ---------------------------------------------------------------------------------------------

/// GitHub's API for `REPOSITORY`: `GET /repos/o/manifests/tarball/SHA` answers `archive`.
fn fake_github(archive: Vec<u8>) -> Receiver {
    Receiver::start(move |_, request| {
        if request.path == format!("/repos/{REPOSITORY}/tarball/{SHA}") {
            Reply::new(200, archive.clone()).header("Content-Type", "application/x-gzip")
        } else {
            Reply::new(404, r#"{"message":"Not Found"}"#)
        }
    })
}

/// A tarball as GitHub makes it: one top folder `OWNER-NAME-SHA7/`, holding `files`.
fn github_tarball(files: &[(&str, &str)]) -> Vec<u8> {
    let top = format!("{}-{}", REPOSITORY.replace('/', "-"), &SHA[..7]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    tar.append_data(&mut dir, format!("{top}/"), std::io::empty())
        .expect("a tar folder");
    for (name, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        header.set_mtime(0);
        tar.append_data(&mut header, format!("{top}/{name}"), content.as_bytes())
            .expect("a tar entry");
    }
    let tar = tar.into_inner().expect("finish the tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `sha256=HEX(HMAC_SHA256(secret, body))`, GitHub's `X-Hub-Signature-256`.
fn hub_signature(secret: &str, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The JSON body of an answer, checking its status (the logs on failure).
fn expect_json(world: &World, answer: &Answer, status: u16, what: &str) -> Value {
    assert_eq!(
        answer.status,
        status,
        "{what}: {}\n{}",
        answer.text(),
        world.emulator.logs(&answer.function)
    );
    answer.json()
}

/// An SQS client for moto.
async fn sqs_client(moto: &MotoServer) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create a queue in moto")
        .queue_url()
        .expect("a queue URL")
        .to_owned()
}

/// Receives exactly `expected` messages from `url` (checking, with one more long poll, that
/// no other is there) and deletes them, as Lambda's event source mapping does after a
/// successful batch.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str, expected: usize) -> Vec<Message> {
    let mut received = Vec::new();
    for _ in 0..10 {
        let answer = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from moto");
        let batch = answer.messages.unwrap_or_default();
        let empty = batch.is_empty();
        received.extend(batch);
        if received.len() >= expected && (empty || received.len() > expected) {
            break;
        }
    }
    for message in &received {
        sqs.delete_message()
            .queue_url(url)
            .receipt_handle(message.receipt_handle().expect("a receipt handle"))
            .send()
            .await
            .expect("delete a message");
    }
    let bodies: Vec<&str> = received.iter().filter_map(|m| m.body()).collect();
    assert_eq!(received.len(), expected, "messages in {url}: {bodies:?}");
    received
}

/// One SQS record as Lambda's event source mapping delivers it.
fn sqs_record(queue: &str, id: &str, receipt: &str, body: &str, md5: Option<&str>) -> Value {
    let mut record = json!({
        "messageId": id,
        "receiptHandle": receipt,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000001"
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
        "awsRegion": REGION
    });
    if let Some(md5) = md5 {
        record["md5OfBody"] = json!(md5);
    }
    record
}

/// The record of a message received from moto.
fn record_of(queue: &str, message: &Message) -> Value {
    sqs_record(
        queue,
        message.message_id().expect("a message id"),
        message.receipt_handle().expect("a receipt handle"),
        message.body().expect("a body"),
        message.md5_of_body(),
    )
}

/// Every audit record in the state folder, by key.
fn audit_records(state: &Path) -> BTreeMap<String, Value> {
    let mut records = BTreeMap::new();
    let root = state.join("audit");
    for day in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let key = format!(
                "audit/{}/{}",
                day.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            let bytes = std::fs::read(file.path()).expect("read an audit record");
            records.insert(key, serde_json::from_slice(&bytes).expect("a JSON record"));
        }
    }
    records
}

/// Everything the functions share, started once.
struct World {
    staging: TestRegistry,
    production: TestRegistry,
    app: Pushed,
    tool: Pushed,
    github: Receiver,
    receiver: Receiver,
    sqs: aws_sdk_sqs::Client,
    copy_queue: String,
    sign_queue: String,
    notify_queue: String,
    state: PathBuf,
    store: StateStore,
    public_key: PathBuf,
    emulator: Emulator,
    // Last: removed once every process is gone.
    _moto: MotoServer,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let staging = TestRegistry::start();
        let production = TestRegistry::start();
        let app = push_single(
            &staging,
            "staging/app",
            ManifestFormat::Oci,
            "functions-app",
            Some("v1"),
        );
        let tool = push_single(
            &staging,
            "staging/tool",
            ManifestFormat::Docker,
            "functions-tool",
            Some("v2"),
        );
        let manifest = format!(
            "registries:\n- name: {staging}/staging\n  src: true\n- name: {prod}/prod\n\
             images:\n- name: app\n  dmap:\n    \"{app}\": [\"v1\"]\n\
             - name: tool\n  dmap:\n    \"{tool}\": [\"v2\"]\n",
            staging = staging.host(),
            prod = production.host(),
            app = app.digest,
            tool = tool.digest,
        );
        let github = fake_github(github_tarball(&[
            ("README.md", "# manifests\n"),
            ("promoter.yaml", &manifest),
        ]));
        let receiver = Receiver::answering(200, "ok");

        let moto = MotoServer::start();
        let sqs = sqs_client(&moto).await;
        let copy_queue = create_queue(&sqs, "copy").await;
        let sign_queue = create_queue(&sqs, "sign").await;
        let notify_queue = create_queue(&sqs, "notify").await;

        let state = dir.path().join("state");
        let state_url = format!("file://{}", state.display());
        let store = StateStore::open(&state_url).await.expect("open the state");
        let (private_key, public_key) =
            SigningKey::generate(&dir.path().join("release")).expect("generate a signing key");
        let home = dir.path().join("home");
        let docker = dir.path().join("docker");
        for folder in [&home, &docker] {
            std::fs::create_dir_all(folder).expect("create a folder");
        }

        let manifest_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let emulator = Emulator::start(&manifest_path);
        // One configuration for every function, as a SAM template's Globals would give.
        let env: Vec<(&str, String)> = vec![
            ("HOME", home.display().to_string()),
            ("DOCKER_CONFIG", docker.display().to_string()),
            ("RUST_LOG", "info".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_ENDPOINT_URL_SQS", moto.endpoint()),
            ("PROMOTER_STATE", state_url.clone()),
            ("PROMOTER_COPY_QUEUE_URL", copy_queue.clone()),
            ("PROMOTER_SIGN_QUEUE_URL", sign_queue.clone()),
            ("PROMOTER_NOTIFY_QUEUE_URL", notify_queue.clone()),
            ("PROMOTER_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("PROMOTER_GITHUB_API", github.url("")),
            ("PROMOTER_AUDIT_TOKEN", AUDIT_TOKEN.to_owned()),
            ("PROMOTER_SIGN_KEY", private_key.display().to_string()),
            ("PROMOTER_WEBHOOK_URL", receiver.url("/hooks/promoter")),
        ];
        for name in [
            "validate-manifest",
            "copy-digest",
            "sign",
            "notify",
            "audit",
        ] {
            emulator.add_function(name, built_binary(name), &env);
        }
        World {
            staging,
            production,
            app,
            tool,
            github,
            receiver,
            sqs,
            copy_queue,
            sign_queue,
            notify_queue,
            state,
            store,
            public_key,
            emulator,
            _moto: moto,
            _dir: dir,
        }
    }

    fn unit_of(&self, pushed: &Pushed) -> String {
        let digest: Digest = pushed.digest.parse().expect("a digest");
        unit_id(
            &promoter_tests::repository(&format!("{}/{}", self.staging.host(), pushed.repo)),
            &digest,
        )
    }

    fn tarball_requests(&self) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|s| s.path.contains("/tarball/"))
            .count()
    }

    /// POSTs a push webhook to validate-manifest's Function URL.
    fn push(&self, body: &[u8], signature: Option<&str>) -> Answer {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            ("x-github-delivery", DELIVERY),
        ];
        if let Some(signature) = signature {
            headers.push(("x-hub-signature-256", signature));
        }
        self.emulator
            .function_url("validate-manifest", "POST", "/", &headers, body)
    }
}

fn push_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": SHA,
        "repository": {"full_name": REPOSITORY, "name": "manifests", "owner": {"login": "o"}},
        "pusher": {"name": "maintainer"},
        "commits": [{"id": SHA, "message": "Promote app and tool"}],
        "head_commit": {"id": SHA, "message": "Promote app and tool"}
    }))
    .expect("a push body")
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_runs_through_the_lambda_runtime_api() {
    let world = World::start().await;
    let run = validate_manifest(&world).await;
    let sign_message = copy_digest(&world, &run).await;
    let alert = audit(&world).await;
    sign(&world, &run, &sign_message).await;
    notify(&world, &alert).await;
    reconcile(&world).await;
    for name in [
        "validate-manifest",
        "copy-digest",
        "audit",
        "sign",
        "notify",
    ] {
        if let Some(cold) = world.emulator.cold_start(name) {
            eprintln!("{name}: first invocation answered {cold:?} after starting the binary");
        }
    }
}

/// validate-manifest through its Function URL; returns the run id.
async fn validate_manifest(world: &World) -> String {
    let body = push_body();
    // Not authentic: refused before anything is read or written.
    let forged = world.push(&body, Some(&hub_signature("not-the-secret", &body)));
    let refused = expect_json(world, &forged, 401, "a wrongly signed push");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("unauthorized")),
        "{refused}"
    );
    let unsigned = world.push(&body, None);
    expect_json(world, &unsigned, 401, "an unsigned push");
    let tampered = world.push(
        &body[..body.len() - 1],
        Some(&hub_signature(WEBHOOK_SECRET, &body)),
    );
    expect_json(world, &tampered, 401, "a body that is not what was signed");
    for folder in ["runs", "deliveries", "desired"] {
        assert!(
            !world.state.join(folder).exists(),
            "{folder}/ was written for an unauthenticated push"
        );
    }
    assert_eq!(world.tarball_requests(), 0, "GitHub was asked for nothing");
    drain(&world.sqs, &world.copy_queue, 0).await;

    // A first delivery of the merged push claimed it and then died (a crash, or the function's
    // timeout) without finishing or releasing the claim: GitHub's redelivery takes it over.
    let claim = world.state.join(format!("deliveries/{DELIVERY}/{SHA}"));
    std::fs::create_dir_all(claim.parent().expect("a parent")).expect("mkdir deliveries");
    std::fs::write(
        &claim,
        json!({"revision": SHA, "claimed_at": 1_000_000, "done": false}).to_string(),
    )
    .expect("a stale claim");

    // The merged push: one run, one copy message per unit.
    let signature = hub_signature(WEBHOOK_SECRET, &body);
    let accepted = world.push(&body, Some(&signature));
    let outcome = expect_json(world, &accepted, 202, "a signed push");
    assert_eq!(outcome["outcome"], "accepted", "{outcome}");
    assert_eq!(outcome["units"], 2, "{outcome}");
    assert_eq!(outcome["enqueued"], 2, "{outcome}");
    assert_eq!(outcome["revision"], SHA, "{outcome}");
    let run = outcome["run"].as_str().expect("a run id").to_owned();
    assert_eq!(
        accepted.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let run_json: Value = serde_json::from_slice(
        &std::fs::read(world.state.join(format!("runs/{run}/run.json"))).expect("run.json"),
    )
    .expect("run.json is JSON");
    assert_eq!(run_json["trigger"]["revision"], SHA, "{run_json}");
    assert_eq!(run_json["trigger"]["repository"], REPOSITORY, "{run_json}");
    assert!(
        world
            .state
            .join(format!("desired/{SHA}/index.json"))
            .is_file(),
        "the desired state of the revision is recorded"
    );
    let messages = drain(&world.sqs, &world.copy_queue, 2).await;
    let units: BTreeSet<(String, String)> = messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().expect("a body")).expect("JSON");
            (
                body["run"].as_str().expect("run").to_owned(),
                body["unit"].as_str().expect("unit").to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> =
        [world.unit_of(&world.app), world.unit_of(&world.tool)]
            .into_iter()
            .map(|unit| (run.clone(), unit))
            .collect();
    assert_eq!(units, expected, "one copy message per unit");
    assert_eq!(world.tarball_requests(), 1);

    let claim: Value =
        serde_json::from_slice(&std::fs::read(&claim).expect("the claim")).expect("JSON");
    assert_eq!(claim["done"], true, "{claim}");

    // GitHub delivers it again: nothing more happens.
    let again = world.push(&body, Some(&signature));
    let duplicate = expect_json(world, &again, 200, "the same delivery again");
    assert_eq!(duplicate["outcome"], "duplicate", "{duplicate}");
    assert_eq!(duplicate["delivery"], DELIVERY, "{duplicate}");
    drain(&world.sqs, &world.copy_queue, 0).await;
    assert_eq!(world.tarball_requests(), 1, "a duplicate fetches nothing");

    // The copy messages were drained above, as if dead-lettered: on-call re-enqueues the run's
    // unfinished units onto the deployed queue from the command line.
    let redrive = std::process::Command::new(built_binary("promoter"))
        .args([
            "runs",
            "redrive",
            &run,
            "--copy-queue-url",
            &world.copy_queue,
        ])
        .args(["--state", &world.state.display().to_string()])
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_SQS", world._moto.endpoint())
        .env("DOCKER_CONFIG", world.state.join("no-docker"))
        .output()
        .expect("run promoter runs redrive");
    let stdout = String::from_utf8_lossy(&redrive.stdout);
    assert!(
        redrive.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert!(stdout.contains("2 of 2 units enqueued"), "{stdout}");
    drain(&world.sqs, &world.copy_queue, 2).await;
    run
}

/// copy-digest with an SQS batch: one copied, one held by another worker, one unknown;
/// returns the sign message it sent.
async fn copy_digest(world: &World, run: &str) -> Message {
    let app_unit = world.unit_of(&world.app);
    let tool_unit = world.unit_of(&world.tool);
    // Another worker, on another machine, holds the tool's lease for an hour.
    let lease = LeaseRecord {
        schema: "promoter.lease/v1".to_owned(),
        unit: tool_unit.clone(),
        run: run.to_owned(),
        owner: "worker-elsewhere.example:4242:12345".to_owned(),
        expires_at: now() + 3600,
    };
    world
        .store
        .create(&lease_key(&tool_unit), encode(&lease))
        .await
        .expect("write the lease")
        .expect("no lease there before");
    let message = |unit: &str| json!({"run": run, "unit": unit}).to_string();
    let batch = json!({"Records": [
        sqs_record("copy", "msg-app", "receipt-app", &message(&app_unit), None),
        sqs_record("copy", "msg-tool", "receipt-tool", &message(&tool_unit), None),
        sqs_record("copy", "msg-unknown", "receipt-unknown",
            &json!({"run": "0123456789abcdef", "unit": app_unit}).to_string(), None),
    ]});
    let answer = world.emulator.invoke("copy-digest", &batch);
    assert_eq!(
        expect_json(world, &answer, 200, "copy-digest"),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-tool"}]}),
        "only the held unit comes back; the unknown run is dropped\n{}",
        world.emulator.function_log("copy-digest")
    );

    // Production holds the app, byte for byte, by digest and tag; not the tool.
    let prod = &world.production;
    assert_eq!(
        inspect_raw(prod, "prod/app", &world.app.digest, None),
        world.app.bytes
    );
    assert_eq!(inspect_raw(prod, "prod/app", "v1", None), world.app.bytes);
    let raw = promoter_tests::harness::RawClient::for_registry(prod);
    for blob in &world.app.blobs {
        let got = raw.get_blob("prod/app", blob);
        assert_eq!(got.status, 200, "prod/app lacks {blob}");
        assert_eq!(sha256_digest(&got.body), *blob);
    }
    assert!(
        try_inspect_raw(prod, "prod/tool", &world.tool.digest, None).is_err(),
        "the held unit was not copied"
    );
    // The other worker's lease is left alone.
    let held: LeaseRecord = serde_json::from_slice(
        &std::fs::read(world.state.join(lease_key(&tool_unit))).expect("the lease"),
    )
    .expect("a lease record");
    assert_eq!(held, lease);
    // Signing is on: the copied unit goes on to sign.
    let signs = drain(&world.sqs, &world.sign_queue, 1).await;
    let sign_message: Value = serde_json::from_str(signs[0].body().expect("a body")).expect("JSON");
    assert_eq!(sign_message, json!({"run": run, "unit": app_unit}));
    signs.into_iter().next().expect("one sign message")
}

/// audit: ECR through EventBridge, Pub/Sub through the Function URL; returns the alert
/// message it sent.
async fn audit(world: &World) -> Message {
    let ecr_repository = format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/app");
    let ecr_digest = sha256_digest(b"an image pushed to ECR by a promotion");
    let desired = DesiredIndex {
        schema: "promoter.desired/v1".to_owned(),
        sources: BTreeMap::new(),
        policies: BTreeMap::new(),
        revision: "audit-revision".to_owned(),
        repositories: BTreeMap::from([(
            ecr_repository.clone(),
            BTreeMap::from([(ecr_digest.clone(), vec!["v1".to_owned()])]),
        )]),
    };
    let store = &world.store;
    store
        .create(&desired_key("audit-revision"), encode(&desired))
        .await
        .expect("write the desired index");
    let current = store
        .get(DESIRED_CURRENT)
        .await
        .expect("read desired/current")
        .expect("validate-manifest pointed desired/current at its revision");
    store
        .update(
            DESIRED_CURRENT,
            Bytes::from_static(b"audit-revision"),
            &current.version,
        )
        .await
        .expect("point desired/current")
        .expect("desired/current unchanged meanwhile");

    // ECR, as EventBridge invokes the function: approved.
    let ecr = json!({
        "version": "0",
        "id": "0a1b2c3d-ecr-push-event",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2026-01-01T00:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": "team/app",
            "image-digest": ecr_digest,
            "action-type": "PUSH",
            "image-tag": "v1",
            "manifest-media-type": "application/vnd.oci.image.manifest.v1+json"
        }
    });
    let answer = world.emulator.invoke("audit", &ecr);
    let outcome = expect_json(world, &answer, 200, "audit of an ECR event");
    assert_eq!(outcome["events"], 1, "{outcome}");
    assert_eq!(outcome["approved"], 1, "{outcome}");
    assert_eq!(outcome["unapproved"], 0, "{outcome}");

    // Artifact Registry through Pub/Sub push, token in the URL: unapproved.
    let rogue_repository = format!("{}/rogue/app", world.production.host());
    let rogue_digest = sha256_digest(b"pushed by hand, approved by nobody");
    let data = json!({
        "action": "INSERT",
        "digest": format!("{rogue_repository}@{rogue_digest}"),
        "tag": format!("{rogue_repository}:latest"),
    });
    let pubsub = serde_json::to_vec(&json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
            "messageId": "pubsub-message-1",
            "publishTime": "2026-01-01T00:00:01Z"
        },
        "subscription": "projects/prod/subscriptions/gcr-audit"
    }))
    .expect("a Pub/Sub body");
    let json_type = ("content-type", "application/json");
    let answer = world.emulator.function_url(
        "audit",
        "POST",
        &format!("/?token={AUDIT_TOKEN}"),
        &[json_type],
        &pubsub,
    );
    let outcome = expect_json(world, &answer, 200, "audit of a Pub/Sub push");
    assert_eq!(outcome["events"], 1, "{outcome}");
    assert_eq!(outcome["unapproved"], 1, "{outcome}");
    let alert = outcome["alerts"][0]
        .as_str()
        .expect("an alert key")
        .to_owned();

    let records = audit_records(&world.state);
    assert_eq!(records.len(), 2, "{records:#?}");
    let ecr_record = records
        .values()
        .find(|r| r["source"] == "ecr")
        .expect("the ECR event's record");
    assert_eq!(ecr_record["repository"], ecr_repository.as_str());
    assert_eq!(ecr_record["digest"], ecr_digest.as_str());
    assert_eq!(ecr_record["verdict"]["kind"], "approved", "{ecr_record}");
    let rogue_record = &records[&alert];
    assert_eq!(rogue_record["source"], "gcr");
    assert_eq!(rogue_record["repository"], rogue_repository.as_str());
    assert_eq!(
        rogue_record["verdict"]["kind"], "unapproved",
        "{rogue_record}"
    );
    assert_eq!(rogue_record["revision"], "audit-revision");
    let alerts = drain(&world.sqs, &world.notify_queue, 1).await;
    let message: Value = serde_json::from_str(alerts[0].body().expect("a body")).expect("JSON");
    assert_eq!(message, json!({"notify": "alert", "key": alert}));

    // Pub/Sub delivers it again, with a Bearer header this time: a duplicate, no new alert.
    let bearer = format!("Bearer {AUDIT_TOKEN}");
    let answer = world.emulator.function_url(
        "audit",
        "POST",
        "/",
        &[json_type, ("authorization", &bearer)],
        &pubsub,
    );
    let outcome = expect_json(world, &answer, 200, "a redelivered Pub/Sub push");
    assert_eq!(outcome["duplicates"], 1, "{outcome}");
    assert_eq!(outcome["unapproved"], 0, "{outcome}");

    // Not authentic: 401, nothing recorded.
    let wrong = world.emulator.function_url(
        "audit",
        "POST",
        "/?token=not-the-token",
        &[json_type],
        &pubsub,
    );
    expect_json(world, &wrong, 401, "a wrong token");
    let wrong_bearer = world.emulator.function_url(
        "audit",
        "POST",
        "/",
        &[json_type, ("authorization", "Bearer not-the-token")],
        &pubsub,
    );
    expect_json(world, &wrong_bearer, 401, "a wrong Bearer token");
    let missing = world
        .emulator
        .function_url("audit", "POST", "/", &[json_type], &pubsub);
    expect_json(world, &missing, 401, "no token");
    assert_eq!(audit_records(&world.state).len(), 2);
    drain(&world.sqs, &world.notify_queue, 0).await;
    alerts.into_iter().next().expect("one alert message")
}

/// sign, fed the message copy-digest sent, in a batch of one.
async fn sign(world: &World, run: &str, message: &Message) {
    let app_unit = world.unit_of(&world.app);
    let batch = json!({"Records": [record_of("sign", message)]});
    let answer = world.emulator.invoke("sign", &batch);
    assert_eq!(
        expect_json(world, &answer, 200, "sign"),
        json!({"batchItemFailures": []}),
        "{}",
        world.emulator.function_log("sign")
    );
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            world
                .state
                .join(format!("runs/{run}/signatures/{app_unit}.json")),
        )
        .expect("the signature record"),
    )
    .expect("JSON");
    assert_eq!(record["digest"], world.app.digest.as_str(), "{record}");
    assert!(record["error"].is_null(), "{record}");
    assert_eq!(
        record["added"].as_array().map(Vec::len),
        Some(4),
        "signed in the one destination: the legacy signature and three bundles: {record}"
    );
    assert_eq!(
        std::fs::read_to_string(world.state.join(format!("runs/{run}/final/{app_unit}")))
            .expect("the unit is final"),
        "done"
    );
    // Production holds a valid signature of the digest by the key.
    let client = Client::new(ClientConfig::default(), CredentialSources::default())
        .expect("a registry client");
    let repository = promoter_tests::repository(&format!("{}/prod/app", world.production.host()));
    let key = VerifyingKey::from_pem_file(&world.public_key).expect("the public key");
    let payloads = promoter::sign::verify(
        &client,
        &repository,
        &promoter_tests::digest(&world.app.digest),
        &key,
    )
    .await
    .expect("read the signatures");
    assert_eq!(payloads.len(), 1, "one valid signature by the release key");
    // Half the run is final (the tool is still held): no run summary yet.
    assert!(!world.state.join(format!("runs/{run}/notified")).exists());
}

/// notify, fed the alert audit sent: delivered to the webhook once.
async fn notify(world: &World, alert: &Message) {
    let body = alert.body().expect("a body");
    // One message, as a bare payload: the step's own answer comes back.
    let message: Value = serde_json::from_str(body).expect("JSON");
    let answer = world.emulator.invoke("notify", &message);
    let outcome = expect_json(world, &answer, 200, "notify");
    assert_eq!(outcome["sent"], json!(["webhook"]), "{outcome}");
    let deliveries = world.receiver.requests();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let delivery = &deliveries[0];
    assert_eq!(delivery.path, "/hooks/promoter");
    assert_eq!(delivery.header("x-promoter-event"), Some("alert"));
    let notice: Value = serde_json::from_slice(&delivery.body).expect("a JSON notice");
    let rogue = format!("{}/rogue/app", world.production.host());
    assert!(
        notice["title"].as_str().is_some_and(|t| t.contains(&rogue)),
        "{notice}"
    );
    assert_eq!(
        notice["details"]["verdict"]["kind"], "unapproved",
        "{notice}"
    );
    assert!(
        world
            .state
            .join(format!(
                "notifications/{}/webhook",
                outcome["notice"].as_str().expect("id")
            ))
            .is_file()
    );
    // The queue delivers it again, in a batch: nothing is sent twice.
    let batch = json!({"Records": [record_of("notify", alert)]});
    let answer = world.emulator.invoke("notify", &batch);
    assert_eq!(
        expect_json(world, &answer, 200, "notify again"),
        json!({"batchItemFailures": []})
    );
    assert_eq!(
        world.receiver.requests().len(),
        1,
        "the webhook got the alert once"
    );
}

/// validate-manifest's scheduled reconcile (EventBridge Scheduler's payload): the tool, never
/// copied (its lease is held elsewhere), is found missing in production and one reconcile run
/// of that unit is enqueued; the app, copied and signed, is left alone; the report is recorded.
async fn reconcile(world: &World) {
    // The audit step pointed the desired state at a revision of its own: back to the push's.
    std::fs::write(world.state.join("desired/current"), SHA).expect("write desired/current");
    let payload = json!({"reconcile": {"dry_run": false}});
    let answer = world.emulator.invoke("validate-manifest", &payload);
    let outcome = expect_json(world, &answer, 200, "reconcile");
    let record = &outcome["record"];
    assert_eq!(record["revision"], SHA, "{outcome}");
    assert_eq!(record["repositories"], 2, "{outcome}");
    assert_eq!(record["repairs"], 1, "{outcome}");
    let tool = format!("{}/prod/tool", world.production.host());
    assert_eq!(
        record["drifted"],
        json!([{
            "repository": tool,
            "missing": [world.tool.digest],
            "missing_tags": [["v2", world.tool.digest]],
            "moved_tags": [],
            "unknown_tags": [],
            "unsigned": [],
        }]),
        "the signed app is not drift: {outcome}"
    );
    let key = outcome["key"].as_str().expect("recorded");
    assert!(world.state.join(key).is_file(), "{key}");
    let run = record["run"].as_str().expect("a repair run");
    let copies = drain(&world.sqs, &world.copy_queue, 1).await;
    let message: Value = serde_json::from_str(copies[0].body().expect("a body")).expect("JSON");
    assert_eq!(
        message,
        json!({"run": run, "unit": world.unit_of(&world.tool)})
    );
    let recorded: Value = serde_json::from_slice(
        &std::fs::read(world.state.join(format!("runs/{run}/run.json"))).expect("the run"),
    )
    .expect("JSON");
    assert_eq!(recorded["trigger"]["kind"], "reconcile", "{recorded}");
    // The reconcile recorded no desired state: audit still judges against the pushed commit.
    assert_eq!(
        std::fs::read_to_string(world.state.join("desired/current")).expect("current"),
        SHA
    );
}
