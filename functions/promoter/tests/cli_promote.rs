//! `promoter promote` as a user runs it, against real registries (CNCF distribution started by
//! the test harness): JSON output, exit codes, a no-op rerun, and a refused tag move.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use promoter_tests::harness::image::{IndexFormat, ManifestFormat, push_multi, push_single};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::skopeo;

fn promote(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .arg("promote")
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .output()
        .expect("run the promoter binary")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A staging registry with an index and an image, a production registry with htpasswd auth,
/// a manifest promoting both to two repositories, and Docker credentials for production.
fn setup() -> (TestRegistry, TestRegistry, tempfile::TempDir, [String; 2]) {
    let staging = TestRegistry::start();
    let production = TestRegistry::with_htpasswd("promoter", "s3cret");
    let index = push_multi(
        &staging,
        "staging/app",
        IndexFormat::Oci,
        "cli-app",
        Some("v1"),
    );
    let image = push_single(
        &staging,
        "staging/tool",
        ManifestFormat::Docker,
        "cli-tool",
        None,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = format!(
        "registries:\n- name: {s}/staging\n  src: true\n- name: {p}/us\n- name: {p}/eu\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"v1\", \"latest\"]\n- name: tool\n  dmap:\n    \"{}\": [\"1.0\"]\n",
        index.digest,
        image.digest,
        s = staging.host(),
        p = production.host(),
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).expect("write manifest");
    let auth = base64::engine::general_purpose::STANDARD.encode("promoter:s3cret");
    std::fs::create_dir(dir.path().join("docker")).expect("docker config dir");
    let config = format!(
        "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
        production.host()
    );
    std::fs::write(dir.path().join("docker/config.json"), config).expect("write docker config");
    (staging, production, dir, [index.digest, image.digest])
}

#[test]
fn promotes_then_finds_everything_present() {
    let (staging, production, dir, [index, image]) = setup();

    let first = promote(dir.path(), &["m.yaml", "--output", "json"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = json(&first);
    assert_eq!(report["schema"], "promoter.promote/v1");
    assert_eq!(report["summary"]["units"], 2);
    assert_eq!(report["summary"]["copied"], 2);
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(report["summary"]["tags_written"], 6);

    let creds = production.credentials();
    for (repo, reference, digest) in [
        ("us/app", "latest", &index),
        ("eu/app", "v1", &index),
        ("us/tool", "1.0", &image),
        ("eu/tool", image.as_str(), &image),
    ] {
        let bytes = skopeo::inspect_raw(&production, repo, reference, creds);
        assert_eq!(&skopeo::digest_of(&bytes), digest, "{repo}:{reference}");
        let staged = if digest == &index {
            "staging/app"
        } else {
            "staging/tool"
        };
        assert_eq!(
            bytes,
            skopeo::inspect_raw(&staging, staged, digest, None),
            "{repo} bytes"
        );
    }

    assert_eq!(report["summary"]["run"]["status"], "complete");
    let run_id = report["summary"]["run"]["id"]
        .as_str()
        .expect("a run id")
        .to_owned();

    // The same manifests again: the same run, already complete; no registry is contacted.
    let second = promote(dir.path(), &["m.yaml", "--output", "json"]);
    assert_eq!(second.status.code(), Some(0));
    let rerun = json(&second);
    assert_eq!(rerun["summary"]["run"]["id"], run_id.as_str());
    assert_eq!(rerun["summary"]["done_earlier"], 2);
    assert_eq!(rerun["summary"]["requests"], 0);

    // Without state, production is observed: everything is present, nothing written.
    let third = promote(dir.path(), &["m.yaml", "--output", "json", "--no-state"]);
    assert_eq!(third.status.code(), Some(0));
    let observed = json(&third);
    assert_eq!(observed["summary"]["present"], 2);
    assert_eq!(observed["summary"]["blobs_copied"], 0);
    assert_eq!(observed["summary"]["manifests_written"], 0);
    let (cold, warm) = (
        report["summary"]["requests"].as_u64(),
        observed["summary"]["requests"].as_u64(),
    );
    assert!(
        warm.zip(cold).is_some_and(|(w, c)| w * 3 < c),
        "no-op rerun: {warm:?} vs cold {cold:?} requests"
    );

    // The run is listed and shown for on-call.
    let list = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["runs", "list"])
        .current_dir(dir.path())
        .output()
        .expect("runs list");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(&run_id) && text.contains("complete") && text.contains("2 units: 2 done"),
        "{text}"
    );
}

#[test]
fn dry_run_writes_nothing_and_a_tag_move_fails_the_unit() {
    let (staging, production, dir, [_, image]) = setup();
    // Production's `us/app:v1` already names another image: the app unit must not move it.
    let other = push_single(
        &production,
        "us/app",
        ManifestFormat::Oci,
        "squatter",
        Some("v1"),
    );
    let _ = &staging;

    let dry = promote(dir.path(), &["m.yaml", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("Dry run: nothing was written"), "{text}");
    assert!(
        skopeo::try_inspect_raw(&production, "eu/tool", &image, production.credentials()).is_err()
    );

    let out = promote(dir.path(), &["m.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed unit makes the exit code 1"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 copied, 0 already present, 1 failed"),
        "{text}"
    );
    assert!(text.contains("tag move refused"), "{text}");
    assert!(
        text.contains(&other.digest),
        "the message names the digest in production: {text}"
    );
    let still = skopeo::inspect_raw(&production, "us/app", "v1", production.credentials());
    assert_eq!(
        skopeo::digest_of(&still),
        other.digest,
        "the tag was not moved"
    );
    // The other unit went through.
    let tool = skopeo::inspect_raw(&production, "eu/tool", "1.0", production.credentials());
    assert_eq!(skopeo::digest_of(&tool), image);
}

fn promoter_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .output()
        .expect("run the promoter binary")
}

#[test]
fn promote_with_a_key_signs_every_destination_and_verify_checks_it() {
    let (_staging, production, dir, [index, image]) = setup();
    let keys = promoter_in(dir.path(), &["keys", "generate", "release"]);
    assert_eq!(
        keys.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let other = promoter_in(dir.path(), &["keys", "generate", "other"]);
    assert_eq!(other.status.code(), Some(0));

    let identity = format!("{}/us=registry.example.io", production.host());
    let out = promote(
        dir.path(),
        &[
            "m.yaml",
            "--output",
            "json",
            "--key",
            "release.key",
            "--sign-identity",
            &identity,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(
        report["summary"]["signatures_added"], 16,
        "2 digests × 2 destinations × (a legacy signature, a signature bundle, a promotion \
         record, a verification summary)"
    );

    for (repo, digest) in [
        ("us/app", &index),
        ("eu/app", &index),
        ("us/tool", &image),
        ("eu/tool", &image),
    ] {
        let reference = format!("{}/{repo}@{digest}", production.host());
        let ok = promoter_in(dir.path(), &["verify", &reference, "--key", "release.pub"]);
        let text = String::from_utf8_lossy(&ok.stdout);
        assert_eq!(
            ok.status.code(),
            Some(0),
            "{reference}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        // One signature, one canonical name, whichever mirror it is read from.
        let name = if repo.ends_with("app") {
            "registry.example.io/app"
        } else {
            "registry.example.io/tool"
        };
        assert!(text.contains(&format!("signed as {name}")), "{text}");
        assert!(
            text.contains("(sigstore bundle, referrer sha256:"),
            "{text}"
        );
        let attested = promoter_in(
            dir.path(),
            &[
                "verify",
                "--attestations",
                &reference,
                "--key",
                "release.pub",
            ],
        );
        let listed = String::from_utf8_lossy(&attested.stdout);
        assert_eq!(attested.status.code(), Some(0), "{listed}");
        assert!(
            listed.contains(&format!("-> {name}@{digest}")),
            "the promotion record names the canonical name: {listed}"
        );
        assert!(listed.contains("verification summary"), "{listed}");
        let refused = promoter_in(dir.path(), &["verify", &reference, "--key", "other.pub"]);
        assert_eq!(refused.status.code(), Some(1), "another key's check fails");
    }
    // The name signed must match when asked for.
    let reference = format!("{}/us/app@{index}", production.host());
    let named = [
        "verify",
        reference.as_str(),
        "--key",
        "release.pub",
        "--reference",
    ];
    let mut right = named.to_vec();
    right.push("registry.example.io/app");
    assert_eq!(promoter_in(dir.path(), &right).status.code(), Some(0));
    let mut wrong = named.to_vec();
    wrong.push("registry.example.io/elsewhere");
    assert_eq!(promoter_in(dir.path(), &wrong).status.code(), Some(1));

    // The private key reaches neither the logs nor the state.
    let secret = std::fs::read_to_string(dir.path().join("release.key")).expect("private key");
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    let logged = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["promote", "m.yaml", "--key", "release.key", "--no-state"])
        .current_dir(dir.path())
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .env("RUST_LOG", "trace")
        .output()
        .expect("run the promoter");
    let stderr = String::from_utf8_lossy(&logged.stderr);
    assert!(!stderr.contains(&body[..40]), "the private key was logged");
    for entry in walk(&dir.path().join(".promoter")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(&body[..40]),
            "{} holds the private key",
            entry.display()
        );
    }

    // By tag too.
    let tagged = format!("{}/us/app:latest", production.host());
    assert_eq!(
        promoter_in(dir.path(), &["verify", &tagged, "--key", "release.pub"])
            .status
            .code(),
        Some(0)
    );

    // Observing again without state: everything present, signatures already there.
    let again = promote(
        dir.path(),
        &[
            "m.yaml",
            "--output",
            "json",
            "--key",
            "release.key",
            "--no-state",
        ],
    );
    assert_eq!(again.status.code(), Some(0));
    let rerun = json(&again);
    assert_eq!(rerun["summary"]["signatures_added"], 0);
    assert_eq!(rerun["summary"]["present"], 2, "{}", rerun["units"]);
}

#[test]
fn the_unsigned_staging_policy_refuses_and_production_stays_untouched() {
    let (staging, production, dir, [index, image]) = setup();
    assert_eq!(
        promoter_in(dir.path(), &["keys", "generate", "maintainer"])
            .status
            .code(),
        Some(0)
    );

    let refused = promote(
        dir.path(),
        &["m.yaml", "--require-signature", "maintainer.pub"],
    );
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("0 copied") && text.contains("2 failed") && text.contains("unsigned"),
        "{text}"
    );
    for repo in ["us/app", "eu/app", "us/tool", "eu/tool"] {
        let tags =
            skopeo::list_tags(&production, repo, production.credentials()).unwrap_or_default();
        assert!(tags.is_empty(), "{repo} was written: {tags:?}");
    }

    // The maintainer signs both digests in staging: rerunning the same promotion (the same
    // recorded run, whose units failed) goes through.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use promoter::registry::auth::session::CredentialSources;
        use promoter::registry::{Client, ClientConfig};
        use promoter::sign::keys::SigningKey;
        let key = SigningKey::from_pem_file(&dir.path().join("maintainer.key")).expect("key");
        let public = key.verifying_key().expect("public key");
        let client =
            Client::new(ClientConfig::default(), CredentialSources::default()).expect("client");
        for (repo, digest) in [("staging/app", &index), ("staging/tool", &image)] {
            let repository = promoter_tests::repository(&format!("{}/{repo}", staging.host()));
            let digest = promoter_tests::digest(digest);
            let signed =
                promoter::sign::sign(&key, repo, &digest, serde_json::Map::new()).expect("sign");
            promoter::sign::push(&client, &repository, &digest, &signed, &public)
                .await
                .expect("push");
        }
    });
    let accepted = promote(
        dir.path(),
        &[
            "m.yaml",
            "--require-signature",
            "maintainer.pub",
            "--output",
            "json",
        ],
    );
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&accepted.stdout)
    );
    assert_eq!(json(&accepted)["summary"]["copied"], 2);
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A staging registry that accepts requests and never answers a GET: the unit fails after one
/// retry budget and is not delivered again by the command's own chain (before, it was handled
/// five times, as an SQS queue would: 453 s with the defaults, measured by
/// bench/hostile-registry.sh). Requests are counted, not timed.
#[test]
fn a_registry_that_never_answers_is_reported_after_one_retry_budget() {
    use promoter_tests::harness::fake_registry::{Fake, Reply};
    use std::time::Duration;
    let fake = Fake::start(|seen, _| {
        if seen.method == "GET" {
            Reply::status(200).delay(Duration::from_secs(3600))
        } else {
            Reply::status(404)
        }
    });
    let dir = tempfile::tempdir().expect("a temporary folder");
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let manifest = format!(
        "registries:\n- name: {host}/staging\n  src: true\n- name: {host}/prod\nimages:\n- name: app\n  dmap:\n    \"{digest}\": [\"v1\"]\n",
        host = fake.host()
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).expect("write the manifest");
    let output = promote(
        dir.path(),
        &["m.yaml", "--no-state", "--request-timeout", "1"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    let gets = fake.seen().iter().filter(|s| s.method == "GET").count();
    // One delivery: the client's tries within its budget (6 at most) for each of the three reads
    // made at the same time (staging's manifest, tag listing and referrers), not five
    // deliveries' worth.
    assert!((1..=18).contains(&gets), "{gets} GETs");
}
