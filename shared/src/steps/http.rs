//! HTTP requests and responses of the webhook steps, independent of how they arrive (a Lambda
//! Function URL, or `promoter audit serve`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error_chain::error_chain;

use super::error::StepError;

/// An inbound HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/` or `/pubsub`.
    pub path: String,
    /// Query parameters (first value of each).
    pub query: BTreeMap<String, String>,
    /// Headers, names lowercased (first value of each).
    pub headers: BTreeMap<String, String>,
    /// The raw body, exactly as sent (webhook signatures cover these bytes).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The token of an `Authorization: Bearer TOKEN` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }
}

/// An HTTP response with a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: serde_json::Value,
}

impl HttpResponse {
    /// `status` with `body` serialized.
    pub fn json(status: u16, body: &impl Serialize) -> Self {
        HttpResponse {
            status,
            body: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The response for a step's result: `status(outcome)` and the outcome, or the error's
    /// response (logged with `refused`, e.g. "webhook refused").
    pub fn of<T: Serialize>(
        result: Result<T, StepError>,
        status: impl FnOnce(&T) -> u16,
        refused: &str,
    ) -> Self {
        match result {
            Ok(outcome) => HttpResponse::json(status(&outcome), &outcome),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "{refused}");
                HttpResponse::error(&error)
            }
        }
    }

    /// The response for a failed step: its status, and `{"error": CHAIN}`.
    pub fn error(error: &StepError) -> Self {
        HttpResponse {
            status: error.http_status(),
            body: serde_json::json!({
                "error": error_chain(error),
                "retryable": error.is_retryable(),
            }),
        }
    }
}

/// Compares two secrets in constant time.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_headers_are_read_case_insensitively() {
        let mut request = HttpRequest::default();
        request
            .headers
            .insert("authorization".into(), "bearer s3cret".into());
        assert_eq!(request.header("Authorization"), Some("bearer s3cret"));
        assert_eq!(request.bearer_token(), Some("s3cret"));
        request
            .headers
            .insert("authorization".into(), "Basic abc".into());
        assert_eq!(request.bearer_token(), None);
        assert!(secrets_equal("a", "a"));
        assert!(!secrets_equal("a", "b"));
        assert!(!secrets_equal("a", "ab"));
    }
}
