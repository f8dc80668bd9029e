//! audit: every push to production, from any registry's notifications, judged against the
//! desired state; what nobody approved is recorded and alerted through notify.
//!
//! Inbound: CNCF distribution webhooks and Google Pub/Sub push messages over HTTP (a Function
//! URL, or `promoter audit serve`), authenticated by the shared token `PROMOTER_AUDIT_TOKEN` as
//! `Authorization: Bearer TOKEN` (distribution's `headers` setting) or a `token` query
//! parameter (Pub/Sub push endpoints cannot set headers; Google documents the URL token for
//! that); Amazon ECR `ECR Image Action` events from EventBridge, which AWS invokes directly.
//! Each event is recorded once under `audit/events/<event-id>-<content>.json` (a redelivered
//! notification finds its record and alerts no second time, whatever the day; an id reused for
//! other content is judged).

use serde::Serialize;

use crate::audit::{AuditRecord, Verdict, event_id, judge_with_registry};
use crate::events::{
    Action, RegistryEvent, from_distribution, from_ecr_eventbridge, from_gcr_pubsub,
};
use crate::state::ledger::{DESIRED_CURRENT, desired_key};
use crate::state::records::{self, DesiredIndex, encode, now};

use super::deps::Deps;
use super::error::{StepError, malformed};
use super::http::{HttpRequest, HttpResponse, secrets_equal};
use super::messages::{NotifyMessage, encode as encode_message};

/// What the auditor made of a notification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditOutcome {
    /// Push and delete events judged.
    pub events: usize,
    /// Pushes the desired state names.
    pub approved: usize,
    /// The promoter's own artifacts (signatures, index children, referrers).
    pub expected: usize,
    /// Pushes nobody approved.
    pub unapproved: usize,
    /// Events seen before (redelivered).
    pub duplicates: usize,
    /// Keys of the audit records alerted on.
    pub alerts: Vec<String>,
}

/// Handles a registry notification arriving over HTTP.
pub async fn handle_http(request: &HttpRequest, deps: &Deps) -> HttpResponse {
    HttpResponse::of(http(request, deps).await, |_| 200, "notification refused")
}

/// Checks the token, decodes the notification (distribution or Pub/Sub) and audits it.
pub async fn http(request: &HttpRequest, deps: &Deps) -> Result<AuditOutcome, StepError> {
    let expected = deps
        .settings
        .audit_token
        .as_deref()
        .ok_or_else(|| StepError::Config {
            variable: "PROMOTER_AUDIT_TOKEN",
            reason: "not set: notifications cannot be authenticated, so none is accepted".into(),
        })?;
    // The URL token first: a Pub/Sub push with OIDC auth also carries a bearer (Google's
    // signed token), which is not ours to compare.
    let given: Vec<&str> = [
        request.query.get("token").map(String::as_str),
        request.bearer_token(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.is_empty() {
        return Err(StepError::Unauthorized("no bearer token"));
    }
    if !given.iter().any(|token| secrets_equal(token, expected)) {
        return Err(StepError::Unauthorized("wrong bearer token"));
    }
    let shape: serde_json::Value =
        serde_json::from_slice(&request.body).map_err(|e| malformed("notification", e))?;
    if shape.get("events").is_some() {
        let host = request.header("host").unwrap_or_default();
        let events =
            from_distribution(&request.body, host).map_err(|e| malformed("notification", e))?;
        audit_events("distribution", events, deps).await
    } else if shape.get("message").is_some() {
        let event = from_gcr_pubsub(&request.body).map_err(|e| malformed("notification", e))?;
        audit_events("gcr", vec![event], deps).await
    } else {
        Err(malformed(
            "notification",
            "neither a distribution notification ({\"events\": …}) nor a Pub/Sub push ({\"message\": …})",
        ))
    }
}

/// Audits an EventBridge `ECR Image Action` event.
pub async fn eventbridge(body: &[u8], deps: &Deps) -> Result<AuditOutcome, StepError> {
    let event = from_ecr_eventbridge(body).map_err(|e| malformed("EventBridge event", e))?;
    audit_events("ecr", event.into_iter().collect(), deps).await
}

/// The desired state the latest run recorded (empty before any run).
pub async fn current_desired(deps: &Deps) -> Result<DesiredIndex, StepError> {
    let Some(pointer) = deps.store.get(DESIRED_CURRENT).await? else {
        return Ok(DesiredIndex::default());
    };
    let revision = String::from_utf8_lossy(&pointer.bytes).trim().to_owned();
    Ok(
        records::read::<DesiredIndex>(&deps.store, &desired_key(&revision), "desired index")
            .await?
            .map(|(index, _)| index)
            .unwrap_or_default(),
    )
}

/// Judges `events`, records each, and enqueues an alert per unapproved one.
pub async fn audit_events(
    source: &str,
    events: Vec<RegistryEvent>,
    deps: &Deps,
) -> Result<AuditOutcome, StepError> {
    let mut outcome = AuditOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    let desired = current_desired(deps).await?;
    for event in events {
        outcome.events += 1;
        let verdict = judge_with_registry(&event, &desired, &deps.client).await?;
        let record = AuditRecord {
            schema: "promoter.audit/v1".to_owned(),
            id: event_id(&event),
            received_at: now(),
            source: source.to_owned(),
            action: match event.action {
                Action::Push => "push".to_owned(),
                Action::Delete => "delete".to_owned(),
            },
            repository: event.repository.clone(),
            digest: event.digest.clone(),
            tag: event.tag.clone(),
            revision: desired.revision.clone(),
            verdict: verdict.clone(),
        };
        let key = record.key();
        if deps.store.create(&key, encode(&record)).await?.is_none() {
            outcome.duplicates += 1;
            continue;
        }
        match verdict {
            Verdict::Approved => outcome.approved += 1,
            Verdict::Expected { .. } => outcome.expected += 1,
            Verdict::Unapproved { .. } => {
                outcome.unapproved += 1;
                tracing::warn!(repository = %record.repository, digest = ?record.digest, tag = ?record.tag, verdict = %record.verdict, "unapproved change in production");
                let sent = deps
                    .queues
                    .notify
                    .send(&encode_message(&NotifyMessage::Alert { key: key.clone() }))
                    .await;
                if let Err(error) = sent {
                    // Unrecorded, so that the registry's redelivery alerts.
                    deps.store.delete(&key).await?;
                    return Err(error.into());
                }
                outcome.alerts.push(key);
            }
        }
    }
    Ok(outcome)
}
