//! The whole chain over SQS, against real servers: validate-manifest → copy-digest → sign →
//! notify, the step handlers fed by three SQS queues in moto, state in S3 (SeaweedFS), one
//! staging and two production registries (CNCF distribution), and a webhook receiver.
//!
//! Staging is seeded with single images sharing a base layer and a two-platform index; a plain
//! manifest promoting them (with tags) to both production registries is uploaded to S3 and
//! handed to `validate::manual`; `local::drain` then runs the handlers off the SQS queues until
//! they are empty. Checked with the harness's raw client, skopeo and `promoter::sign::verify`:
//! every message succeeded; both production registries serve every promoted manifest, index
//! child and blob with staging's exact bytes and media type, every tag in place; each promoted
//! digest carries a valid signature by the key in every destination; the run record is
//! complete; exactly one signed run-summary notice (`run-<run id>-complete`) reached the
//! webhook; the queues are empty. A second `validate::manual` of the same revision then
//! writes nothing to any registry (their storage is unchanged, file by file and by modification
//! time; a no-op tag PUT afterwards shows that such a snapshot does see writes), enqueues
//! nothing, and sends no second notice.
//!
//! `StateStore::open("s3://…")` and the manifest source read S3's endpoint from the
//! environment, which a test may not change while others run (and `unsafe` is forbidden): the
//! scenario runs in a child process of this test binary, given `AWS_ENDPOINT_URL_S3` and
//! credentials for the SeaweedFS the parent started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::sqs_support::{approximate_counts, assert_queues_empty, sqs_config};
use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use promoter::notify::{Notifier, Sink, signature_header};
use promoter::queue::{Queue, SqsQueue};
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::sign::keys::{SigningKey, VerifyingKey};
use promoter::sign::{self, KeySource, Signer};
use promoter::state::StateStore;
use promoter::state::ledger::{RunLedger, notified_key};
use promoter::state::records::RunStatus;
use promoter::steps::Function;
use promoter::steps::config::github_http_client;
use promoter::steps::local::{Handled, drain};
use promoter::steps::promote::load_run;
use promoter::steps::validate::{ManualRequest, ValidateOutcome, manual};
use promoter::steps::{Deps, Queues, Settings};
use promoter_tests::harness::child::ChildTest;
use promoter_tests::harness::image::{self, IndexFormat, ManifestFormat, Pushed, Seeder};
use promoter_tests::harness::moto::MotoServer;
use promoter_tests::harness::receiver::Receiver;
use promoter_tests::harness::seaweed::SeaweedFs;
use promoter_tests::harness::{RawClient, TestRegistry, inspect_raw};

/// Set in the child process that runs the scenario; its value is SeaweedFS's endpoint.
const CHILD: &str = "PROMOTER_CHAIN_TEST_S3";
/// The bucket holding both the state and the uploaded manifests.
const BUCKET: &str = "state";
/// The state store.
const STATE_URL: &str = "s3://state/promoter";
/// Where the manifests are uploaded.
const MANIFESTS_URL: &str = "s3://state/manifests/rev-1";
/// The revision promoted (names the run).
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
/// The webhook's HMAC secret.
const WEBHOOK_SECRET: &str = "chain-webhook-secret";
/// Staging's repositories live below this path, production's below [`PROD_PATHS`].
const STAGING_PATH: &str = "staging";
/// Each production registry's path (two different ones, to be sure names are not mixed up).
const PROD_PATHS: [&str; 2] = ["prod", "mirror/prod"];

// ---------------------------------------------------------------------------------------------
// The parent: SeaweedFS, then the scenario in a child process with S3 configured
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_over_sqs() {
    if let Some(endpoint) = std::env::var_os(CHILD) {
        return scenario(&endpoint.to_string_lossy()).await;
    }
    let seaweed = SeaweedFs::start(&[BUCKET]);
    let output = ChildTest::new(module_path!(), "chain_over_sqs")
        .s3(&seaweed.endpoint())
        .env(CHILD, seaweed.endpoint())
        .run();
    println!("{}", output.stdout);
    output.assert_one_passed_or(|| format!("SeaweedFS's log:\n{}", seaweed.log()));
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

/// A promoted image: its name below the registries, what staging holds, its tags.
struct Promoted {
    name: &'static str,
    pushed: Pushed,
    tags: &'static [&'static str],
}

async fn scenario(s3_endpoint: &str) {
    let started = Instant::now();
    let staging = TestRegistry::start();
    let prods = [TestRegistry::start(), TestRegistry::start()];
    let moto = MotoServer::start();
    let receiver = Receiver::answering(200, "ok");

    // Staging: two images of one repository, one of another (Docker media types), and a
    // two-platform index; every image shares the base layer.
    let seeder = Seeder::new(&staging);
    let staged = |name: &str| format!("{STAGING_PATH}/{name}");
    let promoted = vec![
        Promoted {
            name: "controller",
            pushed: seeder.push_image(
                &staged("controller"),
                &image::single(ManifestFormat::Oci, "controller-1.0"),
                Some("1.0"),
            ),
            tags: &["v1.0.0", "latest"],
        },
        Promoted {
            name: "controller",
            pushed: seeder.push_image(
                &staged("controller"),
                &image::single(ManifestFormat::Oci, "controller-1.1"),
                None,
            ),
            tags: &["v1.1.0"],
        },
        Promoted {
            name: "worker",
            pushed: seeder.push_image(
                &staged("worker"),
                &image::single(ManifestFormat::Docker, "worker"),
                None,
            ),
            tags: &["v3.2.1"],
        },
        Promoted {
            name: "agent",
            pushed: seeder.push_index(
                &staged("agent"),
                &image::multi_platform(IndexFormat::Oci, "agent"),
                Some("2.0"),
            ),
            tags: &["v2.0.0", "stable"],
        },
    ];
    let base = image::base_layer().digest;
    assert!(
        promoted
            .iter()
            .all(|p| p.pushed.all_blobs().contains(&base)),
        "every image shares the base layer"
    );

    // The manifest, uploaded under an S3 prefix.
    let manifest = manifest_yaml(&staging, &prods, &promoted);
    let uploads = StateStore::open(MANIFESTS_URL)
        .await
        .expect("open the manifests' prefix");
    uploads
        .create("promoter-manifest.yaml", Bytes::from(manifest.clone()))
        .await
        .expect("upload the manifest")
        .expect("a new object");

    // Deps: SQS queues in moto, S3 state, a file key, the webhook.
    let sqs_config = sqs_config(&moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&sqs_config);
    let mut urls = Vec::new();
    for name in ["copy-digest", "sign", "notify"] {
        let created = sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, "10")
            .send()
            .await
            .unwrap_or_else(|e| panic!("create the {name} queue in moto: {e:?}"));
        urls.push(created.queue_url().expect("a queue URL").to_owned());
    }
    let queue = |url: &String| Queue::Sqs(Box::new(SqsQueue::new(&sqs_config, url.clone())));
    let keys = tempfile::tempdir().expect("a folder for the keys");
    let (private, public) = SigningKey::generate(&keys.path().join("cosign")).expect("a key pair");
    let public = VerifyingKey::from_pem_file(&public).expect("the public key");
    let signer = Signer::new(
        KeySource::File(SigningKey::from_pem_file(&private).expect("the private key")),
        Vec::new(),
    )
    .await
    .expect("a signer");
    let deps = Deps {
        store: StateStore::open(STATE_URL).await.expect("open the state"),
        client: Arc::new(
            Client::new(ClientConfig::default(), CredentialSources::default())
                .expect("a registry client"),
        ),
        queues: Queues {
            copy: queue(&urls[0]),
            sign: queue(&urls[1]),
            notify: queue(&urls[2]),
        },
        signer: Some(Arc::new(signer)),
        required_signature: None,
        notifier: Notifier::new(
            vec![Sink::Webhook {
                url: receiver.url("/hooks/promoter"),
                secret: Some(WEBHOOK_SECRET.to_owned()),
            }],
            None,
        ),
        settings: Settings::default(),
        http: github_http_client(&Default::default()).expect("an HTTP client"),
        runs: Default::default(),
    };
    assert_eq!(deps.store.url(), STATE_URL);
    println!(
        "servers up and staging seeded in {:?} (S3 at {s3_endpoint})",
        started.elapsed()
    );

    // validate-manifest: a run of 4 units, all enqueued.
    let request = ManualRequest {
        revision: REVISION.to_owned(),
        manifests: MANIFESTS_URL.to_owned(),
        repository: None,
    };
    let outcome = manual(&request, &deps).await.expect("validate-manifest");
    let ValidateOutcome::Accepted {
        run,
        revision,
        units,
        enqueued,
    } = outcome
    else {
        panic!("the manifest was not accepted: {outcome:?}\n{manifest}");
    };
    assert_eq!(
        (revision.as_str(), units, enqueued),
        (REVISION, promoted.len(), promoted.len())
    );
    assert_eq!(approximate_counts(&sqs, &urls[0]).await, (4, 0));

    // The chain, off the SQS queues.
    let drained = Instant::now();
    let handled = drain(&deps, 4, Duration::from_millis(500)).await;
    let first_drain = drained.elapsed();
    let registry_requests = deps.client.counts.total.load(Ordering::Relaxed);
    let state_requests = deps.store.requests();
    println!(
        "first drain: {} messages in {first_drain:?}; {registry_requests} registry requests, \
         {state_requests} state requests so far",
        handled.len()
    );
    assert_all_succeeded(&handled);
    let by_function = |function: Function| {
        handled
            .iter()
            .filter(|h| h.function == function)
            .collect::<Vec<_>>()
    };
    let copies = by_function(Function::CopyDigest);
    let signs = by_function(Function::Sign);
    let notices = by_function(Function::Notify);
    assert_eq!(
        (copies.len(), signs.len(), notices.len(), handled.len()),
        (4, 4, 1, 9),
        "one copy and one sign message per unit, one notify message: {handled:#?}"
    );
    for copy in &copies {
        let value = output(copy);
        assert_eq!(value["status"], "copied", "{value}");
        assert_eq!(value["sign_enqueued"], true, "{value}");
        assert_eq!(value["run"], run.as_str());
        assert_eq!(copy.receives, 1, "no message was received twice");
    }
    for signed in &signs {
        let value = output(signed);
        assert_eq!(
            value["added"].as_array().map(Vec::len),
            Some(8),
            "a signature added in each destination, in both formats, with the promotion record \
             and the summary: {value}"
        );
        assert_eq!(value["present"], serde_json::json!([]), "{value}");
    }
    let notified = output(notices[0]);
    // The summary's id names the run, how it ended and when (`run-<run id>-complete-<time>`).
    let notice_id = notified["notice"].as_str().unwrap_or_default().to_owned();
    assert!(
        notice_id.starts_with(&format!("run-{run}-complete-")),
        "{notified}"
    );
    assert_eq!(notified["sent"], serde_json::json!(["webhook"]));

    // Production serves staging's exact bytes, by digest (index children and blobs included)
    // and by every tag, in both registries.
    let staging_client = RawClient::for_registry(&staging);
    for (prod, prod_path) in prods.iter().zip(PROD_PATHS) {
        let prod_client = RawClient::for_registry(prod);
        for p in &promoted {
            let source = staged(p.name);
            let target = format!("{prod_path}/{}", p.name);
            for manifest in std::iter::once(&p.pushed).chain(&p.pushed.children) {
                let want = staging_client.get_manifest(&source, &manifest.digest);
                let got = prod_client.get_manifest(&target, &manifest.digest);
                assert_eq!(
                    got.status,
                    200,
                    "{}/{target}@{}",
                    prod.host(),
                    manifest.digest
                );
                assert_eq!(got.body, manifest.bytes, "{target}@{}", manifest.digest);
                assert_eq!(got.body, want.body);
                assert_eq!(
                    got.header("content-type"),
                    Some(manifest.media_type.as_str())
                );
            }
            for blob in p.pushed.all_blobs() {
                let want = staging_client.get_blob(&source, &blob);
                let got = prod_client.get_blob(&target, &blob);
                assert_eq!((want.status, got.status), (200, 200), "{target}@{blob}");
                assert_eq!(got.body, want.body, "{target}@{blob}");
            }
            for tag in p.tags {
                assert_eq!(
                    inspect_raw(prod, &target, tag, None),
                    p.pushed.bytes,
                    "skopeo reads {}/{target}:{tag}",
                    prod.host()
                );
            }
        }
    }

    // Every promoted digest is signed by the key, in every destination, naming the digest.
    for p in &promoted {
        for (prod, prod_path) in prods.iter().zip(PROD_PATHS) {
            let repository =
                promoter_tests::repository(&format!("{}/{prod_path}/{}", prod.host(), p.name));
            let payloads = sign::verify(
                &deps.client,
                &repository,
                &promoter_tests::digest(&p.pushed.digest),
                &public,
            )
            .await
            .expect("read the signatures");
            assert_eq!(
                payloads.len(),
                1,
                "one valid signature of {}@{}",
                repository.path(),
                p.pushed.digest
            );
            assert_eq!(
                payloads[0].critical.image.docker_manifest_digest,
                p.pushed.digest
            );
            // Without identities, the name signed is the first destination's (by name).
            let first_destination = prods
                .iter()
                .zip(PROD_PATHS)
                .map(|(r, path)| format!("{}/{path}/{}", r.host(), p.name))
                .min();
            assert_eq!(
                Some(&payloads[0].critical.identity.docker_reference),
                first_destination.as_ref(),
                "the name signed"
            );
        }
    }

    // The run record: complete, every unit done and final, the notice enqueued once.
    let (record, planned) = load_run(&deps.store, &run)
        .await
        .expect("read the run")
        .expect("the run is recorded");
    assert_eq!(record.status, RunStatus::Complete, "{record:?}");
    assert_eq!(record.units, 4);
    assert_eq!(
        (
            record.counts.done,
            record.counts.failed,
            record.counts.pending
        ),
        (4, 0, 0)
    );
    assert!(record.finished_at.is_some());
    assert_eq!(record.trigger.revision, REVISION);
    let mut planned_digests: Vec<String> = planned.iter().map(|u| u.digest.to_string()).collect();
    let mut promoted_digests: Vec<String> =
        promoted.iter().map(|p| p.pushed.digest.clone()).collect();
    planned_digests.sort();
    promoted_digests.sort();
    assert_eq!(planned_digests, promoted_digests);
    let unit_states = RunLedger::new(&deps.store, &run)
        .unit_records()
        .await
        .expect("unit records");
    assert_eq!(unit_states.len(), 4);
    for unit in &unit_states {
        assert_eq!(
            unit.status,
            promoter::state::records::UnitStatus::Done,
            "{unit:?}"
        );
    }
    assert_eq!(
        RunLedger::new(&deps.store, &run)
            .final_units()
            .await
            .expect("final units")
            .len(),
        4
    );
    assert!(
        RunLedger::new(&deps.store, &run)
            .failed_units()
            .await
            .expect("failed units")
            .is_empty()
    );
    assert!(
        deps.store
            .get(&notified_key(&run))
            .await
            .expect("read")
            .is_some()
    );

    // Exactly one notice reached the webhook: the run's summary, signed.
    let received = receiver.requests();
    assert_eq!(received.len(), 1, "{received:#?}");
    let notice = &received[0];
    assert_eq!(notice.method, "POST");
    assert_eq!(notice.header("x-promoter-event"), Some("run_summary"));
    assert_eq!(
        notice.header("x-promoter-delivery"),
        Some(notice_id.as_str())
    );
    assert_eq!(
        notice.header("x-promoter-signature-256"),
        Some(signature_header(WEBHOOK_SECRET.as_bytes(), &notice.body).as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&notice.body).expect("a JSON notice");
    assert_eq!(body["kind"], "run_summary", "{body}");
    assert_eq!(body["id"], notice_id.as_str(), "{body}");
    assert_eq!(body["details"]["run"]["counts"]["done"], 4, "{body}");
    assert_eq!(body["details"]["failures"], serde_json::json!([]), "{body}");

    // Every queue is empty.
    assert_queues_empty(&sqs, &urls, "").await;
    let registries = [&staging, &prods[0], &prods[1]];
    let before: Vec<Snapshot> = registries
        .iter()
        .map(|r| snapshot(r.storage_root()))
        .collect();

    // The same revision again: nothing to enqueue, nothing written, no second notice.
    let rerun = Instant::now();
    let again = manual(&request, &deps)
        .await
        .expect("validate-manifest again");
    assert_eq!(
        again,
        ValidateOutcome::Accepted {
            run: run.clone(),
            revision: REVISION.to_owned(),
            units: 4,
            enqueued: 0,
        }
    );
    let requests_before = deps.client.counts.total.load(Ordering::Relaxed);
    let handled_again = drain(&deps, 4, Duration::from_millis(500)).await;
    println!(
        "rerun: {} messages, {} registry requests, in {:?}",
        handled_again.len(),
        deps.client.counts.total.load(Ordering::Relaxed) - requests_before,
        rerun.elapsed()
    );
    assert_all_succeeded(&handled_again);
    for handled in &handled_again {
        // Only no-op copies could appear (units are final): never a sign or a notify.
        assert_eq!(handled.function, Function::CopyDigest, "{handled:?}");
        assert_ne!(output(handled)["status"], "copied", "{handled:?}");
    }
    for (registry, was) in registries.iter().zip(&before) {
        let now = snapshot(registry.storage_root());
        assert!(
            &now == was,
            "the rerun wrote to {}: {:#?}",
            registry.host(),
            difference(was, &now)
        );
    }
    // The snapshots would have seen a write: even re-putting a tag with the same bytes shows.
    let first = &promoted[0];
    Seeder::new(&prods[0]).push_manifest(
        &format!("{}/{}", PROD_PATHS[0], first.name),
        first.tags[0],
        &first.pushed.media_type,
        &first.pushed.bytes,
    );
    assert!(
        snapshot(prods[0].storage_root()) != before[1],
        "a no-op tag PUT changes the storage snapshot"
    );
    assert_eq!(receiver.requests().len(), 1, "no second notice");
    assert_queues_empty(&sqs, &urls, "").await;
    let (record_again, _) = load_run(&deps.store, &run)
        .await
        .expect("read the run")
        .expect("the run");
    assert_eq!(record_again.status, RunStatus::Complete);
    assert_eq!(record_again.counts.done, 4);
    println!(
        "total {:?}: {} registry requests, {} state requests",
        started.elapsed(),
        deps.client.counts.total.load(Ordering::Relaxed),
        deps.store.requests()
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The plain manifest promoting `promoted` from staging to both production registries.
fn manifest_yaml(
    staging: &TestRegistry,
    prods: &[TestRegistry; 2],
    promoted: &[Promoted],
) -> String {
    let mut yaml = format!(
        "registries:\n- name: {}/{STAGING_PATH}\n  src: true\n",
        staging.host()
    );
    for (prod, path) in prods.iter().zip(PROD_PATHS) {
        yaml.push_str(&format!("- name: {}/{path}\n", prod.host()));
    }
    yaml.push_str("images:\n");
    let mut names: Vec<&str> = promoted.iter().map(|p| p.name).collect();
    names.dedup();
    for name in names {
        yaml.push_str(&format!("- name: {name}\n  dmap:\n"));
        for p in promoted.iter().filter(|p| p.name == name) {
            let tags: Vec<String> = p.tags.iter().map(|t| format!("\"{t}\"")).collect();
            yaml.push_str(&format!(
                "    \"{}\": [{}]\n",
                p.pushed.digest,
                tags.join(", ")
            ));
        }
    }
    yaml
}

/// A handled message's output as the JSON a Lambda function returns (it succeeded).
fn output(handled: &Handled) -> serde_json::Value {
    let output = handled
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{handled:?} failed: {e}"));
    serde_json::to_value(output).expect("a step's output as JSON")
}

/// Every message succeeded: no error, no unit failed for good, no signing error.
fn assert_all_succeeded(handled: &[Handled]) {
    let failures: Vec<String> = handled
        .iter()
        .filter_map(|h| match &h.result {
            Err(error) => Some(format!(
                "{} {}: {}",
                h.function.name(),
                h.body,
                promoter::error_chain::error_chain(error)
            )),
            Ok(_) => {
                let value = output(h);
                (value["status"] == "failed"
                    || !value.get("error").is_none_or(serde_json::Value::is_null))
                .then(|| format!("{} {}: {value}", h.function.name(), h.body))
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "messages failed:\n{}",
        failures.join("\n")
    );
}

/// Every file and folder under a registry's storage: size and modification time.
type Snapshot = BTreeMap<String, (u64, SystemTime)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a storage folder") {
            let entry = entry.expect("a folder entry");
            let meta = entry.metadata().expect("metadata");
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.insert(
                relative,
                (meta.len(), meta.modified().expect("a modification time")),
            );
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    out
}

/// What changed between two snapshots, for a failure message.
fn difference(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, value) in after {
        match before.get(path) {
            None => out.push(format!("+ {path}")),
            Some(old) if old != value => out.push(format!("~ {path}")),
            Some(_) => {}
        }
    }
    out.extend(
        before
            .keys()
            .filter(|path| !after.contains_key(*path))
            .map(|path| format!("- {path}")),
    );
    out
}
