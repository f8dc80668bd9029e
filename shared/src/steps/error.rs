//! Why a step failed, and whether trying again may help.
//!
//! The adapters map [`StepError::is_retryable`] to Lambda's world once: a retryable failure of
//! one SQS message becomes a `batchItemFailures` entry (the message comes back), a permanent one
//! is logged and dropped (what it means is already recorded in state), and a Function URL
//! request gets an HTTP status from [`StepError::http_status`].

use crate::audit::AuditError;
use crate::copy::CopyError;
use crate::notify::NotifyError;
use crate::queue::QueueError;
use crate::registry::RegistryError;
use crate::sign::SignError;
use crate::source::SourceError;
use crate::state::StateError;

/// A step that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The request is not authentic (bad webhook signature, missing or wrong bearer token).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The event or message does not have the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A setting the step needs is missing or wrong.
    #[error("configuration: {variable}: {reason}")]
    Config {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A message names a run or unit that state does not know.
    #[error("run {run}: {what} not found in state")]
    Unknown {
        /// The run.
        run: String,
        /// The run itself, or `unit ID`.
        what: String,
    },
    /// Another worker holds the unit's lease: try again later.
    #[error("unit {unit} is being worked on by {holder}")]
    Held {
        /// The unit.
        unit: String,
        /// Its lease holder.
        holder: String,
    },
    /// Copying a unit failed for a reason that may pass.
    #[error("copying unit {unit}")]
    Copy {
        /// The unit.
        unit: String,
        /// What failed.
        #[source]
        source: CopyError,
    },
    /// Reading or writing state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Sending to a queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Fetching the manifests failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Loading manifests from the fetched folder failed.
    #[error(transparent)]
    Load(#[from] crate::manifest::LoadError),
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Judging a push failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Some notification sinks failed (the others were sent and are not sent again).
    #[error("notifying {failed} of {sinks} sinks failed: {first}")]
    Notify {
        /// Sinks that failed.
        failed: usize,
        /// Sinks configured.
        sinks: usize,
        /// The first failure.
        #[source]
        first: NotifyError,
        /// Whether some failure may pass (the message then comes back; sinks already sent to
        /// are skipped).
        retryable: bool,
    },
}

impl StepError {
    /// True when the same input may succeed later (the message should come back).
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Unauthorized(_)
            | StepError::Malformed { .. }
            | StepError::Config { .. }
            | StepError::Unknown { .. }
            | StepError::Load(_) => false,
            StepError::Held { .. } | StepError::Queue(_) => true,
            StepError::Copy { source, .. } => source.is_retryable(),
            StepError::State(e) => e.is_retryable(),
            StepError::Source(e) => e.is_retryable(),
            StepError::Registry(e) => e.is_retryable(),
            StepError::Sign(e) => e.is_retryable(),
            StepError::Audit(e) => e.is_retryable(),
            StepError::Notify { retryable, .. } => *retryable,
        }
    }

    /// The variant's name, stable and without data (e.g. `Held`, `Registry`): what the
    /// adapters report as the kind of a failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Unauthorized(_) => "Unauthorized",
            StepError::Malformed { .. } => "Malformed",
            StepError::Config { .. } => "Config",
            StepError::Unknown { .. } => "Unknown",
            StepError::Held { .. } => "Held",
            StepError::Copy { .. } => "Copy",
            StepError::State(_) => "State",
            StepError::Queue(_) => "Queue",
            StepError::Source(_) => "Source",
            StepError::Load(_) => "Load",
            StepError::Registry(_) => "Registry",
            StepError::Sign(_) => "Sign",
            StepError::Audit(_) => "Audit",
            StepError::Notify { .. } => "Notify",
        }
    }

    /// The HTTP status a Function URL answers with: 4xx when the request or what it points at
    /// is at fault (a hostile or broken archive is the sender's fault: 422, as for invalid
    /// manifests), 503 when trying again may help, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            StepError::Unauthorized(_) => 401,
            StepError::Malformed { .. } => 400,
            StepError::Config { .. } => 500,
            StepError::Source(e) if e.is_client_error() => 422,
            _ if self.is_retryable() => 503,
            _ => 500,
        }
    }
}

/// A [`StepError::Malformed`].
pub fn malformed(what: &'static str, reason: impl ToString) -> StepError {
    StepError::Malformed {
        what,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_archive_is_answered_as_the_senders_fault() {
        let hostile = StepError::from(SourceError::UnsafeEntry {
            origin: "o/r@abc".to_owned(),
            entry: "../x".to_owned(),
            reason: "a `..` component",
        });
        assert_eq!(hostile.http_status(), 422);
        let ours = StepError::from(SourceError::Io {
            path: "/tmp/x".into(),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(ours.http_status(), 500);
    }
}
