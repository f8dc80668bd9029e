//! Audit records: what was pushed, when, from which source, and the verdict, kept in state at
//! `audit/events/<event-id>-<content>.json`: keyed by the event and what it says, never by the
//! time it arrived, so a redelivery finds its record whatever the day (a notification delivered
//! again after UTC midnight alerts no second time), and an id reused for different content is
//! judged on its own.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::judge::{Explanation, Verdict};
use crate::events::{Action, RegistryEvent};

/// The `schema` of an [`AuditRecord`].
pub const AUDIT_SCHEMA: &str = "promoter.audit/v1";

/// [`AuditRecord::source`] of a CNCF distribution webhook.
pub const SOURCE_DISTRIBUTION: &str = "distribution";
/// [`AuditRecord::source`] of a GCR / Artifact Registry Pub/Sub push.
pub const SOURCE_GCR: &str = "gcr";
/// [`AuditRecord::source`] of an ECR EventBridge event.
pub const SOURCE_ECR: &str = "ecr";

/// Longest event id kept in a key; longer ids are cut.
const MAX_ID_LEN: usize = 128;

/// `audit/events/<event-id>-<content>.json`: one audited event and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// [`AUDIT_SCHEMA`].
    pub schema: String,
    /// The event's id ([`event_id`]).
    pub id: String,
    /// Unix seconds when the auditor received it.
    pub received_at: u64,
    /// Where it came from: [`SOURCE_DISTRIBUTION`], [`SOURCE_GCR`] or [`SOURCE_ECR`].
    pub source: String,
    /// `push` or `delete`.
    pub action: String,
    /// `HOST/PATH`.
    pub repository: String,
    /// The manifest digest, when the event named one.
    pub digest: Option<String>,
    /// The tag, when the event named one.
    pub tag: Option<String>,
    /// The revision of the desired index it was judged against.
    pub revision: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl AuditRecord {
    /// The record of `verdict` on `event`, received at `received_at` (unix seconds) from
    /// `source`, judged against the desired index of `revision`.
    pub fn new(
        event: &RegistryEvent,
        source: &str,
        received_at: u64,
        revision: &str,
        verdict: Verdict,
    ) -> Self {
        AuditRecord {
            schema: AUDIT_SCHEMA.to_owned(),
            id: event_id(event),
            received_at,
            source: source.to_owned(),
            action: action_name(event.action).to_owned(),
            repository: event.repository.clone(),
            digest: event.digest.clone(),
            tag: event.tag.clone(),
            revision: revision.to_owned(),
            verdict,
        }
    }

    /// Its key in state ([`audit_key`]).
    pub fn key(&self) -> String {
        let content = content_hash(
            &self.action,
            &self.repository,
            self.digest.as_deref(),
            self.tag.as_deref(),
        );
        audit_key(&self.id, &content)
    }
}

impl fmt::Display for AuditRecord {
    /// One line naming the repository, digest, tag and verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = if self.action == action_name(Action::Delete) {
            Action::Delete
        } else {
            Action::Push
        };
        Explanation {
            action,
            repository: &self.repository,
            digest: self.digest.as_deref(),
            tag: self.tag.as_deref(),
            verdict: &self.verdict,
        }
        .fmt(f)
    }
}

/// `audit/events/<id>-<content>.json`: `id` sanitised as in [`event_id`], `content` the hash of
/// what the event says ([`event_id`]'s fallback; left out when it is the id already).
pub fn audit_key(id: &str, content: &str) -> String {
    let id = sanitise(id).unwrap_or_else(|| "_".to_owned());
    if id == content {
        format!("audit/events/{id}.json")
    } else {
        format!("audit/events/{id}-{content}.json")
    }
}

/// The event's id: the source's own id when it sent one (characters outside
/// `[A-Za-z0-9._-]` replaced by `_`, at most 128 of them), else the hash of what it says
/// (so a redelivered event keeps its id).
pub fn event_id(event: &RegistryEvent) -> String {
    if let Some(id) = event.id.as_deref().and_then(sanitise) {
        return id;
    }
    content_hash(
        action_name(event.action),
        &event.repository,
        event.digest.as_deref(),
        event.tag.as_deref(),
    )
}

/// 16 hex digits of a SHA-256 over an event's action, repository, digest and tag.
fn content_hash(action: &str, repository: &str, digest: Option<&str>, tag: Option<&str>) -> String {
    let mut hash = Sha256::new();
    for part in [action, repository, digest.unwrap_or(""), tag.unwrap_or("")] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

/// `push` or `delete`, as in records.
fn action_name(action: Action) -> &'static str {
    match action {
        Action::Push => "push",
        Action::Delete => "delete",
    }
}

/// `id` with characters outside `[A-Za-z0-9._-]` replaced, cut to [`MAX_ID_LEN`]; `None`
/// when nothing usable is left (empty, or only dots).
fn sanitise(id: &str) -> Option<String> {
    let clean: String = id
        .chars()
        .take(MAX_ID_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!clean.chars().all(|c| c == '.')).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Reason;

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn event(id: Option<&str>) -> RegistryEvent {
        RegistryEvent {
            id: id.map(str::to_owned),
            action: Action::Push,
            repository: "prod.example/app".into(),
            digest: Some(DIGEST.into()),
            tag: Some("v1".into()),
        }
    }

    #[test]
    fn keys_name_the_event_and_its_content_not_the_day() {
        let first = AuditRecord::new(
            &event(Some("e-1")),
            SOURCE_DISTRIBUTION,
            0,
            "r",
            Verdict::Approved,
        );
        let redelivered = AuditRecord::new(
            &event(Some("e-1")),
            SOURCE_DISTRIBUTION,
            86_400 * 365,
            "r",
            Verdict::Approved,
        );
        assert_eq!(first.key(), redelivered.key(), "a redelivery a year later");
        assert!(
            first.key().starts_with("audit/events/e-1-"),
            "{}",
            first.key()
        );
        let mut other = event(Some("e-1"));
        other.tag = Some("v2".into());
        let reused = AuditRecord::new(&other, SOURCE_DISTRIBUTION, 0, "r", Verdict::Approved);
        assert_ne!(reused.key(), first.key(), "an id reused for other content");
        let anonymous =
            AuditRecord::new(&event(None), SOURCE_DISTRIBUTION, 0, "r", Verdict::Approved);
        assert_eq!(
            anonymous.key(),
            format!("audit/events/{}.json", anonymous.id)
        );
        assert_eq!(audit_key("../../x", "c"), "audit/events/.._.._x-c.json");
        assert_eq!(audit_key("", "c"), "audit/events/_-c.json");
    }

    #[test]
    fn event_ids_come_from_the_source_or_a_hash() {
        assert_eq!(event_id(&event(Some("4f5e-c4d5.1_x"))), "4f5e-c4d5.1_x");
        assert_eq!(event_id(&event(Some("a/b c:d"))), "a_b_c_d");
        assert_eq!(event_id(&event(Some(&"x".repeat(300)))).len(), 128);
        let hashed = event_id(&event(None));
        assert_eq!(hashed.len(), 16);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(hashed, event_id(&event(Some(""))), "an empty id is no id");
        assert_eq!(hashed, event_id(&event(Some(".."))), "nor is a dot path");
        assert_eq!(hashed, event_id(&event(None)), "stable");
        let mut untagged = event(None);
        untagged.tag = None;
        assert_ne!(event_id(&untagged), hashed);
        let mut deleted = event(None);
        deleted.action = Action::Delete;
        assert_ne!(event_id(&deleted), hashed);
    }

    #[test]
    fn records_round_trip_and_explain_themselves() {
        let verdict = Verdict::Unapproved {
            reason: Reason::UnknownTag { tag: "v1".into() },
        };
        let record = AuditRecord::new(
            &event(Some("e-1")),
            SOURCE_DISTRIBUTION,
            1_700_000_000,
            "rev",
            verdict,
        );
        assert!(
            record.key().starts_with("audit/events/e-1-"),
            "{}",
            record.key()
        );
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["schema"], AUDIT_SCHEMA);
        assert_eq!(json["action"], "push");
        assert_eq!(json["source"], "distribution");
        assert_eq!(json["verdict"]["reason"]["kind"], "unknown_tag");
        let back: AuditRecord = serde_json::from_value(json).expect("parse");
        assert_eq!(back, record);
        assert_eq!(
            record.to_string(),
            format!(
                "push to prod.example/app of {DIGEST} tagged v1: unapproved: the desired state does not give the digest tag v1"
            )
        );
    }
}
