//! What the notifier says ([`Notice`]), where it says it ([`Sink`]) and how it went
//! ([`Delivery`]); the JSON document the webhook and SNS sinks carry.

use serde::{Deserialize, Serialize};

use super::NotifyError;
use super::http::{origin, parse_url};

/// What to tell people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// A run summary or an alert.
    pub kind: NoticeKind,
    /// A stable id: the run id or the audit event id (sent as `X-Promoter-Delivery`), so that
    /// receivers can drop duplicates of an at-least-once delivery.
    pub id: String,
    /// One line.
    pub title: String,
    /// Text for people (Slack).
    pub text: String,
    /// The machine-readable body.
    #[serde(default)]
    pub details: serde_json::Value,
    /// The commit to set a status on (only the `github-status` sink uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitStatus>,
}

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A promotion run finished (or failed).
    RunSummary,
    /// Something needs a person: e.g. a production push no manifest asked for.
    Alert,
}

impl NoticeKind {
    /// `run_summary` or `alert` (as in JSON and the `X-Promoter-Event` header).
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::RunSummary => "run_summary",
            NoticeKind::Alert => "alert",
        }
    }
}

/// A GitHub commit status to set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    /// `owner/name`.
    pub repository: String,
    /// The commit's SHA.
    pub sha: String,
    /// The status.
    pub state: CommitState,
    /// A short description (GitHub keeps 140 characters; longer ones are shortened).
    pub description: String,
    /// A link to details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

/// The state of a commit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitState {
    /// Everything promoted.
    Success,
    /// Something was refused (e.g. an invalid manifest).
    Failure,
    /// Something broke (e.g. a registry kept failing).
    Error,
    /// Still running.
    Pending,
}

/// Where notices go. `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Sink {
    /// A Slack incoming webhook (the URL is itself a secret).
    Slack {
        /// `https://hooks.slack.com/services/...`.
        url: String,
    },
    /// A generic JSON webhook.
    Webhook {
        /// Where to POST.
        url: String,
        /// When set, bodies are signed with HMAC-SHA256 (`X-Promoter-Signature-256`).
        secret: Option<String>,
    },
    /// GitHub commit statuses.
    GithubStatus {
        /// `https://api.github.com`, or a GitHub Enterprise `https://HOST/api/v3`.
        api_base: String,
        /// A token allowed to write commit statuses.
        token: String,
    },
    /// An Amazon SNS topic.
    Sns {
        /// The topic's ARN.
        topic_arn: String,
    },
}

impl Sink {
    /// `slack`, `webhook`, `github-status` or `sns`.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Slack { .. } => "slack",
            Sink::Webhook { .. } => "webhook",
            Sink::GithubStatus { .. } => "github-status",
            Sink::Sns { .. } => "sns",
        }
    }

    /// Checks that the sink's URL is an absolute `http(s)` URL.
    pub fn check(&self) -> Result<(), NotifyError> {
        match self {
            Sink::Slack { url } | Sink::Webhook { url, .. } => parse_url(self.name(), url),
            Sink::GithubStatus { api_base, .. } => parse_url(self.name(), api_base),
            Sink::Sns { .. } => return Ok(()),
        }
        .map(|_| ())
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Slack { url } => f.debug_struct("Slack").field("url", &origin(url)).finish(),
            Sink::Webhook { url, secret } => f
                .debug_struct("Webhook")
                .field("url", &origin(url))
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
            Sink::GithubStatus { api_base, .. } => f
                .debug_struct("GithubStatus")
                .field("api_base", &origin(api_base))
                .field("token", &"<redacted>")
                .finish(),
            Sink::Sns { topic_arn } => f.debug_struct("Sns").field("topic_arn", topic_arn).finish(),
        }
    }
}

/// What became of a notice at one sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The sink accepted it.
    Sent,
    /// The sink had nothing to do with it (e.g. `github-status` and a notice without a commit).
    Skipped,
}

/// The JSON the webhook and SNS sinks carry: `{"kind","id","title","text","details"}`.
#[derive(Serialize)]
struct Payload<'a> {
    kind: NoticeKind,
    id: &'a str,
    title: &'a str,
    text: &'a str,
    details: &'a serde_json::Value,
}

impl Notice {
    /// The notice as the webhook and SNS sinks send it (`commit` left out).
    pub(super) fn payload(&self, sink: &'static str) -> Result<String, NotifyError> {
        serde_json::to_string(&Payload {
            kind: self.kind,
            id: &self.id,
            title: &self.title,
            text: &self.text,
            details: &self.details,
        })
        .map_err(|source| NotifyError::Encode { sink, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_in_snake_case() {
        let notice = Notice {
            kind: NoticeKind::RunSummary,
            id: "run-1".into(),
            title: "t".into(),
            text: "x".into(),
            details: serde_json::json!({"promoted": 2}),
            commit: Some(CommitStatus {
                repository: "o/r".into(),
                sha: "ab".into(),
                state: CommitState::Success,
                description: "d".into(),
                target_url: None,
            }),
        };
        let json = serde_json::to_value(&notice).expect("encode");
        assert_eq!(json["kind"], "run_summary");
        assert_eq!(json["commit"]["state"], "success");
        let back: Notice = serde_json::from_value(json).expect("decode");
        assert_eq!(back, notice);

        let payload: serde_json::Value =
            serde_json::from_str(&notice.payload("webhook").expect("payload")).expect("json");
        assert_eq!(
            payload,
            serde_json::json!({"kind": "run_summary", "id": "run-1", "title": "t", "text": "x",
                "details": {"promoted": 2}})
        );
    }
}
