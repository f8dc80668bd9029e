//! Step handlers: what the CLI and the Lambda functions run, with all their IO through the
//! library's seams (registry client, state store).
//!
//! - [`promote`]: a whole promotion run in one process, recorded in state so that a rerun
//!   resumes it and concurrent workers share it.

pub mod promote;
