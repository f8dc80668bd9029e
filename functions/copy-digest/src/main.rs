//! Lambda function `copy-digest` of the image promoter. Triggered by SQS, one unit per message: copies it to every destination under its lease, records the result and enqueues the sign step; answers with partial batch failures.
//!
//! A thin adapter: [`promoter_lambda::serve`] initializes logs (JSON under Lambda), builds the
//! step's dependencies once from the environment, decodes each invocation as one of this
//! function's payloads (an SQS batch or one bare copy message; anything else is refused) and hands it to the library's step
//! handler: the same path `promoter invoke copy-digest` runs.

use promoter_lambda::{Error, Function, serve};

fn main() -> Result<(), Error> {
    serve(Function::CopyDigest)
}
