//! Amazon SQS through the AWS SDK (configured the AWS way, `AWS_ENDPOINT_URL_SQS` included).

use super::{QueueError, Received};
use crate::error_chain::error_chain;

/// SendMessageBatch calls in flight at once ([`SqsQueue::send_all`]): 8 × 10 messages, about
/// 46,000 messages in ~600 rounds of one round trip (a few seconds in-region), where one
/// SendMessage at a time took minutes.
pub const BATCHES_IN_FLIGHT: usize = 8;

/// Tries of a batch's failed entries.
const BATCH_ATTEMPTS: u32 = 4;

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

    /// Sends `bodies` with SendMessageBatch: 10 per call (SQS's limit), `BATCHES_IN_FLIGHT`
    /// calls at a time; entries a call reports failed are sent again (a few times) before the
    /// first failure is returned.
    pub async fn send_all(&self, bodies: &[String]) -> Result<(), QueueError> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        futures_util::stream::iter(bodies.chunks(10))
            .map(|chunk| self.send_batch(chunk))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// One SendMessageBatch of at most 10 bodies, its failed entries sent again.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        let mut pending: Vec<(usize, &String)> = bodies.iter().enumerate().collect();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.as_str())
                        .build()
                        .map_err(|e| self.error("SendMessageBatch", &e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let answer = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error("SendMessageBatch", &e))?;
            let failed: Vec<String> = answer.failed.iter().map(|f| f.id.clone()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            pending.retain(|(i, _)| failed.contains(&i.to_string()));
        }
        Err(QueueError::Service {
            queue: self.url.clone(),
            operation: "SendMessageBatch",
            reason: format!(
                "{} entries still failing after {BATCH_ATTEMPTS} tries",
                pending.len()
            ),
        })
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
