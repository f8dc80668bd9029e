//! Step handlers: what the CLI and the Lambda functions run, with all their IO through the
//! library's seams (registry client, state store, queues, notifier).
//!
//! - [`validate`]: a merged push or an on-call request → a recorded run and copy messages;
//! - [`copy`]: one unit per message, under its lease → a sign message;
//! - [`sign`]: one promoted unit per message → signatures; the run's last unit → notify;
//! - [`notify`]: run summaries and audit alerts → every sink;
//! - [`audit`]: registry notifications → audit records and alerts;
//! - [`dispatch`]: the five functions by name, and each queue message to its handler (shared
//!   by the in-process chain, the CLI and the Lambda adapters of the `promoter-lambda` crate);
//! - [`local`]: the whole chain in one process over in-process queues (`promoter promote`);
//! - [`promote`]: a whole promotion run in one process, recorded in state so that a rerun
//!   resumes it and concurrent workers share it;
//! - [`config`]: every setting in one type, and the one builder of [`Deps`];
//! - [`deps`], [`error`], [`http`], [`messages`], [`progress`], [`run_cache`]: what they
//!   share.

pub mod audit;
pub mod config;
pub mod copy;
pub mod deps;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod local;
pub mod messages;
pub mod notify;
pub mod progress;
pub mod promote;
pub mod reconcile;
pub mod run_cache;
pub mod sign;
pub mod validate;

#[cfg(test)]
mod ledger_properties;

pub use config::Config;
pub use deps::{Deps, Queues, Settings};
pub use dispatch::Function;
pub use error::StepError;
