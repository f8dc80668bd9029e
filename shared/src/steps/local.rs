//! The whole chain in one process: the same step handlers the functions run, fed by the
//! in-process queues (or any [`Queue`]) instead of Lambda's SQS triggers.
//!
//! [`drain`] takes messages from the copy, sign and notify queues until all three are empty,
//! handling several at a time like Lambda's concurrent invocations. A message that fails for a
//! reason that may pass (a unit another worker holds, a registry hiccup) is put back and tried
//! again after a pause, at most [`MAX_RECEIVES`] times, like an SQS queue with a redrive
//! policy; then it is reported as dead-lettered. A permanent failure is reported once.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::error_chain::error_chain;
use crate::queue::{Queue, Received};

use super::copy::Engines;
use super::deps::Deps;
use super::dispatch::{Function, Output, count_outputs, message as handle};
use super::error::StepError;

/// Times a message is received before it is given up (SQS's `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;

/// One handled message.
#[derive(Debug)]
pub struct Handled {
    /// The function that handled it.
    pub function: Function,
    /// The message body.
    pub body: String,
    /// The handler's output, or its last error.
    pub result: Result<Output, StepError>,
    /// Times it was received.
    pub receives: u32,
}

/// What draining the queues did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Every message's final result, in the order handled.
    pub handled: Vec<Handled>,
    /// Failures to count units made final and conclude their runs (the messages themselves
    /// succeeded; a Lambda batch would send them back): a caller reports these.
    pub uncounted: Vec<StepError>,
}

/// Drains the chain's queues with engines of its own; returns every message's final result
/// in the order handled (counting failures are logged).
pub async fn drain(deps: &Deps, parallel: usize, retry_pause: Duration) -> Vec<Handled> {
    let drained = drain_with(deps, &Engines::new(deps), parallel, retry_pause).await;
    for error in &drained.uncounted {
        tracing::warn!(error = %error_chain(error), "counting final units failed");
    }
    drained.handled
}

/// Drains the chain's queues with `engines` (whose progress counters a caller may watch).
///
/// A unit another worker holds is waited for without limit (its lease expires if that worker
/// died); other retryable failures count against [`MAX_RECEIVES`]. A message put back is
/// waited for until it comes back (at once in memory; after its visibility timeout on SQS).
/// `receives` counts deliveries per message body.
pub async fn drain_with(
    deps: &Deps,
    engines: &Engines,
    parallel: usize,
    retry_pause: Duration,
) -> Drained {
    let mut drained = Drained::default();
    let mut receives: HashMap<String, u32> = HashMap::new();
    // Messages left unacknowledged to come back (on SQS, after their visibility timeout).
    let mut awaited: HashMap<String, u32> = HashMap::new();
    loop {
        let mut progressed = false;
        let mut retrying = false;
        for (function, queue) in [
            (Function::CopyDigest, &deps.queues.copy),
            (Function::Sign, &deps.queues.sign),
            (Function::Notify, &deps.queues.notify),
        ] {
            let messages = match queue.receive(parallel.max(1) * 4).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(queue = function.name(), error = %error_chain(&error), "receive failed");
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            progressed = true;
            let results: Vec<(Received, Result<Output, StepError>)> =
                futures_util::stream::iter(messages)
                    .map(|message| async move {
                        let result = handle(function, &message.body, deps, engines).await;
                        (message, result)
                    })
                    .buffered(parallel.max(1))
                    .collect()
                    .await;
            if let Err(error) =
                count_outputs(deps, results.iter().filter_map(|(_, r)| r.as_ref().ok())).await
            {
                drained.uncounted.push(error);
            }
            for (message, result) in results {
                if let Some(left) = awaited.get_mut(&message.body) {
                    *left -= 1;
                    if *left == 0 {
                        awaited.remove(&message.body);
                    }
                }
                let count = receives.entry(message.body.clone()).or_insert(0);
                *count += 1;
                let again = match &result {
                    Err(StepError::Held { .. }) => true,
                    // A copy that timed out already spent a whole retry budget on a registry
                    // that does not answer: unlike an SQS queue, whose redeliveries are spread
                    // over its visibility timeout, redelivering here only makes the command wait
                    // five budgets before saying so.
                    Err(StepError::Copy { source, .. }) if !source.is_worth_retrying_now() => false,
                    Err(e) => e.is_retryable() && *count < MAX_RECEIVES,
                    Ok(_) => false,
                };
                if again {
                    retrying = true;
                    *awaited.entry(message.body).or_insert(0) += 1;
                    continue;
                }
                if let Err(error) = queue.acknowledge(&message).await {
                    tracing::warn!(error = %error_chain(&error), "acknowledge failed");
                }
                drained.handled.push(Handled {
                    function,
                    body: message.body,
                    result,
                    receives: *count,
                });
            }
        }
        if retrying {
            for queue in [&deps.queues.copy, &deps.queues.sign, &deps.queues.notify] {
                if let Queue::Memory(memory) = queue {
                    memory.redeliver();
                }
            }
            tokio::time::sleep(retry_pause).await;
        } else if !progressed && awaited.is_empty() {
            return drained;
        }
    }
}
