//! One invocation: a decoded payload handed to its step handler, and the step's answer in the
//! shape Lambda expects for that payload.
//!
//! - a Function URL request gets a Function URL response, whatever the step made of it (see
//!   [`crate::url`]);
//! - an SQS batch gets its partial batch failures (see [`crate::batch`]);
//! - a bare message, an on-call request or an EventBridge event gets the step's outcome, and
//!   its failure is the invocation's error (see [`crate::error`]).

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlResponse;
use aws_lambda_events::sqs::SqsBatchResponse;
use promoter::steps::audit::{self, AuditOutcome};
use promoter::steps::copy::Engines;
use promoter::steps::dispatch::{Function, Output, QueueMessage, count_outputs};
use promoter::steps::error::malformed;
use promoter::steps::reconcile::{self, Reconciled};
use promoter::steps::validate::{self, ValidateOutcome};
use promoter::steps::{Deps, StepError};
use serde::Serialize;
use serde_json::Value;

use crate::batch::sqs_batch;
use crate::error::InvokeError;
use crate::event::{AuditEvent, Invocation, QueueEvent, ValidateManifestEvent};
use crate::url::{from_function_url, to_function_url};

/// What a function answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// To a Function URL request.
    FunctionUrl(LambdaFunctionUrlResponse),
    /// To an SQS batch: the messages to deliver again.
    Batch(SqsBatchResponse),
    /// validate-manifest's, to an on-call request.
    Validated(ValidateOutcome),
    /// validate-manifest's, to a reconcile request.
    Reconciled(Box<Reconciled>),
    /// A queue-fed step's, to one bare message.
    Step(Output),
    /// audit's, to an EventBridge event.
    Audited(AuditOutcome),
}

/// Runs `function` on a raw invocation payload: decodes it as one of the function's payloads
/// (or refuses it), then [`handle`]s it.
pub async fn invoke(
    function: Function,
    payload: &Value,
    deps: &Deps,
) -> Result<Response, InvokeError> {
    let invocation = Invocation::decode(function, payload)?;
    Ok(handle(invocation, deps).await?)
}

/// Runs a decoded invocation's step.
pub async fn handle(invocation: Invocation, deps: &Deps) -> Result<Response, StepError> {
    match invocation {
        Invocation::ValidateManifest(ValidateManifestEvent::FunctionUrl(request)) => {
            let request =
                from_function_url(*request).map_err(|e| malformed("Function URL body", e))?;
            let response = validate::handle_webhook(&request, deps).await;
            Ok(Response::FunctionUrl(to_function_url(&response)))
        }
        Invocation::ValidateManifest(ValidateManifestEvent::OnCall(request)) => {
            Ok(Response::Validated(validate::manual(&request, deps).await?))
        }
        Invocation::ValidateManifest(ValidateManifestEvent::Reconcile(request)) => Ok(
            Response::Reconciled(Box::new(reconcile::scheduled(&request, deps).await?)),
        ),
        Invocation::CopyDigest(event) => queue(Function::CopyDigest, event, deps).await,
        Invocation::Sign(event) => queue(Function::Sign, event, deps).await,
        Invocation::Notify(event) => queue(Function::Notify, event, deps).await,
        Invocation::Audit(AuditEvent::FunctionUrl(request)) => {
            let request =
                from_function_url(*request).map_err(|e| malformed("Function URL body", e))?;
            let response = audit::handle_http(&request, deps).await;
            Ok(Response::FunctionUrl(to_function_url(&response)))
        }
        Invocation::Audit(AuditEvent::EventBridge(event)) => {
            let body = serde_json::to_vec(&event).map_err(|e| malformed("EventBridge event", e))?;
            Ok(Response::Audited(audit::eventbridge(&body, deps).await?))
        }
    }
}

/// A queue-fed function's batch, or one bare message (whose finished unit is counted at once).
async fn queue<M: Into<QueueMessage>>(
    function: Function,
    event: QueueEvent<M>,
    deps: &Deps,
) -> Result<Response, StepError> {
    match event {
        QueueEvent::Batch(batch) => Ok(Response::Batch(sqs_batch(function, batch, deps).await)),
        QueueEvent::Message(message) => {
            let engines = Engines::new(deps);
            let output = message.into().handle(deps, &engines).await?;
            count_outputs(deps, [&output]).await?;
            Ok(Response::Step(output))
        }
    }
}
