//! Lambda function `notify` of the image promoter. Triggered by SQS: sends run summaries and audit alerts to the configured sinks (Slack, signed webhook, GitHub commit status, SNS).
//!
//! A thin adapter: [`promoter_lambda::serve`] initializes logs (JSON under Lambda), builds the
//! step's dependencies once from the environment, decodes each invocation as one of this
//! function's payloads (an SQS batch or one bare notify message; anything else is refused) and hands it to the library's step
//! handler: the same path `promoter invoke notify` runs.

use promoter_lambda::{Error, Function, serve};

fn main() -> Result<(), Error> {
    serve(Function::Notify)
}
