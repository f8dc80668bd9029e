//! Lambda function `sign` of the image promoter. Triggered by SQS, one promoted unit per message: signs its digest once, pushes the signature to every destination, and enqueues notify when the run's last unit is final.
//!
//! A thin adapter: [`promoter_lambda::serve`] initializes logs (JSON under Lambda), builds the
//! step's dependencies once from the environment, decodes each invocation as one of this
//! function's payloads (an SQS batch or one bare sign message; anything else is refused) and hands it to the library's step
//! handler: the same path `promoter invoke sign` runs.

use promoter_lambda::{Error, Function, serve};

fn main() -> Result<(), Error> {
    serve(Function::Sign)
}
