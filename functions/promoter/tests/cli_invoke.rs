//! `promoter invoke` on the sample events shipped in each function's folder: the samples the
//! READMEs point at are real payloads that the handlers accept (or refuse) as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample(function: &str, name: &str) -> PathBuf {
    root()
        .join("functions")
        .join(function)
        .join("events")
        .join(name)
}

/// Runs `promoter invoke FUNCTION --event EVENT` from the repository root with state in
/// `state` and the given variables; no PROMOTER_* variable of the caller leaks in.
fn invoke(function: &str, event: &Path, state: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promoter"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PROMOTER_") {
            command.env_remove(name);
        }
    }
    command
        .args(["invoke", function, "--event"])
        .arg(event)
        .current_dir(root())
        .env("PROMOTER_STATE", state)
        .envs(env.iter().copied())
        .output()
        .expect("run the promoter binary")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The Function URL response's status and parsed body.
fn http(result: &serde_json::Value) -> (u64, serde_json::Value) {
    let status = result["statusCode"].as_u64().expect("statusCode");
    let body = result["body"].as_str().expect("body");
    (status, serde_json::from_str(body).expect("JSON body"))
}

fn files_under(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

#[test]
fn the_manual_sample_records_a_run_and_queues_every_unit() {
    let state = tempfile::tempdir().expect("temp dir");
    let out = invoke(
        "validate-manifest",
        &sample("validate-manifest", "manual.json"),
        state.path(),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["result"]["outcome"], "accepted", "{doc}");
    let units = doc["result"]["units"].as_u64().expect("units");
    assert!(units > 0, "{doc}");
    let run = doc["result"]["run"].as_str().expect("run");
    let queued = doc["queued"]["copy"].as_array().expect("copy messages");
    assert_eq!(queued.len() as u64, units);
    assert!(queued.iter().all(|m| m["run"] == run));
    assert!(state.path().join(format!("runs/{run}/run.json")).is_file());
    assert!(state.path().join("desired/current").is_file());

    // The same revision again: the same run, its units sent again (none is final yet).
    let again = json(&invoke(
        "validate-manifest",
        &sample("validate-manifest", "manual.json"),
        state.path(),
        &[],
    ));
    assert_eq!(again["result"]["run"], run);
}

#[test]
fn the_github_sample_is_refused_with_another_secret_and_recorded_nothing() {
    let state = tempfile::tempdir().expect("temp dir");
    let event = sample("validate-manifest", "github-push.json");
    let out = invoke(
        "validate-manifest",
        &event,
        state.path(),
        &[("PROMOTER_GITHUB_WEBHOOK_SECRET", "another-secret")],
    );
    let (status, body) = http(&json(&out)["result"]);
    assert_eq!(status, 401, "{body}");
    assert_eq!(files_under(state.path()), 0, "nothing recorded");

    // With its secret the signature passes and the tarball is fetched: from a closed port here,
    // so the answer is a retryable 503 and the delivery is released for GitHub's redelivery.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let out = invoke(
        "validate-manifest",
        &event,
        state.path(),
        &[
            ("PROMOTER_GITHUB_WEBHOOK_SECRET", "sample-secret"),
            ("PROMOTER_GITHUB_API", &api),
        ],
    );
    let (status, body) = http(&json(&out)["result"]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["retryable"], true);
    assert!(!state.path().join("runs").exists());
    assert!(
        walk(state.path())
            .iter()
            .all(|f| !f.to_string_lossy().contains("deliveries/"))
    );
}

#[test]
fn the_audit_samples_are_judged_recorded_and_alerted() {
    let state = tempfile::tempdir().expect("temp dir");
    let token = [("PROMOTER_AUDIT_TOKEN", "sample-audit-token")];
    for name in ["distribution-function-url.json", "pubsub-function-url.json"] {
        let doc = json(&invoke(
            "audit",
            &sample("audit", name),
            state.path(),
            &token,
        ));
        let (status, body) = http(&doc["result"]);
        assert_eq!(status, 200, "{name}: {body}");
        // No run recorded a desired state: every push is unapproved, and alerted.
        assert_eq!(body["unapproved"], 1, "{name}: {body}");
        assert_eq!(
            doc["queued"]["notify"][0]["notify"], "alert",
            "{name}: {doc}"
        );
    }
    let doc = json(&invoke(
        "audit",
        &sample("audit", "ecr-eventbridge.json"),
        state.path(),
        &token,
    ));
    assert_eq!(doc["result"]["unapproved"], 1, "{doc}");
    assert_eq!(files_under(&state.path().join("audit")), 3);

    // A redelivered notification is recorded once and alerted once.
    let doc = json(&invoke(
        "audit",
        &sample("audit", "distribution-function-url.json"),
        state.path(),
        &token,
    ));
    let (_, body) = http(&doc["result"]);
    assert_eq!(body["duplicates"], 1, "{body}");
    assert!(doc["queued"].get("notify").is_none(), "{doc}");

    // The wrong token: 401, nothing recorded.
    let doc = json(&invoke(
        "audit",
        &sample("audit", "distribution-function-url.json"),
        state.path(),
        &[("PROMOTER_AUDIT_TOKEN", "another-token")],
    ));
    assert_eq!(http(&doc["result"]).0, 401);
    assert_eq!(files_under(&state.path().join("audit")), 3);
}

#[test]
fn a_message_for_an_unknown_run_is_a_permanent_error() {
    let state = tempfile::tempdir().expect("temp dir");
    let out = invoke(
        "copy-digest",
        &sample("copy-digest", "message.json"),
        state.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["retryable"], false, "{doc}");
    assert!(
        doc["error"].as_str().is_some_and(|e| e.contains("RUN_ID")),
        "{doc}"
    );

    // In an SQS batch the same message is consumed, not reported for redelivery.
    let doc = json(&invoke(
        "copy-digest",
        &sample("copy-digest", "sqs-batch.json"),
        state.path(),
        &[],
    ));
    assert_eq!(
        doc["result"]["batchItemFailures"],
        serde_json::json!([]),
        "{doc}"
    );
}
