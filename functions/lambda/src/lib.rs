//! The image promoter's Lambda edges: everything between Lambda's runtime API and the
//! library's step handlers ([`promoter::steps`]), shared by the five function binaries and by
//! `promoter invoke`.
//!
//! - [`serve`]: what each function's `main` calls: logs, the step's dependencies built once
//!   from the environment, and the runtime loop;
//! - [`event`]: the payloads each function accepts, as typed enums; anything else is refused
//!   at decode time;
//! - [`invoke()`]: one payload → its step → the answer Lambda expects;
//! - [`url`]: Function URL requests and responses;
//! - [`batch`]: SQS batches and their partial batch failures;
//! - [`error`]: failures as Lambda diagnostics, retryable or permanent.
//!
//! Retryable versus permanent is decided once, by the library ([`StepError::is_retryable`]);
//! this crate only maps it to Lambda's world.

pub mod batch;
pub mod error;
pub mod event;
pub mod invoke;
pub mod url;

use lambda_runtime::{LambdaEvent, service_fn};
use promoter::error_chain::error_chain;
use promoter::steps::Deps;
use serde_json::Value;

pub use error::InvokeError;
pub use event::{Invocation, RefusedEvent};
pub use invoke::{Response, invoke};
pub use lambda_runtime::Error;
pub use promoter::steps::{Function, StepError};

/// Runs `function` as a Lambda function until the runtime stops it: starts the async runtime,
/// initializes logs ([`init_tracing`]), builds [`Deps`] once from the environment (a function
/// whose configuration is wrong fails here, at init), and answers every invocation with
/// [`invoke()`].
pub fn serve(function: Function) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(function))
}

/// [`serve`] inside an existing async runtime.
pub async fn run(function: Function) -> Result<(), Error> {
    init_tracing();
    let deps = Deps::from_env()
        .await
        .map_err(|e| Error::from(error_chain(&e)))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let answer = invoke(function, &event.payload, deps).await;
        if let Err(error) = &answer {
            tracing::error!(
                function = %function,
                retryable = error.is_retryable(),
                error = %error_chain(error),
                "invocation failed"
            );
        }
        answer
    }))
    .await
}

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
