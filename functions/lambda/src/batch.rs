//! SQS batches of the queue-fed functions (copy-digest, sign, notify), with partial batch
//! failures.
//!
//! The batch's messages are handled a few at a time with one set of transfer engines. The
//! answer, `{"batchItemFailures": [...]}`, lists only the messages that failed for a reason
//! that may pass ([`StepError::is_retryable`]): SQS delivers those again. A permanent failure
//! is logged and consumed (what it means is already recorded in state); it would fail the same
//! way on every delivery. The function's event source mapping must report batch item failures
//! (`FunctionResponseTypes: ReportBatchItemFailures`).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use promoter::error_chain::error_chain;
use promoter::steps::copy::Engines;
use promoter::steps::dispatch::{Function, Output, count_outputs, message};
use promoter::steps::{Deps, StepError};

/// Messages of one SQS batch handled at the same time.
pub const BATCH_CONCURRENCY: usize = 10;

/// Handles an SQS batch for `function`, reporting only retryable failures.
pub async fn sqs_batch(function: Function, batch: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let engines = &Engines::new(deps);
    let results: Vec<(String, Result<Output, StepError>)> =
        futures_util::stream::iter(batch.records)
            .map(|record| async move {
                let id = record.message_id.unwrap_or_default();
                let body = record.body.unwrap_or_default();
                (id, message(function, &body, deps, engines).await)
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
    let counted = count_outputs(deps, results.iter().filter_map(|(_, r)| r.as_ref().ok())).await;
    let mut response = SqsBatchResponse::default();
    if let Err(error) = &counted {
        // The units are marked final but not counted: their messages come back, and their
        // redelivery counts the markers.
        tracing::warn!(error = %error_chain(error), "counting the batch's final units failed");
        for (id, result) in &results {
            if result.as_ref().is_ok_and(|o| o.finalized().is_some()) {
                response.add_failure(id.as_str());
            }
        }
    }
    for (id, result) in results {
        match result {
            Ok(_) => {}
            Err(error) if error.is_retryable() => {
                tracing::warn!(message = %id, error = %error_chain(&error), "message failed; it will come back");
                response.add_failure(id);
            }
            Err(error) => {
                tracing::error!(message = %id, error = %error_chain(&error), "message failed for good; dropped");
            }
        }
    }
    response
}
