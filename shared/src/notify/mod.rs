//! Notification sinks: telling people what a run promoted and what the auditor found.
//!
//! A [`Notice`] (a run summary or an alert) goes to any of four sinks, each configured at most
//! once in a [`Notifier`]:
//!
//! - `slack`: a Slack incoming webhook (`{"text": "*TITLE*\nTEXT"}`);
//! - `webhook`: a generic JSON webhook, signed GitHub's way (`X-Promoter-Signature-256:
//!   sha256=HEX(HMAC_SHA256(secret, body))`) when a secret is set;
//! - `github-status`: a commit status on the manifest repository's merged commit;
//! - `sns`: an Amazon SNS topic (the webhook's JSON as the message).
//!
//! [`Notifier::send`] retries what may succeed later (429, 5xx, connection errors) with
//! full-jitter exponential backoff, honouring `Retry-After`. Secrets (the Slack URL, which is one
//! itself, the webhook secret, the GitHub token) never reach a log or an error message: errors
//! name the sink and the URL's scheme and host only.

mod error;
mod github;
mod http;
mod notice;
mod slack;
mod sns;
mod webhook;

use std::env::VarError;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::error_chain::error_chain;
use crate::http::retry::RetryPolicy;

pub use error::NotifyError;
pub use notice::{CommitState, CommitStatus, Delivery, Notice, NoticeKind, Sink};
pub use sns::sns_subject;
pub use webhook::signature_header;

/// The sinks' names, in the order [`Notifier::sink_names`] lists them.
const SINK_ORDER: [&str; 4] = ["slack", "webhook", "github-status", "sns"];

/// The default GitHub API, when `PROMOTER_GITHUB_API` is unset.
const GITHUB_API: &str = "https://api.github.com";

/// Sends notices to the configured sinks.
pub struct Notifier {
    /// At most one sink of each kind, in [`SINK_ORDER`].
    sinks: Vec<Sink>,
    http: reqwest::Client,
    /// The SNS client: given, or loaded from the environment on first use.
    sns: OnceCell<aws_sdk_sns::Client>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sinks", &self.sinks)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier for `sinks` (a later sink of a kind replaces an earlier one). The SNS client
    /// is used as given but without the SDK's own retries (the notifier retries); when `None`
    /// and an SNS sink is configured, one is built from the environment on first use.
    pub fn new(sinks: Vec<Sink>, sns: Option<aws_sdk_sns::Client>) -> Self {
        let mut slots: [Option<Sink>; 4] = Default::default();
        for sink in sinks {
            let rank = SINK_ORDER
                .iter()
                .position(|name| *name == sink.name())
                .unwrap_or(0);
            if let Some(slot) = slots.get_mut(rank) {
                if slot.is_some() {
                    tracing::warn!(
                        sink = sink.name(),
                        "sink configured twice; the last one wins"
                    );
                }
                *slot = Some(sink);
            }
        }
        let http = crate::http::builder(&crate::http::Timeouts::default())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Notifier {
            sinks: slots.into_iter().flatten().collect(),
            http,
            sns: OnceCell::new_with(sns.map(|client| sns::without_sdk_retries(&client))),
            retry: RetryPolicy {
                attempts: 4,
                base: Duration::from_millis(500),
                max: Duration::from_secs(30),
                budget: Duration::from_secs(90),
            },
        }
    }

    /// Tries each notice up to `attempts` times in all (at least once), waiting a random time up
    /// to `base_delay × 2^(retry-1)` between tries (or the server's `Retry-After`, capped at 30 s).
    pub fn with_retry(mut self, attempts: u32, base_delay: Duration) -> Self {
        self.retry.attempts = attempts.max(1);
        self.retry.base = base_delay;
        self
    }

    /// The sinks configured by the environment; an unset or empty variable leaves its sink off:
    ///
    /// - `PROMOTER_SLACK_WEBHOOK_URL`: Slack;
    /// - `PROMOTER_WEBHOOK_URL`, and `PROMOTER_WEBHOOK_SECRET` to sign: the generic webhook;
    /// - `PROMOTER_GITHUB_TOKEN`, and `PROMOTER_GITHUB_API` (default `https://api.github.com`):
    ///   GitHub commit statuses;
    /// - `PROMOTER_SNS_TOPIC_ARN`: SNS, with a client configured the AWS way (credentials,
    ///   region, `AWS_ENDPOINT_URL_SNS`).
    ///
    /// URLs are checked here, so that a typo fails at start-up rather than at the first notice.
    pub async fn from_env() -> Result<Self, NotifyError> {
        Self::from_vars(std::env::var).await
    }

    /// [`Notifier::from_env`] with variables read through `get`.
    pub(crate) async fn from_vars(
        get: impl Fn(&'static str) -> Result<String, VarError>,
    ) -> Result<Self, NotifyError> {
        let var = |variable: &'static str| match get(variable) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => Ok(Some(value.trim().to_owned())),
            Err(VarError::NotPresent) => Ok(None),
            Err(source) => Err(NotifyError::Environment { variable, source }),
        };
        let mut sinks = Vec::new();
        if let Some(url) = var("PROMOTER_SLACK_WEBHOOK_URL")? {
            sinks.push(Sink::Slack { url });
        }
        if let Some(url) = var("PROMOTER_WEBHOOK_URL")? {
            let secret = var("PROMOTER_WEBHOOK_SECRET")?;
            sinks.push(Sink::Webhook { url, secret });
        }
        if let Some(token) = var("PROMOTER_GITHUB_TOKEN")? {
            let api_base = var("PROMOTER_GITHUB_API")?.unwrap_or_else(|| GITHUB_API.to_owned());
            sinks.push(Sink::GithubStatus { api_base, token });
        }
        let mut sns = None;
        if let Some(topic_arn) = var("PROMOTER_SNS_TOPIC_ARN")? {
            sinks.push(Sink::Sns { topic_arn });
            sns = Some(sns::client_from_env().await);
        }
        for sink in &sinks {
            sink.check()?;
        }
        Ok(Notifier::new(sinks, sns))
    }

    /// The configured sinks' names, among `slack`, `webhook`, `github-status` and `sns`, in
    /// that order.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.sinks.iter().map(Sink::name).collect()
    }

    /// Sends `notice` to the sink named `sink`, retrying retryable failures with backoff.
    /// [`Delivery::Skipped`] when the sink has nothing to say about it (`github-status` and a
    /// notice without a commit).
    pub async fn send(&self, sink: &str, notice: &Notice) -> Result<Delivery, NotifyError> {
        let target = self
            .sinks
            .iter()
            .find(|s| s.name() == sink)
            .ok_or_else(|| NotifyError::UnknownSink {
                name: sink.to_owned(),
                configured: self.sink_names().join(", "),
            })?;
        let mut attempt = 1;
        loop {
            match self.attempt(target, notice).await {
                Ok(delivery) => {
                    tracing::debug!(sink, notice = %notice.id, attempt, ?delivery, "notified");
                    return Ok(delivery);
                }
                Err(error) if error.is_retryable() && attempt < self.retry.attempts => {
                    let delay = self.retry.delay(attempt, error.retry_after());
                    tracing::warn!(
                        sink,
                        notice = %notice.id,
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %error_chain(&error),
                        "notification failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends `notice` to every configured sink, one after the other; the results in
    /// [`Notifier::sink_names`] order.
    pub async fn send_all(
        &self,
        notice: &Notice,
    ) -> Vec<(&'static str, Result<Delivery, NotifyError>)> {
        let mut results = Vec::with_capacity(self.sinks.len());
        for sink in &self.sinks {
            results.push((sink.name(), self.send(sink.name(), notice).await));
        }
        results
    }

    /// One try, without retries.
    async fn attempt(&self, sink: &Sink, notice: &Notice) -> Result<Delivery, NotifyError> {
        match sink {
            Sink::Slack { url } => slack::send(&self.http, url, notice).await,
            Sink::Webhook { url, secret } => {
                webhook::send(&self.http, url, secret.as_deref(), notice).await
            }
            Sink::GithubStatus { api_base, token } => {
                github::send(&self.http, api_base, token, notice).await
            }
            Sink::Sns { topic_arn } => {
                let client = self
                    .sns
                    .get_or_init(|| async { sns::client_from_env().await })
                    .await;
                sns::send(client, topic_arn, notice).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&'static str) -> Result<String, VarError> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
                .ok_or(VarError::NotPresent)
        }
    }

    #[tokio::test]
    async fn the_environment_turns_sinks_on() {
        let none = Notifier::from_vars(vars(&[("PROMOTER_WEBHOOK_URL", " ")]))
            .await
            .expect("no sinks");
        assert!(none.sink_names().is_empty());

        let some = Notifier::from_vars(vars(&[
            ("PROMOTER_GITHUB_TOKEN", "ghp_secret"),
            (
                "PROMOTER_SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/X",
            ),
            ("PROMOTER_WEBHOOK_URL", "https://example.com/hook"),
        ]))
        .await
        .expect("three sinks");
        assert_eq!(some.sink_names(), ["slack", "webhook", "github-status"]);
        let debug = format!("{some:?}");
        assert!(
            !debug.contains("ghp_secret") && !debug.contains("/T/B/X"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn a_bad_url_fails_at_start_up_without_showing_it() {
        let error = Notifier::from_vars(vars(&[("PROMOTER_SLACK_WEBHOOK_URL", "hooks/T/B/X")]))
            .await
            .expect_err("not a URL");
        assert!(matches!(
            error,
            NotifyError::InvalidUrl { sink: "slack", .. }
        ));
        assert!(!error.to_string().contains("T/B/X"), "{error}");
        let error = Notifier::from_vars(vars(&[("PROMOTER_WEBHOOK_URL", "ftp://host/x")]))
            .await
            .expect_err("not http");
        assert!(!error.is_retryable());
    }

    #[test]
    fn one_sink_of_each_kind_in_a_fixed_order() {
        let notifier = Notifier::new(
            vec![
                Sink::Sns {
                    topic_arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
                },
                Sink::Webhook {
                    url: "https://a.example/".into(),
                    secret: None,
                },
                Sink::Slack {
                    url: "https://hooks.slack.com/x".into(),
                },
                Sink::Webhook {
                    url: "https://b.example/".into(),
                    secret: None,
                },
            ],
            None,
        );
        assert_eq!(notifier.sink_names(), ["slack", "webhook", "sns"]);
        assert!(format!("{notifier:?}").contains("https://b.example"));
    }
}
