//! Audit records: what was pushed, when, from which source, and the verdict, kept in state at
//! `audit/<yyyy-mm-dd>/<event-id>.json` (UTC date of receipt).

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

/// `audit/<yyyy-mm-dd>/<event-id>.json`: one audited event and its verdict.
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
        audit_key(self.received_at, &self.id)
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

/// `audit/<yyyy-mm-dd>/<id>.json`, the date in UTC; `id` is sanitised as in [`event_id`].
pub fn audit_key(received_at_unix: u64, id: &str) -> String {
    let (year, month, day) = utc_date(received_at_unix);
    format!(
        "audit/{year:04}-{month:02}-{day:02}/{}.json",
        sanitise(id).unwrap_or_else(|| "_".to_owned())
    )
}

/// The event's id: the source's own id when it sent one (characters outside
/// `[A-Za-z0-9._-]` replaced by `_`, at most 128 of them), else 16 hex digits of a SHA-256
/// over its action, repository, digest and tag (so a redelivered event keeps its id).
pub fn event_id(event: &RegistryEvent) -> String {
    if let Some(id) = event.id.as_deref().and_then(sanitise) {
        return id;
    }
    let action = action_name(event.action);
    let mut hash = Sha256::new();
    for part in [
        action,
        &event.repository,
        event.digest.as_deref().unwrap_or(""),
        event.tag.as_deref().unwrap_or(""),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// The UTC calendar date (year, month, day) of a unix time (Howard Hinnant's
/// `civil_from_days`).
fn utc_date(unix: u64) -> (i64, u32, u32) {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is in 1..=12 and day in 1..=31.
    (year, month as u32, day as u32)
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
    fn keys_are_filed_by_utc_date() {
        assert_eq!(audit_key(0, "a"), "audit/1970-01-01/a.json");
        assert_eq!(audit_key(86_399, "a"), "audit/1970-01-01/a.json");
        assert_eq!(audit_key(86_400, "a"), "audit/1970-01-02/a.json");
        assert_eq!(audit_key(951_782_400, "a"), "audit/2000-02-29/a.json");
        assert_eq!(audit_key(1_709_251_199, "a"), "audit/2024-02-29/a.json");
        assert_eq!(audit_key(1_709_251_200, "a"), "audit/2024-03-01/a.json");
        assert_eq!(audit_key(4_102_444_800, "a"), "audit/2100-01-01/a.json");
        assert_eq!(
            audit_key(1_700_000_000, "../../x"),
            "audit/2023-11-14/.._.._x.json"
        );
        assert_eq!(audit_key(0, ""), "audit/1970-01-01/_.json");
    }

    #[test]
    fn dates_agree_with_httpdate() {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut unix = 0u64;
        while unix < 7_000_000_000 {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
            // e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
            let http = httpdate::fmt_http_date(time);
            let (year, month, day) = utc_date(unix);
            let expected = format!("{day:02} {} {year}", MONTHS[month as usize - 1]);
            assert_eq!(&http[5..16], expected, "{unix}");
            unix += 86_400 * 7 + 3_607;
        }
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
        assert_eq!(record.key(), "audit/2023-11-14/e-1.json");
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
