//! Lambda function `validate-manifest` of the image promoter. Triggered by GitHub push webhooks through its Function URL (and by on-call invocations): validates the manifests at the pushed commit, records the run and enqueues one copy message per unit.
//!
//! A thin adapter: logs (JSON under Lambda), the step's dependencies built once from the
//! environment, and every invocation handed to the library's step handler
//! (`promoter::steps::lambda::invoke`), the same one `promoter invoke validate-manifest` runs.

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
        invoke(Function::ValidateManifest, event.payload, deps)
            .await
            .map_err(|e| error_chain(&e))
    }))
    .await
}
