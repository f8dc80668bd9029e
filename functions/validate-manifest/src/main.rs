//! Lambda function `validate-manifest` of the image promoter. Triggered by GitHub push webhooks through its Function URL (and by on-call invocations): validates the manifests at the pushed commit, records the run and enqueues one copy message per unit.
//!
//! A thin adapter: [`promoter_lambda::serve`] initializes logs (JSON under Lambda), builds the
//! step's dependencies once from the environment, decodes each invocation as one of this
//! function's payloads (a Function URL request carrying a GitHub push webhook, or an on-call
//! request; anything else is refused) and hands it to the library's step handler: the same
//! path `promoter invoke validate-manifest` runs.

use promoter_lambda::{Error, Function, serve};

fn main() -> Result<(), Error> {
    serve(Function::ValidateManifest)
}
