//! Amazon SQS through the AWS SDK (configured the AWS way, `AWS_ENDPOINT_URL_SQS` included).

use super::{QueueError, Received};
use crate::error_chain::error_chain;

/// An SQS queue.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`, through a ready SDK configuration.
    pub fn new(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(config),
            url: url.into(),
        }
    }

    fn error(&self, operation: &'static str, error: &dyn std::error::Error) -> QueueError {
        QueueError::Service {
            queue: self.url.clone(),
            operation,
            reason: error_chain(error),
        }
    }

    /// Sends one message.
    pub async fn send(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| self.error("SendMessage", &e))?;
        Ok(())
    }

    /// Receives up to `max` (at most 10, SQS's limit) messages, long-polling one second.
    pub async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", &e))?;
        Ok(answer
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Received {
                    body: m.body?,
                    receipt: m.receipt_handle?,
                })
            })
            .collect())
    }

    /// Deletes a handled message.
    pub async fn acknowledge(&self, message: &Received) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&message.receipt)
            .send()
            .await
            .map_err(|e| self.error("DeleteMessage", &e))?;
        Ok(())
    }
}
