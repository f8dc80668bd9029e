//! The five functions as Lambda sees them: raw invocation payloads in, raw responses out.
//!
//! The Lambda binaries and `promoter invoke` both call [`invoke`], so a function run by hand
//! on an event file behaves exactly as deployed. The mapping of failures to Lambda's world is
//! decided here, once:
//!
//! - Function URL requests (validate-manifest, audit) always get an HTTP response: a failure
//!   becomes its status ([`StepError::http_status`]: 401 unauthenticated, 400 malformed, 503
//!   retryable, 500 otherwise);
//! - SQS batches (copy-digest, sign, notify) answer `{"batchItemFailures": [...]}` listing only
//!   the messages that failed for a reason that may pass: those come back; a permanent failure
//!   is logged and consumed (what it means is recorded in state);
//! - any other payload is handled as one message or request, and its failure is the
//!   invocation's error.
//!
//! This is glue the house rules would put in the adapters; it lives here so that five
//! adapters and the CLI do not each repeat it.

use std::collections::BTreeMap;

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error_chain::error_chain;

use super::copy::Engines;
use super::deps::Deps;
use super::error::{StepError, malformed};
use super::http::{HttpRequest, HttpResponse};
use super::{audit, validate};

pub use super::dispatch::{Function, Output, count_outputs, message};

/// Logs for a function: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's JSON log format),
/// human text otherwise; filtered by `RUST_LOG` (default `info`). Secrets are never logged.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// Messages of one SQS batch handled at the same time.
const BATCH_CONCURRENCY: usize = 10;

/// Runs `function` on one invocation payload.
pub async fn invoke(function: Function, event: Value, deps: &Deps) -> Result<Value, StepError> {
    if event.get("requestContext").is_some() {
        let request = from_function_url(event)?;
        let response = match function {
            Function::ValidateManifest => validate::handle_webhook(&request, deps).await,
            Function::Audit => audit::handle_http(&request, deps).await,
            _ => HttpResponse::json(
                404,
                &json!({"error": format!("{} takes no HTTP requests", function.name())}),
            ),
        };
        return Ok(to_function_url(&response));
    }
    if event.get("Records").is_some() {
        let batch: SqsEvent =
            serde_json::from_value(event).map_err(|e| malformed("SQS batch", e))?;
        return Ok(sqs_batch(function, batch, deps).await);
    }
    let engines = Engines::new(deps);
    match function {
        Function::ValidateManifest => {
            let request: validate::ManualRequest =
                serde_json::from_value(event).map_err(|e| malformed("manual request", e))?;
            to_value(&validate::manual(&request, deps).await?)
        }
        Function::Audit => audit::eventbridge(event.to_string().as_bytes(), deps)
            .await
            .and_then(|o| to_value(&o)),
        _ => {
            let output = message(function, &event.to_string(), deps, &engines).await?;
            count_outputs(deps, [&output]).await?;
            to_value(&output)
        }
    }
}

/// Handles an SQS batch, reporting only retryable failures.
async fn sqs_batch(function: Function, batch: SqsEvent, deps: &Deps) -> Value {
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
    let mut failures = Vec::new();
    if let Err(error) = &counted {
        // The units are marked final but not counted: their messages come back, and their
        // redelivery counts the markers.
        tracing::warn!(error = %error_chain(error), "counting the batch's final units failed");
        for (id, result) in &results {
            if result.as_ref().is_ok_and(|o| o.finalized().is_some()) {
                failures.push(json!({ "itemIdentifier": id }));
            }
        }
    }
    for (id, result) in results {
        match result {
            Ok(_) => {}
            Err(error) if error.is_retryable() => {
                tracing::warn!(message = %id, error = %error_chain(&error), "message failed; it will come back");
                failures.push(json!({ "itemIdentifier": id }));
            }
            Err(error) => {
                tracing::error!(message = %id, error = %error_chain(&error), "message failed for good; dropped");
            }
        }
    }
    json!({ "batchItemFailures": failures })
}

fn to_value(value: &impl Serialize) -> Result<Value, StepError> {
    serde_json::to_value(value).map_err(|e| malformed("step output", e))
}

/// Decodes a Function URL invocation into an [`HttpRequest`].
pub fn from_function_url(event: Value) -> Result<HttpRequest, StepError> {
    let request: LambdaFunctionUrlRequest =
        serde_json::from_value(event).map_err(|e| malformed("Function URL request", e))?;
    let mut headers = BTreeMap::new();
    for (name, value) in &request.headers {
        if let Ok(value) = value.to_str() {
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| value.to_owned());
        }
    }
    let body = match request.body {
        None => Vec::new(),
        Some(text) if request.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| malformed("Function URL body", e))?,
        Some(text) => text.into_bytes(),
    };
    let mut query: BTreeMap<String, String> = request.query_string_parameters.into_iter().collect();
    if let Some(raw) = request.raw_query_string.as_deref() {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            query
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    Ok(HttpRequest {
        method: request.request_context.http.method.unwrap_or_default(),
        path: request.raw_path.unwrap_or_else(|| "/".to_owned()),
        query,
        headers,
        body,
    })
}

/// Encodes an [`HttpResponse`] as a Function URL response.
pub fn to_function_url(response: &HttpResponse) -> Value {
    json!({
        "statusCode": response.status,
        "headers": { "content-type": "application/json" },
        "body": response.body.to_string(),
        "isBase64Encoded": false,
        "cookies": [],
    })
}
