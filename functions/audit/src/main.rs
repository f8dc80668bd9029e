//! Lambda function `audit` of the image promoter. Triggered by registry notifications (distribution webhooks and Pub/Sub pushes through its Function URL, ECR events from EventBridge): judges every production push against the desired state and alerts on the unapproved.
//!
//! A thin adapter: [`promoter_lambda::serve`] initializes logs (JSON under Lambda), builds the
//! step's dependencies once from the environment, decodes each invocation as one of this
//! function's payloads (a Function URL request from a registry webhook or a Pub/Sub push, or
//! an EventBridge ECR event; anything else is refused) and hands it to the library's step
//! handler: the same path `promoter invoke audit` runs.

use promoter_lambda::{Error, Function, serve};

fn main() -> Result<(), Error> {
    serve(Function::Audit)
}
