//! SQS in moto for the tests of this binary: an SDK configuration, queue counts, and the check
//! that queues are empty (shared by the chain, chaos and queue tests).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;

/// An SDK configuration for moto at `endpoint`.
pub async fn sqs_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// `(ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible)` of a queue.
pub async fn approximate_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes");
    let attributes = answer.attributes().expect("attributes");
    let count = |name: &QueueAttributeName| -> u64 {
        attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name:?} of {url}: {attributes:?}"))
    };
    (
        count(&QueueAttributeName::ApproximateNumberOfMessages),
        count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Every queue holds nothing, visible or in flight, and a receive gets nothing; `context`
/// starts each failure message (a seed, say).
pub async fn assert_queues_empty(sqs: &aws_sdk_sqs::Client, urls: &[String], context: &str) {
    for url in urls {
        assert_eq!(approximate_counts(sqs, url).await, (0, 0), "{context}{url}");
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        assert!(
            received.messages().is_empty(),
            "{context}{url}: {received:?}"
        );
    }
}
