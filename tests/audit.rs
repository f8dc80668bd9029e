//! The auditor against a real CNCF distribution registry: the registry's own push
//! notifications (caught by a small webhook receiver of the test) are decoded with
//! `promoter::events::from_distribution` and judged with `promoter::audit::judge_with_registry`
//! against a desired state naming a two-platform index (tag `v1`) and an image.
//!
//! Expected: the index's tag push is approved, its children's untagged pushes are expected,
//! a referrer artifact of the approved image and a cosign signature tag of a child are
//! expected, an unrelated image is unapproved (unknown digest), a delete is unapproved. Also:
//! tag-only events are resolved through the registry, lookups stay few, and an unreachable
//! registry is a retryable error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use promoter::audit::judge_with_registry;
use promoter::audit::{AuditRecord, Reason, SOURCE_DISTRIBUTION, Verdict, event_id};
use promoter::events::{Action, RegistryEvent, from_distribution};
use promoter::http::retry::RetryPolicy;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::state::records::DesiredIndex;
use promoter_tests::harness::image::{
    self, IndexFormat, ManifestFormat, OCI_INDEX, OCI_MANIFEST, Pushed, Seeder, sha256_digest,
};
use promoter_tests::harness::receiver;
use promoter_tests::harness::{RegistryBuilder, TestRegistry};

const REPO: &str = "prod/app";

/// A webhook endpoint on loopback collecting every body POSTed to it.
struct Receiver(receiver::Receiver);

impl Receiver {
    fn start() -> Self {
        Receiver(receiver::Receiver::answering(200, ""))
    }

    /// The registry's `notifications:` section pointing at this receiver.
    fn config(&self) -> String {
        format!(
            "notifications:\n  endpoints:\n    - name: audit\n      url: {}\n      \
             timeout: 2s\n      threshold: 5\n      backoff: 100ms\n",
            self.0.url("/notify")
        )
    }

    /// Every event received so far, decoded.
    fn events(&self, host: &str) -> Vec<RegistryEvent> {
        self.0
            .requests()
            .iter()
            .flat_map(|r| from_distribution(&r.body, host).expect("a distribution notification"))
            .collect()
    }

    /// Waits until `done` holds for the events received (10 s at most).
    async fn wait_for(
        &self,
        host: &str,
        done: impl Fn(&[RegistryEvent]) -> bool,
    ) -> Vec<RegistryEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(host);
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "notifications did not arrive; got {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn client() -> Client {
    Client::new(ClientConfig::default(), CredentialSources::default()).expect("client")
}

fn desired(repository: &str, entries: &[(&str, &[&str])]) -> DesiredIndex {
    DesiredIndex {
        schema: "promoter.desired/v1".into(),
        sources: BTreeMap::new(),
        policies: BTreeMap::new(),
        revision: "rev-1".into(),
        repositories: BTreeMap::from([(
            repository.to_owned(),
            entries
                .iter()
                .map(|(digest, tags)| {
                    (
                        (*digest).to_owned(),
                        tags.iter().map(|t| (*t).to_owned()).collect(),
                    )
                })
                .collect(),
        )]),
    }
}

/// Pushes an OCI artifact (empty config, one JSON layer) naming `subject` as its subject,
/// by digest or by `tag`; returns its digest.
fn push_artifact(
    seeder: &Seeder,
    subject: Option<&Pushed>,
    content: &[u8],
    tag: Option<&str>,
) -> String {
    let content_digest = sha256_digest(content);
    seeder.push_blob(REPO, &content_digest, content);
    let empty = b"{}";
    seeder.push_blob(REPO, &sha256_digest(empty), empty);
    let mut artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(empty), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": content_digest, "size": content.len()}],
    });
    if let Some(subject) = subject {
        artifact["subject"] = serde_json::json!({
            "mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()
        });
    }
    let bytes = serde_json::to_vec(&artifact).expect("artifact JSON");
    let digest = sha256_digest(&bytes);
    seeder.push_manifest(REPO, tag.unwrap_or(&digest), OCI_MANIFEST, &bytes);
    digest
}

fn expected_why(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Expected { why } => why,
        other => panic!("expected Expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_notifications_are_judged_against_the_desired_state() {
    let receiver = Receiver::start();
    let registry = RegistryBuilder::new()
        .extra_config(&receiver.config())
        .start();
    let host = registry.host();
    let repository = format!("{host}/{REPO}");
    let seeder = Seeder::new(&registry);

    let index = seeder.push_index(
        REPO,
        &image::multi_platform(IndexFormat::Oci, "audited"),
        Some("v1"),
    );
    let approved = seeder.push_image(REPO, &image::single(ManifestFormat::Oci, "approved"), None);
    let unrelated = seeder.push_image(REPO, &image::single(ManifestFormat::Oci, "unrelated"), None);
    let referrer = push_artifact(&seeder, Some(&approved), br#"{"sbom":"approved"}"#, None);
    let child = &index.children[0];
    let signature_tag = format!("{}.sig", child.digest.replace(':', "-"));
    let signature = push_artifact(&seeder, None, b"signature", Some(&signature_tag));
    let orphan = push_artifact(&seeder, Some(&unrelated), br#"{"sbom":"unrelated"}"#, None);
    let deleted = seeder.client().send(
        "DELETE",
        &format!("/v2/{REPO}/manifests/{}", unrelated.digest),
        REPO,
        &[],
        None,
    );
    assert_eq!(deleted.status, 202, "delete by digest");

    let events = receiver
        .wait_for(&host, |events| {
            events.iter().any(|e| e.action == Action::Delete)
                && events
                    .iter()
                    .any(|e| e.digest.as_deref() == Some(orphan.as_str()))
        })
        .await;
    let desired = desired(
        &repository,
        &[(&index.digest, &["v1"]), (&approved.digest, &[])],
    );
    let client = client();
    let mut judged = Vec::new();
    for event in &events {
        assert_eq!(event.repository, repository);
        let verdict = judge_with_registry(event, &desired, &client)
            .await
            .unwrap_or_else(|e| panic!("judging {event:?}: {e}"));
        judged.push((event.clone(), verdict));
    }
    let find = |action: Action, digest: &str, tag: Option<&str>| -> &Verdict {
        judged
            .iter()
            .find(|(e, _)| {
                e.action == action && e.digest.as_deref() == Some(digest) && e.tag.as_deref() == tag
            })
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {action:?} event of {digest} {tag:?} in {events:#?}"))
    };

    assert_eq!(
        find(Action::Push, &index.digest, Some("v1")),
        &Verdict::Approved
    );
    assert_eq!(
        find(Action::Push, &approved.digest, None),
        &Verdict::Approved
    );
    for child in &index.children {
        assert_eq!(
            expected_why(find(Action::Push, &child.digest, None)),
            format!("child of approved index {}", index.digest)
        );
    }
    assert_eq!(
        expected_why(find(Action::Push, &referrer, None)),
        format!("referrer of approved {}", approved.digest)
    );
    assert_eq!(
        expected_why(find(Action::Push, &signature, Some(&signature_tag))),
        format!(
            "cosign signature of {}, child of approved index {}",
            child.digest, index.digest
        )
    );
    let unknown = Verdict::Unapproved {
        reason: Reason::UnknownDigest,
    };
    assert_eq!(find(Action::Push, &unrelated.digest, None), &unknown);
    assert_eq!(
        find(Action::Push, &orphan, None),
        &unknown,
        "a referrer of an unapproved image"
    );
    assert_eq!(
        find(Action::Delete, &unrelated.digest, None),
        &Verdict::Unapproved {
            reason: Reason::Deleted
        }
    );

    // Records keep the registry's event ids.
    for (event, verdict) in &judged {
        let id = event
            .id
            .as_deref()
            .expect("distribution events carry an id");
        let record = AuditRecord::new(
            event,
            SOURCE_DISTRIBUTION,
            1_700_000_000,
            "rev-1",
            verdict.clone(),
        );
        assert_eq!(record.id, event_id(event));
        assert_eq!(
            record.id, id,
            "distribution ids are UUIDs, kept as they are"
        );
        assert!(
            record.key().starts_with(&format!("audit/events/{id}-")),
            "{}",
            record.key()
        );
        let line = record.to_string();
        assert!(line.contains(&repository), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_without_digests_are_resolved_and_lookups_stay_few() {
    let registry = TestRegistry::start();
    let repository = format!("{}/{REPO}", registry.host());
    let seeder = Seeder::new(&registry);
    let index = seeder.push_index(
        REPO,
        &image::multi_platform(IndexFormat::Oci, "few"),
        Some("v1"),
    );
    let other = seeder.push_image(
        REPO,
        &image::single(ManifestFormat::Oci, "other"),
        Some("latest"),
    );
    // Many desired digests absent from production, and the index.
    let mut entries: Vec<(String, Vec<&str>)> = (0..20)
        .map(|i| (sha256_digest(format!("absent {i}").as_bytes()), vec![]))
        .collect();
    entries.push((index.digest.clone(), vec!["v1", "latest"]));
    let borrowed: Vec<(&str, &[&str])> = entries
        .iter()
        .map(|(d, t)| (d.as_str(), t.as_slice()))
        .collect();
    let desired = desired(&repository, &borrowed);
    let event = |digest: Option<&str>, tag: Option<&str>| RegistryEvent {
        id: None,
        action: Action::Push,
        repository: repository.clone(),
        digest: digest.map(str::to_owned),
        tag: tag.map(str::to_owned),
    };

    let client = client();
    let verdict = judge_with_registry(&event(None, Some("v1")), &desired, &client)
        .await
        .expect("judged");
    assert_eq!(verdict, Verdict::Approved, "v1 resolves to the index");
    let verdict = judge_with_registry(&event(None, Some("latest")), &desired, &client)
        .await
        .expect("judged");
    assert_eq!(
        verdict,
        Verdict::Unapproved {
            reason: Reason::TagMoved {
                tag: "latest".into(),
                desired_digest: index.digest.clone()
            }
        },
        "latest points at {} in production",
        other.digest
    );

    // A child: its own manifest (no subject), then each desired digest until the index.
    let before = client
        .counts
        .total
        .load(std::sync::atomic::Ordering::Relaxed);
    let verdict = judge_with_registry(
        &event(Some(&index.children[1].digest), None),
        &desired,
        &client,
    )
    .await
    .expect("judged");
    let sent = client
        .counts
        .total
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert_eq!(
        expected_why(&verdict),
        format!("child of approved index {}", index.digest)
    );
    let bound = 1 + desired.repositories[&repository].len() as u64;
    assert!(
        (2..=bound).contains(&sent),
        "{sent} requests: its manifest, then desired ones up to the index (at most {bound})"
    );

    // No request at all for what the event alone decides.
    let before = client
        .counts
        .total
        .load(std::sync::atomic::Ordering::Relaxed);
    let verdict = judge_with_registry(&event(Some(&index.digest), Some("v1")), &desired, &client)
        .await
        .expect("judged");
    assert_eq!(verdict, Verdict::Approved);
    assert_eq!(
        client
            .counts
            .total
            .load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    assert_eq!(index.media_type, OCI_INDEX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_a_retryable_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let repository = format!("127.0.0.1:{port}/{REPO}");
    let desired = desired(&repository, &[(&sha256_digest(b"desired"), &["v1"])]);
    let event = RegistryEvent {
        id: Some("e".into()),
        action: Action::Push,
        repository,
        digest: Some(sha256_digest(b"pushed")),
        tag: None,
    };
    let config = ClientConfig {
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::new(config, CredentialSources::default()).expect("client");
    let error = judge_with_registry(&event, &desired, &client)
        .await
        .expect_err("nothing listens there");
    assert!(error.is_retryable(), "{error:?}");
}
