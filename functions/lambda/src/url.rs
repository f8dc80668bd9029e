//! Lambda Function URLs: their requests as the library's [`HttpRequest`], and its
//! [`HttpResponse`] as their responses.
//!
//! validate-manifest (GitHub push webhooks) and audit (registry notifications) are reached
//! through Function URLs. Such a request always gets an HTTP answer: a failed step becomes its
//! status ([`promoter::steps::StepError::http_status`]: 401 unauthenticated, 400 malformed, 503
//! retryable, 500 otherwise), decided by the step handlers.

use std::collections::BTreeMap;

use aws_lambda_events::http::header::CONTENT_TYPE;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine as _;
use promoter::steps::http::{HttpRequest, HttpResponse};

/// Converts a Function URL request: header names lowercased (first value of each), the body
/// base64-decoded when Lambda encoded it, query parameters from the decoded map and the raw
/// query string. Fails when the body is marked base64 but is not.
pub fn from_function_url(
    request: LambdaFunctionUrlRequest,
) -> Result<HttpRequest, base64::DecodeError> {
    let mut headers = BTreeMap::new();
    for (name, value) in &request.headers {
        if let Ok(value) = value.to_str() {
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| value.to_owned());
        }
    }
    let body = match request.body {
        None => Vec::new(),
        Some(text) if request.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD.decode(text.as_bytes())?
        }
        Some(text) => text.into_bytes(),
    };
    let mut query: BTreeMap<String, String> = request.query_string_parameters.into_iter().collect();
    if let Some(raw) = request.raw_query_string.as_deref() {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            query
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    Ok(HttpRequest {
        method: request.request_context.http.method.unwrap_or_default(),
        path: request.raw_path.unwrap_or_else(|| "/".to_owned()),
        query,
        headers,
        body,
    })
}

/// Converts a step's response into a Function URL response with a JSON body.
pub fn to_function_url(response: &HttpResponse) -> LambdaFunctionUrlResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut out = LambdaFunctionUrlResponse::default();
    out.status_code = i64::from(response.status);
    out.headers = headers;
    out.body = Some(response.body.to_string());
    out.is_base64_encoded = false;
    out.cookies = Vec::new();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str, base64: bool) -> LambdaFunctionUrlRequest {
        serde_json::from_value(serde_json::json!({
            "rawPath": "/pubsub",
            "rawQueryString": "token=abc&flag",
            "headers": {"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
            "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0},
            "body": body,
            "isBase64Encoded": base64,
        }))
        .expect("a Function URL request")
    }

    #[test]
    fn requests_convert_with_lowercased_headers_query_and_decoded_body() {
        let converted = from_function_url(request("eyJhIjoxfQ==", true)).expect("converted");
        assert_eq!(converted.method, "POST");
        assert_eq!(converted.path, "/pubsub");
        assert_eq!(converted.body, br#"{"a":1}"#);
        assert_eq!(converted.bearer_token(), Some("s3cret"));
        assert_eq!(
            converted.query.get("token").map(String::as_str),
            Some("abc")
        );
        assert_eq!(converted.query.get("flag").map(String::as_str), Some(""));
        let plain = from_function_url(request("{}", false)).expect("converted");
        assert_eq!(plain.body, b"{}");
        assert!(from_function_url(request("not base64!", true)).is_err());
    }

    #[test]
    fn responses_are_json_function_url_answers() {
        let response = HttpResponse::json(202, &serde_json::json!({"outcome": "accepted"}));
        let encoded = serde_json::to_value(to_function_url(&response)).expect("serialize");
        assert_eq!(
            encoded,
            serde_json::json!({
                "statusCode": 202,
                "headers": {"content-type": "application/json"},
                "body": r#"{"outcome":"accepted"}"#,
                "isBase64Encoded": false,
                "cookies": [],
            })
        );
    }
}
