//! Failed invocations as Lambda reports them: a [`Diagnostic`] whose `errorType` says whether
//! trying again may help.
//!
//! `errorType` is `Retryable.<Kind>` or `Permanent.<Kind>`, where the kind is the step error's
//! variant ([`StepError::kind`], e.g. `Retryable.Held`, `Permanent.Unknown`) or
//! `RefusedEvent` for a payload the function does not take. The prefix is what alarms and
//! dead-letter triage filter on; Lambda itself retries an asynchronous invocation
//! (EventBridge) whatever the type. `errorMessage` is the error with its causes.

use lambda_runtime::Diagnostic;
use promoter::error_chain::error_chain;
use promoter::steps::StepError;

use crate::event::RefusedEvent;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The payload is none of those the function takes.
    #[error(transparent)]
    Refused(#[from] RefusedEvent),
    /// The step failed.
    #[error(transparent)]
    Step(#[from] StepError),
}

impl InvokeError {
    /// True when the same payload may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Refused(_) => false,
            InvokeError::Step(error) => error.is_retryable(),
        }
    }

    /// Lambda's `errorType`: `Retryable.<Kind>` or `Permanent.<Kind>`.
    pub fn error_type(&self) -> String {
        let kind = match self {
            InvokeError::Refused(_) => "RefusedEvent",
            InvokeError::Step(error) => error.kind(),
        };
        let class = if self.is_retryable() {
            "Retryable"
        } else {
            "Permanent"
        };
        format!("{class}.{kind}")
    }
}

impl From<InvokeError> for Diagnostic {
    fn from(error: InvokeError) -> Self {
        Diagnostic {
            error_type: error.error_type(),
            error_message: error_chain(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use promoter::steps::Function;
    use promoter::steps::error::malformed;

    use super::*;

    #[test]
    fn failures_map_to_retryable_and_permanent_diagnostics() {
        let held = InvokeError::from(StepError::Held {
            unit: "u1".into(),
            holder: "worker-2".into(),
        });
        assert!(held.is_retryable());
        assert_eq!(
            Diagnostic::from(held),
            Diagnostic {
                error_type: "Retryable.Held".into(),
                error_message: "unit u1 is being worked on by worker-2".into(),
            }
        );

        let unknown = InvokeError::from(StepError::Unknown {
            run: "RUN_ID".into(),
            what: "unit UNIT".into(),
        });
        assert!(!unknown.is_retryable());
        let diagnostic = Diagnostic::from(unknown);
        assert_eq!(diagnostic.error_type, "Permanent.Unknown");
        assert!(
            diagnostic.error_message.contains("RUN_ID"),
            "{diagnostic:?}"
        );

        let diagnostic = Diagnostic::from(InvokeError::from(malformed("copy message", "bad")));
        assert_eq!(diagnostic.error_type, "Permanent.Malformed");
        assert_eq!(diagnostic.error_message, "malformed copy message: bad");

        let refused = InvokeError::from(RefusedEvent::explain(
            Function::Sign,
            &serde_json::json!({"detail-type": "ECR Image Action", "source": "aws.ecr", "detail": {}}),
        ));
        assert!(!refused.is_retryable());
        let diagnostic = Diagnostic::from(refused);
        assert_eq!(diagnostic.error_type, "Permanent.RefusedEvent");
        assert!(
            diagnostic
                .error_message
                .starts_with("sign accepts an SQS batch or a sign message")
                && diagnostic
                    .error_message
                    .ends_with("this is an EventBridge event"),
            "{diagnostic:?}"
        );
    }
}
