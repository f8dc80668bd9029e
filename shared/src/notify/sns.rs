//! Amazon SNS: the webhook's JSON as the message, the title as the subject (SNS allows 100
//! characters, no line breaks), and the notice's kind as the message attribute `kind`, for
//! subscription filter policies.

use aws_sdk_sns::config::retry::RetryConfig;
use aws_sdk_sns::types::MessageAttributeValue;

use super::github::shorten;
use super::{Delivery, Notice, NotifyError};

/// The sink's name.
const SINK: &str = "sns";

/// The longest subject SNS takes, in characters.
const SUBJECT_CHARS: usize = 100;

/// An SNS client configured the AWS way (credentials, region, `AWS_ENDPOINT_URL_SNS`), without
/// the SDK's retries.
pub(super) async fn client_from_env() -> aws_sdk_sns::Client {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    without_sdk_retries(&aws_sdk_sns::Client::new(&config))
}

/// `client` with the SDK's own retries off: the notifier retries, with its own policy.
pub(super) fn without_sdk_retries(client: &aws_sdk_sns::Client) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

/// Publishes `notice` to `topic_arn`, once.
pub(super) async fn send(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    notice: &Notice,
) -> Result<Delivery, NotifyError> {
    let message = notice.payload(SINK)?;
    let kind = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(notice.kind.as_str())
        .build()
        .map_err(|source| NotifyError::SnsAttribute {
            name: "kind",
            source,
        })?;
    client
        .publish()
        .topic_arn(topic_arn)
        .set_subject(sns_subject(&notice.title))
        .message(message)
        .message_attributes("kind", kind)
        .send()
        .await
        .map_err(|source| NotifyError::Sns {
            topic_arn: topic_arn.to_owned(),
            source: Box::new(source),
        })?;
    Ok(Delivery::Sent)
}

/// The SNS subject for `title`: line breaks and control characters become spaces, runs of
/// spaces one, at most 100 characters (ending in `…` when shortened); `None` when nothing is
/// left (SNS refuses an empty subject).
pub fn sns_subject(title: &str) -> Option<String> {
    let cleaned = title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!cleaned.is_empty()).then(|| shorten(&cleaned, SUBJECT_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_line_of_at_most_100_characters() {
        assert_eq!(
            sns_subject("Run r1:\n 3 images\tpromoted\r\n").as_deref(),
            Some("Run r1: 3 images promoted")
        );
        let long = sns_subject(&"ß".repeat(150)).expect("a subject");
        assert_eq!(long.chars().count(), 100);
        assert!(long.ends_with('…'));
        assert_eq!(
            sns_subject(&"x".repeat(100)).as_deref(),
            Some("x".repeat(100).as_str())
        );
        assert_eq!(sns_subject(" \n\u{7} "), None);
    }
}
