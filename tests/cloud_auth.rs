//! Cloud credentials end to end: a promotion into a real registry that only accepts what ECR's
//! `GetAuthorizationToken` (served by a real moto server) or Google's metadata server (a small
//! fake on loopback) hands out, as those clouds' registries do. On the ECR side, the destination
//! repository is created in moto's ECR before the first push (`IMMUTABLE` tags by default), as
//! ECR does not create repositories on push.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecr::config::Credentials as AwsCredentials;
use promoter::copy::{CopyOptions, Engine};
use promoter::plan::{Destination, Unit};
use promoter::registry::auth::ecr::{EcrCredentials, RepositorySettings};
use promoter::registry::auth::google::GoogleCredentials;
use promoter::registry::auth::session::CredentialSources;
use promoter::registry::{Client, ClientConfig};
use promoter::state::GcsStore;
use promoter_tests::harness::federation::{self, Federation};
use promoter_tests::harness::gcs::FakeGcs;
use promoter_tests::harness::image::{ManifestFormat, push_single};
use promoter_tests::harness::moto::MotoServer;
use promoter_tests::harness::receiver::{Receiver, Reply};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::skopeo;

/// What moto's `GetAuthorizationToken` answers (see FACTS.md).
const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";

/// A one-unit plan copying `digest` from `source` to `destination` with tag `v1`.
fn unit(source: &str, destination: &str, digest: &str) -> Unit {
    Unit {
        id: "cloud".to_owned(),
        source: promoter_tests::repository(source),
        digest: digest.parse().expect("digest"),
        destinations: vec![Destination {
            repository: promoter_tests::repository(destination),
            tags: Arc::from(vec!["v1".parse().expect("tag")]),
        }],
        policies: Vec::new(),
    }
}

async fn promote_with(sources: CredentialSources, unit: &Unit) -> Arc<Client> {
    let client = Arc::new(Client::new(ClientConfig::default(), sources).expect("client"));
    let engine = Engine::new(Arc::clone(&client), CopyOptions::default());
    let report = engine.copy_unit(unit).await;
    assert!(report.succeeded(), "{:?}", report.error);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_token_from_moto_opens_the_production_registry() {
    let moto = MotoServer::start();
    let staging = TestRegistry::start();
    let production = TestRegistry::with_htpasswd("AWS", MOTO_ECR_PASSWORD);
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "ecr-app",
        None,
    );
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(AwsCredentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let ecr = EcrCredentials::with_config(config.clone(), vec![production.host()]);
    let sources = CredentialSources {
        ecr: Some(ecr),
        ..CredentialSources::default()
    };
    let unit = unit(
        &format!("{}/staging/app", staging.host()),
        &format!("{}/prod/app", production.host()),
        &image.digest,
    );
    promote_with(sources, &unit).await;
    let bytes = skopeo::inspect_raw(&production, "prod/app", "v1", production.credentials());
    assert_eq!(
        bytes, image.bytes,
        "production serves staging's exact bytes"
    );

    // The repository was created in ECR before the push, with immutable tags.
    let api = aws_sdk_ecr::Client::new(&config);
    let describe = async |name: &str| {
        api.describe_repositories()
            .repository_names(name)
            .send()
            .await
            .expect("described")
            .repositories()
            .first()
            .cloned()
            .expect("one repository")
    };
    let created = describe("prod/app").await;
    assert_eq!(
        created.image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
    );
    assert_eq!(
        created
            .image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(false)
    );

    // Another process finds it (no second repository), and one configured otherwise creates
    // the repositories it lacks its way.
    let settings = RepositorySettings {
        immutable_tags: false,
        scan_on_push: true,
    };
    let ecr = EcrCredentials::with_config(config.clone(), vec![production.host()])
        .creating_repositories(settings);
    assert!(
        !ecr.ensure_repository(&production.host(), "prod/app")
            .await
            .expect("found")
    );
    assert!(
        ecr.ensure_repository(&production.host(), "prod/other")
            .await
            .expect("created")
    );
    let other = describe("prod/other").await;
    assert_eq!(
        other.image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Mutable)
    );
    assert_eq!(
        other
            .image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(true)
    );
    let all = api.describe_repositories().send().await.expect("listed");
    assert_eq!(all.repositories().len(), 2, "{all:?}");
}

/// A fake GCE metadata server answering every request with one access token, counting them.
fn start_metadata(token: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let host = format!(
        "127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut flavor = false;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                flavor |= line
                    .to_ascii_lowercase()
                    .starts_with("metadata-flavor: google");
                line.clear();
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = if flavor {
                (
                    "200 OK",
                    format!(
                        "{{\"access_token\":\"{token}\",\"expires_in\":3599,\"token_type\":\"Bearer\"}}"
                    ),
                )
            } else {
                ("403 Forbidden", "missing Metadata-Flavor".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = (&stream).write_all(response.as_bytes());
        }
    });
    (host, requests)
}

/// Promotes a fresh staging image into a production registry that accepts only
/// `oauth2accesstoken` / `token`, with the Google credentials `google` makes for it, and checks
/// production serves staging's exact bytes.
async fn promote_into_a_google_registry(
    token: &str,
    (format, seed): (ManifestFormat, &str),
    google: impl FnOnce(&TestRegistry) -> GoogleCredentials,
) {
    let staging = TestRegistry::start();
    let production = TestRegistry::with_htpasswd("oauth2accesstoken", token);
    let image = push_single(&staging, "staging/app", format, seed, None);
    let sources = CredentialSources {
        google: Some(google(&production)),
        ..CredentialSources::default()
    };
    let unit = unit(
        &format!("{}/staging/app", staging.host()),
        &format!("{}/prod/app", production.host()),
        &image.digest,
    );
    promote_with(sources, &unit).await;
    let bytes = skopeo::inspect_raw(&production, "prod/app", "v1", production.credentials());
    assert_eq!(
        bytes, image.bytes,
        "production serves staging's exact bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_access_token_from_the_metadata_server_opens_the_production_registry() {
    let (metadata, requests) = start_metadata("ya29.test-token");
    promote_into_a_google_registry(
        "ya29.test-token",
        (ManifestFormat::Docker, "gcp-app"),
        |production| GoogleCredentials::with_metadata_host(metadata, vec![production.host()]),
    )
    .await;
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the access token is cached"
    );
}

/// A recording proxy in front of `upstream` (blocking, one request at a time): what the
/// promoter sends to GCS is seen, and fake-gcs-server (which checks no token) answers.
fn recording_proxy(upstream: String) -> Receiver {
    // Built on the receiver's thread: a blocking client may not be made or dropped in async code.
    let http = std::sync::OnceLock::new();
    Receiver::start(move |_, request| {
        let http = http.get_or_init(reqwest::blocking::Client::new);
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
        let mut forward = http.request(method, format!("{upstream}{}", request.path));
        for (name, value) in &request.headers {
            if !["host", "content-length", "connection"]
                .contains(&name.to_ascii_lowercase().as_str())
            {
                forward = forward.header(name.as_str(), value.as_str());
            }
        }
        let response = forward
            .body(request.body.clone())
            .send()
            .expect("fake-gcs-server answers");
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                !["content-length", "transfer-encoding", "connection"].contains(&name.as_str())
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = response.bytes().expect("body").to_vec();
        headers
            .iter()
            .fold(Reply::new(status, body), |reply, (name, value)| {
                reply.header(name, value)
            })
    })
}

/// Workload Identity Federation from AWS, as a promoter on AWS reaches Google: the role's
/// credentials (from the metadata service, as on EC2; a Lambda has them in its environment,
/// which `cli_google` covers) sign a `GetCallerIdentity` request, Google's STS exchanges it
/// for a federated token, the IAM Credentials API for the service account's access token. The
/// token opens a registry that accepts only it, and GCS state (fake-gcs-server behind a
/// recording proxy) gets it on every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_from_aws_opens_google_registries_and_gcs_state() {
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        assert!(
            std::env::var_os(name).is_none(),
            "{name} is set: this test stands for an AWS workload whose role credentials come from \
             the metadata service; run it without AWS credentials in the environment"
        );
    }
    let federation = Federation::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let credential_file = federation.credential_file(dir.path());

    promote_into_a_google_registry(
        federation::ACCESS_TOKEN,
        (ManifestFormat::Oci, "wif-app"),
        |production| GoogleCredentials::with_key_file(&credential_file, vec![production.host()]),
    )
    .await;
    assert_eq!(
        federation.sts.requests().len(),
        1,
        "one token exchange, cached"
    );
    assert_eq!(
        federation.iam.requests().len(),
        1,
        "one impersonation, cached"
    );
    assert!(
        federation
            .aws
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/promoter-role")),
        "the role's credentials came from the AWS credential source"
    );

    let gcs = FakeGcs::start(&["state"]);
    let proxy = recording_proxy(gcs.endpoint());
    let credentials = GoogleCredentials::with_key_file(&credential_file, vec![]);
    let store = GcsStore::with_endpoint_and_credentials(&proxy.url(""), "state/wif", credentials)
        .await
        .expect("store");
    let created = store
        .create("runs/r1.json", bytes::Bytes::from_static(b"{\"run\":1}"))
        .await
        .expect("create through the federated token");
    assert!(created.is_some(), "created");
    let object = store
        .get("runs/r1.json")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(object.bytes.as_ref(), b"{\"run\":1}");
    assert_eq!(
        store.list("runs/").await.expect("list"),
        vec!["runs/r1.json".to_owned()]
    );
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {}", federation::ACCESS_TOKEN).as_str()),
            "{} {}",
            request.method,
            request.path
        );
    }
}

/// Image manifest number `n`, with a distinct layer: moto derives an image's digest from its
/// layers (not from the manifest's bytes, as ECR does), so the digest is taken from its answer.
fn ecr_manifest(n: usize) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{n:064x}"),
            "size": 2,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{:064x}", n + 1),
            "size": n + 1,
        }],
    })
    .to_string()
}

/// Puts image `n` with `tag` into moto's ECR repository `prod/app`; returns its digest.
async fn put_ecr_image(api: &aws_sdk_ecr::Client, n: usize, tag: Option<String>) -> String {
    let put = api
        .put_image()
        .repository_name("prod/app")
        .image_manifest(ecr_manifest(n))
        .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
        .set_image_tag(tag)
        .send()
        .await
        .expect("put the image");
    put.image()
        .and_then(|i| i.image_id())
        .and_then(|id| id.image_digest())
        .expect("a digest")
        .to_owned()
}

/// Reconcile's inventory of ECR production: `DescribeImages` (moto's ECR API) names every image
/// with its tags, untagged ones included, and answers what would otherwise be a `HEAD` per tag;
/// no registry request is made. A repository that does not exist is empty. (moto answers every
/// image on one page whatever `maxResults` says, so the SDK paginator's next-token loop is not
/// exercised here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_inventory_is_describe_images_with_untagged_digests() {
    let moto = MotoServer::start();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(AwsCredentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let api = aws_sdk_ecr::Client::new(&config);
    api.create_repository()
        .repository_name("prod/app")
        .send()
        .await
        .expect("create the repository");
    // 120 images: 119 tagged `v<n>` (the first also `latest`), one untagged.
    const IMAGES: usize = 120;
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for chunk in (0..IMAGES).collect::<Vec<_>>().chunks(50) {
        let mut puts = tokio::task::JoinSet::new();
        for &n in chunk {
            let tag = (n + 1 < IMAGES).then(|| format!("v{n}"));
            let api = api.clone();
            puts.spawn(async move { (put_ecr_image(&api, n, tag.clone()).await, tag) });
        }
        for (digest, tag) in puts.join_all().await {
            expected.entry(digest).or_default().extend(tag);
        }
    }
    let first = put_ecr_image(&api, 0, Some("latest".to_owned())).await;
    expected
        .entry(first.clone())
        .or_default()
        .insert("latest".to_owned());

    let host = "ecr.test:443";
    let sources = CredentialSources {
        ecr: Some(EcrCredentials::with_config(config, vec![host.to_owned()])),
        ..CredentialSources::default()
    };
    let client = Client::new(ClientConfig::default(), sources).expect("client");
    let repository = promoter_tests::repository(&format!("{host}/prod/app"));
    let listing = client
        .ecr_inventory(&repository)
        .await
        .expect("DescribeImages")
        .expect("an ECR host");
    assert!(listing.complete);
    let listed: BTreeMap<String, BTreeSet<String>> = listing
        .manifests
        .iter()
        .map(|(digest, m)| {
            (
                digest.to_string(),
                m.tags.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(listed.len(), IMAGES, "every image listed");
    assert_eq!(listed, expected);
    assert!(
        listed.values().any(BTreeSet::is_empty),
        "the untagged image is listed"
    );

    let wanted: promoter::drift::Held = BTreeMap::from([(
        first.parse().expect("digest"),
        BTreeSet::from(["latest".parse().expect("tag")]),
    )]);
    let (held, _) = promoter::drift::observe(&client, &repository, &wanted)
        .await
        .expect("observe");
    assert_eq!(held.len(), IMAGES);
    assert_eq!(
        client
            .counts
            .total
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no registry request: the inventory answered everything"
    );

    let missing = promoter_tests::repository(&format!("{host}/prod/none"));
    let empty = client
        .ecr_inventory(&missing)
        .await
        .expect("DescribeImages")
        .expect("an ECR host");
    assert!(empty.complete && empty.manifests.is_empty());
}
