//! The audit end to end, on real servers: a production registry (CNCF distribution) sends its
//! push notifications to `promoter audit serve`, which judges them against the desired state
//! `promoter promote` recorded, files each in state (`audit/events/<event-id>-<content>.json`) and sends
//! an alert for what nobody approved to a signed webhook (a recording receiver of the harness).
//!
//! Shown here: a signed promotion (images, their tags and cosign signatures) raises no alert
//! and every record is approved or expected; an image copied into production behind the
//! promoter's back (`skopeo copy`) raises exactly one alert, signed with the webhook secret
//! (checked with an HMAC computed here), and its record says unapproved; a notification with a
//! wrong token (or none) is refused with 401 and leaves no record.
//!
//! A two-platform index is promoted without an alert too: its children are pushed (and
//! notified) before the index, and the auditor finds the approved index in staging then.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use promoter_tests::harness::http::RawClient;
use promoter_tests::harness::image::{
    IndexFormat, ManifestFormat, Seeder, multi_platform, sha256_digest, single,
};
use promoter_tests::harness::receiver::Receiver;
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::server::http_status;
use promoter_tests::harness::skopeo;

const TOKEN: &str = "audit-token-5f1c";
const SECRET: &str = "webhook-secret-9b2e";
/// How long the registry, the auditor and the receiver get to do something asynchronous.
const PATIENCE: Duration = Duration::from_secs(20);
/// Poll interval while waiting.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256 (RFC 2104) over the harness's SHA-256, independent of the promoter's code.

fn sha256(bytes: &[u8]) -> Vec<u8> {
    let hex = sha256_digest(bytes);
    let hex = hex.strip_prefix("sha256:").expect("a sha256 digest");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut padded = if key.len() > BLOCK {
        sha256(key)
    } else {
        key.to_vec()
    };
    padded.resize(BLOCK, 0);
    let mut inner: Vec<u8> = padded.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = padded.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_hmac_here_matches_githubs_example() {
    // GitHub's "Validating webhook deliveries" example.
    assert_eq!(
        hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!"),
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

// ---------------------------------------------------------------------------------------------
// `promoter audit serve`, a child process killed on drop.

struct AuditServer {
    child: Child,
    log_path: PathBuf,
}

impl AuditServer {
    /// Starts the server on `port` and waits until it answers HTTP.
    fn start(port: u16, state: &Path, webhook: &str, dir: &Path) -> Self {
        let log_path = dir.join("audit-serve.log");
        let log = std::fs::File::create(&log_path).expect("create the audit server's log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_promoter"));
        command
            .args(["audit", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PROMOTER_") {
                command.env_remove(key);
            }
        }
        command
            .env("PROMOTER_STATE", state)
            .env("PROMOTER_AUDIT_TOKEN", TOKEN)
            .env("PROMOTER_WEBHOOK_URL", webhook)
            .env("PROMOTER_WEBHOOK_SECRET", SECRET)
            .env("DOCKER_CONFIG", dir.join("docker"))
            .env("RUST_LOG", "info");
        let mut server = AuditServer {
            child: command.spawn().expect("spawn promoter audit serve"),
            log_path,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = server.child.try_wait().expect("wait for the audit server") {
                panic!(
                    "promoter audit serve exited with {status}:\n{}",
                    server.log()
                );
            }
            // Unauthenticated: 401, but it answers.
            if http_status(port, "/").is_some() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "promoter audit serve did not answer within {PATIENCE:?}:\n{}",
                server.log()
            );
            std::thread::sleep(POLL);
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for AuditServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn promoter(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promoter"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PROMOTER_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .output()
        .expect("run the promoter binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every audit record in the state folder, by key (`audit/events/<id>-<content>.json`), sorted.
fn audit_records(state: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(state.join("audit")) else {
        return out;
    };
    for day in days.flatten() {
        for file in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue; // a write in progress
            }
            let bytes = std::fs::read(file.path()).expect("read an audit record");
            let record = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "audit record {name} is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            out.push((
                format!("audit/{}/{name}", day.file_name().to_string_lossy()),
                record,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// ---------------------------------------------------------------------------------------------
// The stack: staging, production notifying the auditor, the auditor, the webhook receiver.

/// `(repository, digest, tag)` of an audit record (`-` for a missing field).
type Pushed = (String, String, String);

struct Stack {
    staging: TestRegistry,
    production: TestRegistry,
    audit: AuditServer,
    audit_port: u16,
    receiver: Receiver,
    state: PathBuf,
    // Last: removed once the servers are gone.
    dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("docker")).expect("docker config dir");
        std::fs::write(dir.path().join("docker/config.json"), "{\"auths\":{}}")
            .expect("empty docker config");
        let state = dir.path().join("state");
        let receiver = Receiver::answering(200, "");
        // The audit endpoint's port first, then production pointing at it, then the endpoint.
        let audit_port = {
            let probe =
                TcpListener::bind("127.0.0.1:0").expect("pick a port for the audit endpoint");
            probe.local_addr().expect("address").port()
        };
        let staging = TestRegistry::start();
        let production = TestRegistry::builder()
            .extra_config(&format!(
                "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: audit\n      \
                 url: http://127.0.0.1:{audit_port}/\n      headers:\n        Authorization: [Bearer {TOKEN}]\n      \
                 timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
            ))
            .start();
        let audit = AuditServer::start(audit_port, &state, &receiver.url("/hook"), dir.path());
        let keys = promoter(dir.path(), &["keys", "generate", "cosign"]);
        assert_eq!(keys.status.code(), Some(0), "{}", stderr(&keys));
        Stack {
            staging,
            production,
            audit,
            audit_port,
            receiver,
            state,
            dir,
        }
    }

    /// `HOST/prod/NAME` in production.
    fn prod(&self, name: &str) -> String {
        format!("{}/prod/{name}", self.production.host())
    }

    /// Promotes `images` (the manifest's `images:` section) from `staging/` to `prod/`, signed;
    /// returns how long it took.
    fn promote(&self, images: &str) -> Duration {
        std::fs::write(
            self.dir.path().join("m.yaml"),
            format!(
                "registries:\n- name: {}/staging\n  src: true\n- name: {}/prod\nimages:\n{images}",
                self.staging.host(),
                self.production.host(),
            ),
        )
        .expect("write the manifest");
        let started = Instant::now();
        let state = self.state.to_str().expect("a UTF-8 path");
        let promoted = promoter(
            self.dir.path(),
            &[
                "promote",
                "m.yaml",
                "--state",
                state,
                "--key",
                "cosign.key",
                "--output",
                "json",
            ],
        );
        assert_eq!(
            promoted.status.code(),
            Some(0),
            "promote failed: {}\n{}",
            String::from_utf8_lossy(&promoted.stdout),
            stderr(&promoted)
        );
        started.elapsed()
    }

    /// Everything a failed wait or assertion shows.
    fn diagnose(&self) -> String {
        let records: Vec<String> = audit_records(&self.state)
            .iter()
            .map(|(key, r)| format!("  {key}: {r}"))
            .collect();
        let requests: Vec<String> = self
            .receiver
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "  {} {}: {}",
                    r.method,
                    r.path,
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect();
        format!(
            "audit records:\n{}\nwebhook requests:\n{}\n--- production registry log ---\n{}\n\
             --- promoter audit serve ---\n{}",
            records.join("\n"),
            requests.join("\n"),
            self.production.log(),
            self.audit.log()
        )
    }

    /// Polls `done` every [`POLL`] for up to [`PATIENCE`]; panics naming `what`, with the
    /// diagnostics. Returns how long it took.
    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < PATIENCE,
                "gave up after {PATIENCE:?} waiting for {what}\n{}",
                self.diagnose()
            );
            std::thread::sleep(POLL);
        }
        start.elapsed()
    }

    /// Waits until the audit records name every push of `expected`, lets a moment pass for
    /// anything late, and checks there is nothing else; the records and the wait.
    fn audited(&self, expected: &BTreeSet<Pushed>) -> (Vec<(String, serde_json::Value)>, Duration) {
        let seen = |records: &[(String, serde_json::Value)]| -> BTreeSet<Pushed> {
            records.iter().map(|(_, r)| what(r)).collect()
        };
        let waited = self.wait_for("the promotion's pushes to be audited", || {
            expected.is_subset(&seen(&audit_records(&self.state)))
        });
        std::thread::sleep(SETTLE);
        let records = audit_records(&self.state);
        assert_eq!(
            records.len(),
            expected.len(),
            "one record per manifest push, no more\n{}",
            self.diagnose()
        );
        assert_eq!(&seen(&records), expected, "{}", self.diagnose());
        (records, waited)
    }

    /// Checks every record of a promotion: filed from distribution, judged against the
    /// revision the run recorded, and approved (tags) or expected (signatures, untagged
    /// children); and that nobody was alerted.
    fn check_promotion(&self, records: &[(String, serde_json::Value)]) {
        let revision = std::fs::read_to_string(self.state.join("desired/current"))
            .expect("promote recorded the desired state");
        for (key, record) in records {
            assert_eq!(record["schema"], "promoter.audit/v1", "{key}");
            assert_eq!(record["source"], "distribution", "{key}");
            assert_eq!(record["action"], "push", "{key}");
            assert_eq!(record["revision"], revision.trim(), "{key}");
            let (_, _, tag) = what(record);
            let want = if tag.ends_with(".sig") || tag.starts_with("sha256-") || tag == "-" {
                "expected"
            } else {
                "approved"
            };
            assert_eq!(
                record["verdict"]["kind"].as_str().unwrap_or_default(),
                want,
                "{key}: {record}\n{}",
                self.diagnose()
            );
        }
        assert!(
            self.receiver.requests().is_empty(),
            "a promotion alerts nobody\n{}",
            self.diagnose()
        );
    }
}

/// `(repository, digest, tag)` of a record.
fn what(record: &serde_json::Value) -> Pushed {
    let text = |field: &str| record[field].as_str().unwrap_or("-").to_owned();
    (text("repository"), text("digest"), text("tag"))
}

/// The cosign signature tag of `digest`.
fn sig(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The pushes signing in bundle format made for `digest` in `name` (`repository` in records):
/// the fallback index under its tag, and each referrer it lists, untagged.
fn bundle_pushes(
    production: &TestRegistry,
    name: &str,
    repository: &str,
    digest: &str,
) -> Vec<Pushed> {
    let tag = digest.replace(':', "-");
    let bytes = skopeo::inspect_raw(production, name, &tag, None);
    let index: serde_json::Value = serde_json::from_slice(&bytes).expect("a referrers index");
    let referrers = index["manifests"].as_array().expect("manifests");
    assert_eq!(referrers.len(), 3, "signature, promotion record, summary");
    let mut pushes = vec![(repository.to_owned(), skopeo::digest_of(&bytes), tag)];
    pushes.extend(referrers.iter().map(|r| {
        (
            repository.to_owned(),
            r["digest"].as_str().unwrap_or_default().to_owned(),
            "-".to_owned(),
        )
    }));
    pushes
}

/// What a signature push looks like in a record: its digest is the signature image's, not
/// known beforehand, so it is matched by repository and tag.
fn signature_records(records: &[(String, serde_json::Value)]) -> BTreeSet<(String, String)> {
    records
        .iter()
        .map(|(_, r)| what(r))
        .filter(|(_, _, tag)| tag.ends_with(".sig"))
        .map(|(repository, _, tag)| (repository, tag))
        .collect()
}

/// Time given to late deliveries before checking that nothing else came.
const SETTLE: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------

#[test]
fn a_promotion_is_approved_and_a_push_behind_its_back_is_alerted_once() {
    let started = Instant::now();
    let stack = Stack::start();

    // 2. Staging: two images promoted (one under two tags), and one no manifest names.
    let seeder = Seeder::new(&stack.staging);
    let tool = seeder.push_image(
        "staging/tool",
        &single(ManifestFormat::Oci, "audit-tool"),
        Some("1.0"),
    );
    let app = seeder.push_image(
        "staging/app",
        &single(ManifestFormat::Docker, "audit-app"),
        Some("v1"),
    );
    let other = seeder.push_image(
        "staging/other",
        &single(ManifestFormat::Oci, "audit-other"),
        Some("x"),
    );
    let promote_time = stack.promote(&format!(
        "- name: app\n  dmap:\n    \"{}\": [\"v1\", \"latest\"]\n\
         - name: tool\n  dmap:\n    \"{}\": [\"1.0\"]\n",
        app.digest, tool.digest
    ));

    // Each tag write is a manifest push, and so is each signature.
    let (prod_app, prod_tool) = (stack.prod("app"), stack.prod("tool"));
    let mut expected: BTreeSet<Pushed> = BTreeSet::new();
    for tag in ["v1", "latest"] {
        expected.insert((prod_app.clone(), app.digest.clone(), tag.to_owned()));
    }
    expected.insert((prod_tool.clone(), tool.digest.clone(), "1.0".to_owned()));
    let signatures = BTreeSet::from([
        (prod_app.clone(), sig(&app.digest)),
        (prod_tool.clone(), sig(&tool.digest)),
    ]);
    for (repository, tag) in &signatures {
        let name = format!("prod/{}", repository.rsplit('/').next().unwrap_or_default());
        let bytes = skopeo::inspect_raw(&stack.production, &name, tag, None);
        expected.insert((repository.clone(), skopeo::digest_of(&bytes), tag.clone()));
    }
    expected.extend(bundle_pushes(
        &stack.production,
        "prod/app",
        &prod_app,
        &app.digest,
    ));
    expected.extend(bundle_pushes(
        &stack.production,
        "prod/tool",
        &prod_tool,
        &tool.digest,
    ));
    let (records, audited_in) = stack.audited(&expected);
    assert_eq!(signature_records(&records), signatures);
    stack.check_promotion(&records);

    // 3. Behind the promoter's back: staging's other image copied to production as app:rogue.
    let copied = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-no-creds",
            "--dest-no-creds",
            &format!(
                "docker://{}/staging/other@{}",
                stack.staging.host(),
                other.digest
            ),
            &format!("docker://{prod_app}:rogue"),
        ])
        .output()
        .expect("run skopeo copy");
    assert!(copied.status.success(), "skopeo copy: {}", stderr(&copied));
    let alerted_in = stack.wait_for("an alert at the webhook", || {
        !stack.receiver.requests().is_empty()
    });
    std::thread::sleep(SETTLE);
    let alerts = stack.receiver.requests();
    assert_eq!(alerts.len(), 1, "exactly one alert\n{}", stack.diagnose());
    let alert = &alerts[0];
    assert_eq!(alert.method, "POST");
    assert_eq!(alert.path, "/hook");
    assert_eq!(alert.header("x-promoter-event"), Some("alert"));
    let signature = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &alert.body));
    assert_eq!(
        alert.header("x-promoter-signature-256"),
        Some(signature.as_str()),
        "the alert is signed with the webhook secret"
    );
    let body = alert.json();
    assert_eq!(body["kind"], "alert", "{body}");
    assert!(
        body["title"]
            .as_str()
            .unwrap_or_default()
            .contains(&prod_app),
        "{body}"
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("unapproved"),
        "{body}"
    );
    assert_eq!(body["details"]["repository"], prod_app.as_str(), "{body}");
    assert_eq!(body["details"]["tag"], "rogue", "{body}");
    assert_eq!(body["details"]["digest"], other.digest.as_str(), "{body}");
    assert_eq!(body["details"]["verdict"]["kind"], "unapproved", "{body}");
    assert_eq!(alert.header("x-promoter-delivery"), body["id"].as_str());

    let after_rogue = audit_records(&stack.state);
    assert_eq!(after_rogue.len(), records.len() + 1, "{}", stack.diagnose());
    let (_, rogue) = after_rogue
        .iter()
        .find(|(_, r)| r["tag"] == "rogue")
        .expect("a record of the rogue push");
    assert_eq!(rogue["repository"], prod_app.as_str());
    assert_eq!(rogue["digest"], other.digest.as_str());
    assert_eq!(rogue["verdict"]["kind"], "unapproved", "{rogue}");
    assert_eq!(
        rogue["verdict"]["reason"]["kind"], "unknown_digest",
        "{rogue}"
    );
    assert_eq!(
        body["details"]["id"], rogue["id"],
        "the alert names its record"
    );
    let marker = stack.state.join(format!(
        "notifications/{}/webhook",
        body["id"].as_str().unwrap_or("-")
    ));
    assert!(marker.is_file(), "the delivery is marked in state");

    // 4. A notification with the wrong token (or none) is refused and leaves nothing behind.
    let forged = serde_json::json!({"events": [{
        "id": "forged-event-1",
        "timestamp": "2024-01-01T00:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": other.digest,
            "repository": "prod/app",
            "tag": "forged",
        },
        "request": {"host": stack.production.host(), "method": "PUT"},
    }]})
    .to_string();
    let client = RawClient::new(&format!("127.0.0.1:{}", stack.audit_port), None);
    for authorization in [Some("Bearer wrong"), None] {
        let mut headers = vec![(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )];
        headers.extend(authorization.map(|a| ("Authorization", a)));
        let refused = client.send("POST", "/", "prod/app", &headers, Some(forged.as_bytes()));
        assert_eq!(
            refused.status,
            401,
            "{authorization:?}: {}",
            String::from_utf8_lossy(&refused.body)
        );
    }
    let after_forgery = audit_records(&stack.state);
    assert_eq!(
        after_forgery.len(),
        after_rogue.len(),
        "{}",
        stack.diagnose()
    );
    assert!(after_forgery.iter().all(|(key, _)| !key.contains("forged")));
    assert_eq!(
        stack.receiver.requests().len(),
        1,
        "no alert for a refused notification"
    );

    eprintln!(
        "timings: promote {promote_time:?}; its pushes audited {audited_in:?} after it returned; \
         the rogue push alerted {alerted_in:?} after skopeo returned; whole test {:?}",
        started.elapsed()
    );
}

/// The promoter pushes an index's children by digest before the index itself (a registry
/// refuses an index whose children are missing), and distribution notifies each push at once:
/// the auditor must recognise the children while production lacks the index (it reads the
/// index in staging, which the desired state names as the source).
#[test]
fn promoting_a_two_platform_index_alerts_nobody() {
    let stack = Stack::start();
    let index = Seeder::new(&stack.staging).push_index(
        "staging/app",
        &multi_platform(IndexFormat::Oci, "audit-index"),
        Some("v1"),
    );
    stack.promote(&format!(
        "- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n",
        index.digest
    ));
    let app = stack.prod("app");
    let bytes = skopeo::inspect_raw(&stack.production, "prod/app", &sig(&index.digest), None);
    let mut expected = BTreeSet::from([
        (app.clone(), index.digest.clone(), "v1".to_owned()),
        (app.clone(), skopeo::digest_of(&bytes), sig(&index.digest)),
    ]);
    for child in &index.children {
        expected.insert((app.clone(), child.digest.clone(), "-".to_owned()));
    }
    expected.extend(bundle_pushes(
        &stack.production,
        "prod/app",
        &app,
        &index.digest,
    ));
    let (records, _) = stack.audited(&expected);
    stack.check_promotion(&records);
    for child in &index.children {
        let (_, record) = records
            .iter()
            .find(|(_, r)| r["digest"] == child.digest.as_str())
            .expect("a record of each child");
        let why = record["verdict"]["why"].as_str().unwrap_or_default();
        assert!(
            why.contains("child of approved index") && why.contains(&index.digest),
            "{record}"
        );
    }
}

/// Sends `head` on a new connection to the audit endpoint and reads until the server closes it
/// (or a minute passes, which fails the test): what the server made of a client that stops.
fn abandoned_request(port: u16, head: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    stream.write_all(head).expect("send the start of a request");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server held the connection: {e}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn clients_that_stop_sending_are_cut_off() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let state = dir.path().join("state");
    let receiver = Receiver::answering(200, "");
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("pick a port");
        probe.local_addr().expect("address").port()
    };
    let _audit = AuditServer::start(port, &state, &receiver.url("/hook"), dir.path());
    let (headers, body) = std::thread::scope(|s| {
        let headers = s.spawn(|| abandoned_request(port, b"POST / HTTP/1.1\r\nHost: audit\r\n"));
        let body = s.spawn(|| {
            abandoned_request(
                port,
                format!(
                    "POST / HTTP/1.1\r\nHost: audit\r\nAuthorization: Bearer {TOKEN}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"events\""
                )
                .as_bytes(),
            )
        });
        (
            headers.join().expect("the headers client"),
            body.join().expect("the body client"),
        )
    });
    assert!(
        headers.is_empty() || headers.starts_with("HTTP/1.1 408"),
        "{headers}"
    );
    assert!(body.starts_with("HTTP/1.1 408"), "{body}");
    assert!(
        !state.join("audit").exists(),
        "nothing was judged from half a request"
    );
}
