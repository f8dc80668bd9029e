//! Queues chaining the steps: a message per unit to copy, per digest to sign, per run to
//! notify. Two implementations behind one small enum seam: SQS for Lambda, and an in-process
//! queue that `promoter promote` uses to run the same chain in one process.
//!
//! Delivery is at-least-once everywhere (a message is received, handled, then acknowledged;
//! an unacknowledged message comes back), so handlers are idempotent by design.

mod memory;
mod sqs;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

/// A message taken from a queue, to acknowledge once handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message body (JSON).
    pub body: String,
    /// What acknowledges it (SQS receipt handle; an index in memory).
    pub receipt: String,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue service refused or could not be reached.
    #[error("queue {queue}: {operation} failed: {reason}")]
    Service {
        /// The queue (URL or name).
        queue: String,
        /// SendMessage, ReceiveMessage or DeleteMessage.
        operation: &'static str,
        /// The error chain.
        reason: String,
    },
}

/// A queue.
pub enum Queue {
    /// In this process.
    Memory(MemoryQueue),
    /// Amazon SQS (or an SQS-compatible endpoint).
    Sqs(Box<SqsQueue>),
}

impl Queue {
    /// Sends one message.
    pub async fn send(&self, body: &str) -> Result<(), QueueError> {
        match self {
            Queue::Memory(q) => {
                q.send(body);
                Ok(())
            }
            Queue::Sqs(q) => q.send(body).await,
        }
    }

    /// Sends every one of `bodies` (SQS: in batches of 10, several at a time).
    pub async fn send_all(&self, bodies: &[String]) -> Result<(), QueueError> {
        match self {
            Queue::Memory(q) => {
                for body in bodies {
                    q.send(body);
                }
                Ok(())
            }
            Queue::Sqs(q) => q.send_all(bodies).await,
        }
    }

    /// Receives up to `max` messages (waiting briefly when there are none).
    pub async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        match self {
            Queue::Memory(q) => Ok(q.receive(max)),
            Queue::Sqs(q) => q.receive(max).await,
        }
    }

    /// Acknowledges a handled message: it will not come back.
    pub async fn acknowledge(&self, message: &Received) -> Result<(), QueueError> {
        match self {
            Queue::Memory(q) => {
                q.acknowledge(message);
                Ok(())
            }
            Queue::Sqs(q) => q.acknowledge(message).await,
        }
    }
}
