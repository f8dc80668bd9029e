//! The payloads each function accepts, as types.
//!
//! Each function has an `#[serde(untagged)]` enum of the payloads Lambda (or an on-call
//! engineer) may hand it, built from `aws_lambda_events` structs and the library's messages:
//!
//! | function | accepts |
//! |---|---|
//! | validate-manifest | a Function URL request (GitHub push webhook), an on-call [`ManualRequest`], a scheduled [`ReconcileRequest`] |
//! | copy-digest | an SQS batch, a bare [`CopyMessage`] |
//! | sign | an SQS batch, a bare [`SignMessage`] |
//! | notify | an SQS batch, a bare [`NotifyMessage`] |
//! | audit | a Function URL request (registry webhook, Pub/Sub push), an EventBridge ECR event |
//!
//! [`Invocation::decode`] picks the function's enum, so a payload the function cannot take
//! (an SQS batch for audit, a Function URL request for sign) is refused before any step runs,
//! with a [`RefusedEvent`] naming the function, what it accepts and what the payload was.
//! The bodies of an SQS batch's records are decoded one by one later, so that one bad message
//! does not fail its batch.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_lambda_events::sqs::SqsEvent;
use promoter::steps::Function;
use promoter::steps::messages::{CopyMessage, NotifyMessage, SignMessage};
use promoter::steps::reconcile::ReconcileRequest;
use promoter::steps::validate::ManualRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// validate-manifest's payloads.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ValidateManifestEvent {
    /// A GitHub push webhook through the function's URL.
    FunctionUrl(Box<LambdaFunctionUrlRequest>),
    /// An on-call request: promote the manifests at a revision.
    OnCall(ManualRequest),
    /// The scheduled reconcile (EventBridge Scheduler's input, or on-call).
    Reconcile(ReconcileRequest),
}

/// The payloads of a queue-fed function whose message is `M`.
#[derive(Debug, Deserialize)]
#[serde(untagged, bound(deserialize = "M: DeserializeOwned"))]
pub enum QueueEvent<M> {
    /// A batch from the function's SQS trigger; each record's body is one message.
    Batch(SqsEvent),
    /// One message, invoked directly (on-call, `promoter invoke`).
    Message(M),
}

/// copy-digest's payloads.
pub type CopyDigestEvent = QueueEvent<CopyMessage>;
/// sign's payloads.
pub type SignEvent = QueueEvent<SignMessage>;
/// notify's payloads.
pub type NotifyEvent = QueueEvent<NotifyMessage>;

/// audit's payloads.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuditEvent {
    /// A registry notification through the function's URL (distribution webhook, Pub/Sub push).
    FunctionUrl(Box<LambdaFunctionUrlRequest>),
    /// An Amazon ECR `ECR Image Action` event, as EventBridge invokes the function.
    EventBridge(Box<EventBridgeEvent<Value>>),
}

/// An invocation payload decoded for its function.
#[derive(Debug)]
pub enum Invocation {
    /// For validate-manifest.
    ValidateManifest(ValidateManifestEvent),
    /// For copy-digest.
    CopyDigest(CopyDigestEvent),
    /// For sign.
    Sign(SignEvent),
    /// For notify.
    Notify(NotifyEvent),
    /// For audit.
    Audit(AuditEvent),
}

impl Invocation {
    /// Decodes `payload` as one of `function`'s payloads, or says why it is none of them.
    pub fn decode(function: Function, payload: &Value) -> Result<Self, RefusedEvent> {
        let decoded = match function {
            Function::ValidateManifest => {
                ValidateManifestEvent::deserialize(payload).map(Invocation::ValidateManifest)
            }
            Function::CopyDigest => {
                CopyDigestEvent::deserialize(payload).map(Invocation::CopyDigest)
            }
            Function::Sign => SignEvent::deserialize(payload).map(Invocation::Sign),
            Function::Notify => NotifyEvent::deserialize(payload).map(Invocation::Notify),
            Function::Audit => AuditEvent::deserialize(payload).map(Invocation::Audit),
        };
        decoded.map_err(|_| RefusedEvent::explain(function, payload))
    }

    /// The function it is for.
    pub fn function(&self) -> Function {
        match self {
            Invocation::ValidateManifest(_) => Function::ValidateManifest,
            Invocation::CopyDigest(_) => Function::CopyDigest,
            Invocation::Sign(_) => Function::Sign,
            Invocation::Notify(_) => Function::Notify,
            Invocation::Audit(_) => Function::Audit,
        }
    }
}

/// A kind of payload, as named in a [`RefusedEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// A Lambda Function URL request.
    FunctionUrl,
    /// An SQS batch (`{"Records": […]}`).
    SqsBatch,
    /// An EventBridge event (`{"detail-type": …, "source": …, "detail": …}`).
    EventBridge,
    /// validate-manifest's on-call request.
    OnCall,
    /// validate-manifest's scheduled reconcile.
    Reconcile,
    /// A copy message.
    CopyMessage,
    /// A sign message.
    SignMessage,
    /// A notify message.
    NotifyMessage,
}

impl PayloadKind {
    /// What `function` accepts, in the order its enum tries them.
    pub fn accepted_by(function: Function) -> &'static [PayloadKind] {
        use PayloadKind::*;
        match function {
            Function::ValidateManifest => &[FunctionUrl, OnCall, Reconcile],
            Function::CopyDigest => &[SqsBatch, CopyMessage],
            Function::Sign => &[SqsBatch, SignMessage],
            Function::Notify => &[SqsBatch, NotifyMessage],
            Function::Audit => &[FunctionUrl, EventBridge],
        }
    }

    /// Its description, e.g. `an SQS batch`.
    pub fn describe(self) -> &'static str {
        match self {
            PayloadKind::FunctionUrl => "a Function URL request",
            PayloadKind::SqsBatch => "an SQS batch",
            PayloadKind::EventBridge => "an EventBridge event",
            PayloadKind::OnCall => {
                r#"an on-call request ({"revision", "manifests", "repository"?})"#
            }
            PayloadKind::Reconcile => r#"a reconcile request ({"reconcile": {"dry_run"?}})"#,
            PayloadKind::CopyMessage => r#"a copy message ({"run", "unit"})"#,
            PayloadKind::SignMessage => r#"a sign message ({"run", "unit"})"#,
            PayloadKind::NotifyMessage => {
                r#"a notify message ({"notify": "run", "run"} or {"notify": "alert", "key"})"#
            }
        }
    }

    /// The AWS envelope `payload` looks like, by its top-level keys; `None` for anything
    /// else (a bare message or request). Used to explain a refusal, never to route.
    pub fn envelope(payload: &Value) -> Option<PayloadKind> {
        let object = payload.as_object()?;
        if object.contains_key("requestContext") {
            Some(PayloadKind::FunctionUrl)
        } else if object.contains_key("Records") {
            Some(PayloadKind::SqsBatch)
        } else if object.contains_key("detail-type") {
            Some(PayloadKind::EventBridge)
        } else {
            None
        }
    }

    /// Whether it is an AWS envelope (rather than a bare message or request).
    fn is_envelope(self) -> bool {
        matches!(
            self,
            PayloadKind::FunctionUrl | PayloadKind::SqsBatch | PayloadKind::EventBridge
        )
    }

    /// Why `payload` does not decode as this kind (`None` when it does).
    fn mismatch(self, payload: &Value) -> Option<String> {
        fn check<T: DeserializeOwned>(payload: &Value) -> Option<String> {
            T::deserialize(payload).err().map(|e| e.to_string())
        }
        match self {
            PayloadKind::FunctionUrl => check::<LambdaFunctionUrlRequest>(payload),
            PayloadKind::SqsBatch => check::<SqsEvent>(payload),
            PayloadKind::EventBridge => check::<EventBridgeEvent<Value>>(payload),
            PayloadKind::OnCall => check::<ManualRequest>(payload),
            PayloadKind::Reconcile => check::<ReconcileRequest>(payload),
            PayloadKind::CopyMessage => check::<CopyMessage>(payload),
            PayloadKind::SignMessage => check::<SignMessage>(payload),
            PayloadKind::NotifyMessage => check::<NotifyMessage>(payload),
        }
    }
}

/// A payload the function cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{function} accepts {}; {reason}", describe_all(.accepts))]
pub struct RefusedEvent {
    /// The function invoked.
    pub function: Function,
    /// What it accepts.
    pub accepts: &'static [PayloadKind],
    /// What the payload is, or why it is not what the function accepts.
    pub reason: String,
}

impl RefusedEvent {
    /// Explains why `payload` is none of `function`'s payloads.
    pub fn explain(function: Function, payload: &Value) -> Self {
        let accepts = PayloadKind::accepted_by(function);
        let reason = match PayloadKind::envelope(payload) {
            Some(kind) if accepts.contains(&kind) => format!(
                "this is {} but not a valid one: {}",
                kind.describe(),
                kind.mismatch(payload).unwrap_or_default()
            ),
            Some(kind) => format!("this is {}", kind.describe()),
            None => accepts
                .iter()
                .filter(|kind| !kind.is_envelope())
                .filter_map(|kind| {
                    let why = kind.mismatch(payload)?;
                    Some(format!("not {}: {why}", kind.describe()))
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        RefusedEvent {
            function,
            accepts,
            reason,
        }
    }
}

fn describe_all(kinds: &[PayloadKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[cfg(test)]
mod tests;
