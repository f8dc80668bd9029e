//! Why a notice was not delivered, and whether trying again may help. Messages name the sink and
//! the URL's scheme and host, never a token, a secret or a Slack webhook's path.

use std::time::Duration;

use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::operation::publish::PublishError;
use reqwest::StatusCode;

use crate::http::retry::is_retryable_status;

/// A notice that could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No sink of that name is configured.
    #[error("no notification sink {name:?} is configured (configured: [{configured}])")]
    UnknownSink {
        /// The name asked for.
        name: String,
        /// The configured sinks' names.
        configured: String,
    },
    /// A sink's URL is not an absolute `http(s)` URL (the URL is not shown: it may be secret).
    #[error("{sink}: the configured URL is not an absolute http(s) URL: {reason}")]
    InvalidUrl {
        /// The sink.
        sink: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value that cannot go into an HTTP header (the value is not shown: it may be secret).
    #[error("{sink}: the {header} header's value has characters HTTP does not allow")]
    InvalidHeader {
        /// The sink.
        sink: &'static str,
        /// The header.
        header: &'static str,
    },
    /// A commit status whose repository is not `owner/name` or whose SHA is not hexadecimal.
    #[error("github-status: the commit's {field} {value:?} is not valid")]
    InvalidCommit {
        /// `repository` or `sha`.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// The notice could not be encoded as JSON.
    #[error("{sink}: encoding the notice as JSON")]
    Encode {
        /// The sink.
        sink: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be sent or its answer not read (connection refused, reset,
    /// timeout).
    #[error("{sink}: POST to {origin} failed")]
    Transport {
        /// The sink.
        sink: &'static str,
        /// The URL's scheme, host and port.
        origin: String,
        /// The HTTP client's error (with the URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with a status other than 2xx.
    #[error("{sink}: {origin} answered {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// The sink.
        sink: &'static str,
        /// The URL's scheme, host and port.
        origin: String,
        /// The status.
        status: StatusCode,
        /// The start of the answer's body, secrets removed.
        detail: String,
        /// The answer's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// A message attribute could not be built.
    #[error("sns: building the message attribute {name:?}")]
    SnsAttribute {
        /// The attribute.
        name: &'static str,
        /// The SDK's error.
        #[source]
        source: aws_sdk_sns::error::BuildError,
    },
    /// SNS refused the message or could not be reached.
    #[error("sns: publishing to {topic_arn} failed")]
    Sns {
        /// The topic.
        topic_arn: String,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<PublishError, aws_sdk_sns::config::http::HttpResponse>>,
    },
    /// An environment variable is set but not valid Unicode.
    #[error("environment variable {variable}")]
    Environment {
        /// The variable.
        variable: &'static str,
        /// Why it cannot be read.
        #[source]
        source: std::env::VarError,
    },
}

/// SNS error codes that mean "slow down".
const THROTTLING_CODES: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

impl NotifyError {
    /// True when trying again later may succeed: connection errors, 429 and 5xx answers, SNS
    /// throttling and server errors. False for answers that will not change (other 4xx, a bad
    /// configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Transport { source, .. } => !source.is_builder() && !source.is_redirect(),
            NotifyError::Status { status, .. } => is_retryable_status(*status),
            NotifyError::Sns { source, .. } => sns_is_retryable(source),
            NotifyError::UnknownSink { .. }
            | NotifyError::InvalidUrl { .. }
            | NotifyError::InvalidHeader { .. }
            | NotifyError::InvalidCommit { .. }
            | NotifyError::Encode { .. }
            | NotifyError::SnsAttribute { .. }
            | NotifyError::Environment { .. } => false,
        }
    }

    /// How long the receiver asked to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn sns_is_retryable(
    error: &SdkError<PublishError, aws_sdk_sns::config::http::HttpResponse>,
) -> bool {
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            let error = context.err();
            let status = context.raw().status().as_u16();
            error.is_internal_error_exception()
                || error.is_kms_throttling_exception()
                || error
                    .code()
                    .is_some_and(|code| THROTTLING_CODES.contains(&code))
                || status == 429
                || (500..600).contains(&status)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> NotifyError {
        NotifyError::Status {
            sink: "webhook",
            origin: "https://example.com".into(),
            status: StatusCode::from_u16(code).expect("a status"),
            detail: String::new(),
            retry_after: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for code in [429, 500, 502, 503] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert_eq!(status(429).retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            status(500).to_string(),
            "webhook: https://example.com answered 500 Internal Server Error"
        );
    }
}
