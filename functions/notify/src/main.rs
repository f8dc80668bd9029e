//! Lambda function `notify` of the image promoter. Triggered by SQS: sends run summaries and audit alerts to the configured sinks (Slack, signed webhook, GitHub commit status, SNS).
//!
//! A thin adapter: logs (JSON under Lambda), the step's dependencies built once from the
//! environment, and every invocation handed to the library's step handler
//! (`promoter::steps::lambda::invoke`), the same one `promoter invoke notify` runs.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use promoter::error_chain::error_chain;
use promoter::steps::Deps;
use promoter::steps::lambda::{Function, init_tracing, invoke};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let deps = Deps::from_env()
        .await
        .map_err(|e| Error::from(error_chain(&e)))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke(Function::Notify, event.payload, deps)
            .await
            .map_err(|e| error_chain(&e))
    }))
    .await
}
