//! Each function decodes its own sample events (the ones its README shows) and refuses the
//! other functions' payloads with a message naming it and what it accepts.

use serde_json::{Value, json};

use super::*;

/// The sample events shipped in each function's folder.
const SAMPLES: &[(&str, &str)] = &[
    (
        "validate-manifest/github-push.json",
        include_str!("../../../validate-manifest/events/github-push.json"),
    ),
    (
        "validate-manifest/manual.json",
        include_str!("../../../validate-manifest/events/manual.json"),
    ),
    (
        "validate-manifest/reconcile.json",
        include_str!("../../../validate-manifest/events/reconcile.json"),
    ),
    (
        "copy-digest/message.json",
        include_str!("../../../copy-digest/events/message.json"),
    ),
    (
        "copy-digest/sqs-batch.json",
        include_str!("../../../copy-digest/events/sqs-batch.json"),
    ),
    (
        "sign/message.json",
        include_str!("../../../sign/events/message.json"),
    ),
    (
        "sign/sqs-batch.json",
        include_str!("../../../sign/events/sqs-batch.json"),
    ),
    (
        "notify/alert.json",
        include_str!("../../../notify/events/alert.json"),
    ),
    (
        "notify/run.json",
        include_str!("../../../notify/events/run.json"),
    ),
    (
        "notify/sqs-batch.json",
        include_str!("../../../notify/events/sqs-batch.json"),
    ),
    (
        "audit/distribution-function-url.json",
        include_str!("../../../audit/events/distribution-function-url.json"),
    ),
    (
        "audit/pubsub-function-url.json",
        include_str!("../../../audit/events/pubsub-function-url.json"),
    ),
    (
        "audit/ecr-eventbridge.json",
        include_str!("../../../audit/events/ecr-eventbridge.json"),
    ),
];

fn sample(name: &str) -> Value {
    let (_, text) = SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no sample {name}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn function(name: &str) -> Function {
    name.parse().expect("a function name")
}

/// How `function` should decode `sample`: the variant's name, or `None` when refused.
fn expected(function: Function, sample: &str) -> Option<&'static str> {
    let file = sample.rsplit('/').next().unwrap_or(sample);
    let own = sample.starts_with(&format!("{}/", function.name()));
    let function_url = matches!(
        file,
        "github-push.json" | "distribution-function-url.json" | "pubsub-function-url.json"
    );
    match (function, file) {
        // Both functions with a URL take any Function URL request: what its body holds is the
        // step's to judge (and answer with an HTTP status).
        (Function::ValidateManifest | Function::Audit, _) if function_url => Some("FunctionUrl"),
        (Function::ValidateManifest, "manual.json") => Some("OnCall"),
        (Function::ValidateManifest, "reconcile.json") => Some("Reconcile"),
        (Function::Audit, "ecr-eventbridge.json") => Some("EventBridge"),
        // Every queue-fed function takes any SQS batch: its records' bodies are decoded one by
        // one when handled.
        (Function::CopyDigest | Function::Sign | Function::Notify, "sqs-batch.json") => {
            Some("Batch")
        }
        // Copy and sign messages have the same shape.
        (Function::CopyDigest | Function::Sign, "message.json") => Some("Message"),
        (Function::Notify, "alert.json" | "run.json") if own => Some("Message"),
        _ => None,
    }
}

fn variant(invocation: &Invocation) -> &'static str {
    match invocation {
        Invocation::ValidateManifest(ValidateManifestEvent::FunctionUrl(_))
        | Invocation::Audit(AuditEvent::FunctionUrl(_)) => "FunctionUrl",
        Invocation::ValidateManifest(ValidateManifestEvent::OnCall(_)) => "OnCall",
        Invocation::ValidateManifest(ValidateManifestEvent::Reconcile(_)) => "Reconcile",
        Invocation::Audit(AuditEvent::EventBridge(_)) => "EventBridge",
        Invocation::CopyDigest(QueueEvent::Batch(_))
        | Invocation::Sign(QueueEvent::Batch(_))
        | Invocation::Notify(QueueEvent::Batch(_)) => "Batch",
        Invocation::CopyDigest(QueueEvent::Message(_))
        | Invocation::Sign(QueueEvent::Message(_))
        | Invocation::Notify(QueueEvent::Message(_)) => "Message",
    }
}

#[test]
fn every_function_takes_its_samples_and_refuses_the_others_by_name() {
    for function in Function::ALL {
        for (name, _) in SAMPLES {
            let decoded = Invocation::decode(function, &sample(name));
            match (expected(function, name), decoded) {
                (Some(want), Ok(invocation)) => {
                    assert_eq!(invocation.function(), function, "{function} on {name}");
                    assert_eq!(variant(&invocation), want, "{function} on {name}");
                }
                (None, Err(refused)) => {
                    let message = refused.to_string();
                    assert_eq!(refused.function, function);
                    assert!(
                        message.starts_with(&format!("{function} accepts ")),
                        "{function} on {name}: {message}"
                    );
                }
                (Some(want), Err(refused)) => {
                    panic!("{function} should take {name} as {want}: {refused}")
                }
                (None, Ok(invocation)) => {
                    panic!("{function} should refuse {name}, got {invocation:?}")
                }
            }
        }
    }
}

#[test]
fn a_refusal_says_what_the_function_takes_and_what_it_got() {
    let refused = |function: Function, payload: Value| {
        Invocation::decode(function, &payload)
            .err()
            .unwrap_or_else(|| panic!("{function} should refuse {payload}"))
            .to_string()
    };
    assert_eq!(
        refused(function("audit"), sample("copy-digest/sqs-batch.json")),
        "audit accepts a Function URL request or an EventBridge event; this is an SQS batch"
    );
    assert_eq!(
        refused(
            function("validate-manifest"),
            sample("audit/ecr-eventbridge.json")
        ),
        "validate-manifest accepts a Function URL request, an on-call request \
         ({\"revision\", \"manifests\", \"repository\"?}) or a reconcile request \
         ({\"reconcile\": {\"dry_run\"?}}); this is an EventBridge event"
    );
    assert_eq!(
        refused(
            function("copy-digest"),
            sample("validate-manifest/github-push.json")
        ),
        "copy-digest accepts an SQS batch or a copy message ({\"run\", \"unit\"}); \
         this is a Function URL request"
    );
    // A bare payload: why it is not the function's message.
    let message = refused(function("copy-digest"), json!({"run": "r"}));
    assert!(
        message.ends_with("not a copy message ({\"run\", \"unit\"}): missing field `unit`"),
        "{message}"
    );
    let message = refused(function("notify"), sample("copy-digest/message.json"));
    assert!(
        message.starts_with("notify accepts an SQS batch or a notify message")
            && message.contains("not a notify message")
            && message.contains("missing field `notify`"),
        "{message}"
    );
    let message = refused(function("validate-manifest"), json!({"revision": "r"}));
    assert!(
        message.contains("not an on-call request") && message.contains("`manifests`"),
        "{message}"
    );
    let message = refused(function("sign"), json!("just a string"));
    assert!(message.contains("not a sign message"), "{message}");
    // An envelope the function takes, but broken.
    let message = refused(
        function("audit"),
        json!({"requestContext": {"http": {"method": "POST"}}, "isBase64Encoded": false}),
    );
    assert!(
        message.contains("this is a Function URL request but not a valid one")
            && message.contains("timeEpoch"),
        "{message}"
    );
    let message = refused(function("sign"), json!({"Records": "none"}));
    assert!(
        message.contains("this is an SQS batch but not a valid one"),
        "{message}"
    );
}
