//! The registry client against registries that are broken or hostile (the fake registry of the
//! harness, on loopback): credentials must never reach a host the registry names, nothing may
//! hang, and nothing is read without a bound.
//!
//! Each test failed before the one transport (`promoter::http`) existed: the `Authorization`
//! header went to any URL, requests had only a connect timeout (the stalled ones waited for
//! the test's own guard), and bodies were read whole.

use std::time::Duration;

use base64::Engine as _;
use promoter::http::Timeouts;
use promoter::http::retry::RetryPolicy;
use promoter::reference::{Digest, Tag};
use promoter::registry::auth::docker_config::DockerConfig;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig, RegistryError};
use promoter_tests::harness::fake_registry::{Body, Fake, Reply};

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const BASIC: &str = "Basic cHJvZHVjdGlvbjpzZWNyZXQ="; // production:secret

/// A client with short timeouts and quick retries, holding `production:secret` for `host`.
fn client_with_credentials_for(host: &str, attempts: u32) -> Client {
    let auth = base64::engine::general_purpose::STANDARD.encode("production:secret");
    let docker =
        DockerConfig::from_json(&format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#))
            .expect("a docker config");
    let config = ClientConfig {
        retry: RetryPolicy {
            attempts,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
            budget: Duration::from_secs(20),
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            idle: Duration::from_secs(1),
            request: Duration::from_secs(3),
            transfer: Duration::from_secs(3),
        },
        ..ClientConfig::default()
    };
    let sources = CredentialSources {
        docker: Some(docker),
        ..CredentialSources::default()
    };
    Client::new(config, sources).expect("a client")
}

/// A registry asking for Basic credentials, then answering with `reply` for `path`.
fn basic_registry(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Fake {
    Fake::start(move |seen, _| match &seen.authorization {
        Some(value) if value == BASIC => reply(&seen.url),
        _ => Reply::status(401).header("WWW-Authenticate", r#"Basic realm="fake""#),
    })
}

/// Fails the test instead of hanging it: a request the transport should end within seconds.
async fn within_a_minute<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the client gave up in time instead of hanging")
}

fn digest() -> Digest {
    DIGEST.parse().expect("a digest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_host_is_sent_no_credentials() {
    let elsewhere = Fake::start(|_, _| Reply::status(201));
    let location = format!("http://{}/uploads/1?state=x", elsewhere.host());
    let registry = basic_registry(move |_| Reply::status(202).header("Location", &location));
    let client = client_with_credentials_for(&registry.host(), 1);
    client
        .upload_bytes(&registry.repository("app"), &digest(), "x".into())
        .await
        .expect("the upload finishes on the other host");
    let posts = registry.seen();
    assert!(
        posts
            .iter()
            .any(|s| s.authorization.as_deref() == Some(BASIC)),
        "the registry itself was sent its credentials: {posts:?}"
    );
    let puts = elsewhere.seen();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].authorization, None, "credentials leaked: {puts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_link_to_another_host_is_sent_no_credentials() {
    let elsewhere = Fake::start(|_, _| Reply::status(200).body(br#"{"name":"app","tags":["v2"]}"#));
    let next = format!("http://{}/v2/app/tags/list?last=v1", elsewhere.host());
    let registry = basic_registry(move |_| {
        Reply::status(200)
            .header("Link", &format!(r#"<{next}>; rel="next""#))
            .body(br#"{"name":"app","tags":["v1"]}"#)
    });
    let client = client_with_credentials_for(&registry.host(), 1);
    let tags = client
        .tags(&registry.repository("app"))
        .await
        .expect("both pages");
    let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    assert_eq!(names, ["v1", "v2"]);
    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, None, "credentials leaked: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_never_answers_is_reported() {
    let registry = Fake::start(|_, _| Reply::status(200).delay(Duration::from_secs(3600)));
    let client = client_with_credentials_for(&registry.host(), 2);
    let error = within_a_minute(client.manifest_head(&registry.repository("app"), digest()))
        .await
        .expect_err("no answer");
    assert!(matches!(error, RegistryError::Transport { .. }), "{error}");
    assert_eq!(registry.seen().len(), 2, "tried, then retried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_answer_fails_at_the_request_deadline() {
    let manifest = vec![b'{'; 100];
    let registry = Fake::start(move |_, _| {
        Reply::status(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .sending(Body::Trickle {
                bytes: manifest.clone(),
                every: Duration::from_millis(300),
            })
    });
    let client = client_with_credentials_for(&registry.host(), 1);
    let tag: Tag = "v1".parse().expect("a tag");
    let error = within_a_minute(client.manifest_get(&registry.repository("app"), &tag))
        .await
        .expect_err("too slow");
    assert!(error.to_string().contains("GET"), "{error}");
    assert!(error.is_retryable(), "a timeout may pass: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_answer_on_an_open_connection_fails_when_idle() {
    let registry = Fake::start(|_, _| {
        Reply::status(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .sending(Body::Short {
                declared: 1000,
                sent: b"{\"schemaVersion\":".to_vec(),
            })
    });
    let client = client_with_credentials_for(&registry.host(), 1);
    let tag: Tag = "v1".parse().expect("a tag");
    let error = within_a_minute(client.manifest_get(&registry.repository("app"), &tag))
        .await
        .expect_err("never finished");
    assert!(error.is_retryable(), "{error}");
}

/// A manifest answer of `len` filler bytes, announced or not.
fn huge_manifest(len: u64, sized: bool) -> Fake {
    Fake::start(move |_, _| {
        Reply::status(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .sending(Body::Filler { len, sized })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_4_mib_is_refused_announced_or_not() {
    let tag: Tag = "v1".parse().expect("a tag");
    for sized in [true, false] {
        let registry = huge_manifest(200 << 20, sized);
        let client = client_with_credentials_for(&registry.host(), 1);
        let error = within_a_minute(client.manifest_get(&registry.repository("app"), &tag))
            .await
            .expect_err("too large");
        let text = promoter::error_chain::error_chain(&error);
        assert!(text.contains("larger than 4194304 bytes"), "{text}");
        assert!(!error.is_retryable(), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_over_4_mib_are_refused() {
    let registry = huge_manifest(200 << 20, false);
    let client = client_with_credentials_for(&registry.host(), 1);
    let error = within_a_minute(client.referrers(&registry.repository("app"), &digest()))
        .await
        .expect_err("too large");
    assert!(
        promoter::error_chain::error_chain(&error).contains("larger than"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_is_read_only_as_far_as_the_message_needs() {
    let registry = Fake::start(|_, _| {
        Reply::status(403).sending(Body::Filler {
            len: 200 << 20,
            sized: true,
        })
    });
    let client = client_with_credentials_for(&registry.host(), 1);
    let error = within_a_minute(client.manifest_head(&registry.repository("app"), digest()))
        .await
        .expect_err("forbidden");
    let RegistryError::Status { status, detail, .. } = &error else {
        panic!("a status error: {error}");
    };
    assert_eq!(status.as_u16(), 403);
    assert!(detail.chars().count() <= 301, "{} characters", detail.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_that_never_ends_is_refused() {
    // Each page links to a new one.
    let endless = Fake::start(|seen, index| {
        let next = format!("/v2/app/tags/list?last=t{index}");
        let _ = &seen.url;
        Reply::status(200)
            .header("Link", &format!(r#"<{next}>; rel="next""#))
            .body(format!(r#"{{"tags":["t{index}"]}}"#).as_bytes())
    });
    let client = client_with_credentials_for(&endless.host(), 1);
    let error = within_a_minute(client.tags(&endless.repository("app")))
        .await
        .expect_err("endless");
    assert!(matches!(error, RegistryError::Pagination { .. }), "{error}");
    assert_eq!(endless.seen().len(), 1000, "the page limit");

    // A page linking to itself.
    let looping = Fake::start(|_, _| {
        Reply::status(200)
            .header("Link", r#"</v2/app/tags/list?n=1000>; rel="next""#)
            .body(br#"{"tags":["a"]}"#)
    });
    let client = client_with_credentials_for(&looping.host(), 1);
    let error = within_a_minute(client.tags(&looping.repository("app")))
        .await
        .expect_err("a loop");
    assert!(matches!(error, RegistryError::Pagination { .. }), "{error}");
    assert_eq!(
        looping.seen().len(),
        1,
        "the repeated page is not fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_page_over_its_cap_is_refused() {
    let registry = Fake::start(|_, _| {
        Reply::status(200).sending(Body::Filler {
            len: 64 << 20,
            sized: false,
        })
    });
    let client = client_with_credentials_for(&registry.host(), 1);
    let error = within_a_minute(client.tags(&registry.repository("app")))
        .await
        .expect_err("too large");
    assert!(
        promoter::error_chain::error_chain(&error).contains("larger than 16777216 bytes"),
        "{error}"
    );
}
