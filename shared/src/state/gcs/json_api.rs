//! The calls of GCS state that Google's client library makes only over gRPC: listing objects,
//! deleting one, and looking up the bucket, through the JSON API with plain requests
//! (`GET /storage/v1/b/B/o?prefix=…`, `DELETE /storage/v1/b/B/o/NAME`, `GET /storage/v1/b/B`),
//! with the same access token and retry policy as the library's calls.

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::error_chain::error_chain;
use crate::http::retry::RetryPolicy;
use crate::registry::auth::challenge::encode_query_value;
use crate::registry::auth::google::GoogleCredentials;

/// Longest error-body excerpt kept in an error, in bytes.
const MAX_DETAIL: usize = 300;

/// Why a JSON API call failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// 401 or 403, or no access token.
    Denied(String),
    /// The bucket does not exist (a listing's 404).
    MissingBucket,
    /// Anything else.
    Other(String),
}

/// The JSON API of one bucket.
pub(super) struct JsonApi {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing `/`.
    endpoint: String,
    bucket: String,
    /// `None` against an emulator.
    credentials: Option<GoogleCredentials>,
}

impl JsonApi {
    pub(super) fn new(
        endpoint: &str,
        bucket: &str,
        credentials: Option<GoogleCredentials>,
    ) -> Result<Self, reqwest::Error> {
        Ok(JsonApi {
            http: crate::http::client(&crate::http::Timeouts::default())?,
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            credentials,
        })
    }

    fn bucket_url(&self) -> String {
        format!(
            "{}/storage/v1/b/{}",
            self.endpoint,
            encode_query_value(&self.bucket)
        )
    }

    /// The names of every object whose name starts with `prefix` (every page).
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let base = format!(
            "{}/o?prefix={}&fields={}",
            self.bucket_url(),
            encode_query_value(prefix),
            encode_query_value("items(name),nextPageToken")
        );
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = match &token {
                Some(token) => format!("{base}&pageToken={}", encode_query_value(token)),
                None => base.clone(),
            };
            let response = self.send(Method::GET, &url).await?;
            match response.status() {
                StatusCode::NOT_FOUND => return Err(Failure::MissingBucket),
                status if !status.is_success() => return Err(failure(response).await),
                _ => {}
            }
            let page: serde_json::Value = response
                .json()
                .await
                .map_err(|e| Failure::Other(format!("listing: {}", error_chain(&e))))?;
            let items = page
                .get("items")
                .and_then(|items| items.as_array())
                .into_iter()
                .flatten();
            names.extend(
                items
                    .filter_map(|item| item.get("name").and_then(|n| n.as_str()))
                    .map(str::to_owned),
            );
            match page.get("nextPageToken").and_then(|t| t.as_str()) {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// Deletes the object `name`: true if it was deleted, false on a 404.
    pub(super) async fn delete(&self, name: &str) -> Result<bool, Failure> {
        let url = format!("{}/o/{}", self.bucket_url(), encode_query_value(name));
        let response = self.send(Method::DELETE, &url).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(failure(response).await),
        }
    }

    /// Whether the bucket exists: `None` when the answer says nothing (403: no
    /// `storage.buckets.get`).
    pub(super) async fn bucket_exists(&self) -> Result<Option<bool>, Failure> {
        let response = self.send(Method::GET, &self.bucket_url()).await?;
        Ok(match response.status() {
            StatusCode::NOT_FOUND => Some(false),
            status if status.is_success() => Some(true),
            _ => None,
        })
    }

    /// Sends `method url` with the access token, with the transport's retry policy (429, 5xx,
    /// connection errors).
    async fn send(&self, method: Method, url: &str) -> Result<Response, Failure> {
        let request = self.authorized(self.http.request(method, url)).await?;
        crate::http::retry::send(&RetryPolicy::default(), request)
            .await
            .map_err(|e| Failure::Other(error_chain(&e)))
    }

    async fn authorized(&self, request: RequestBuilder) -> Result<RequestBuilder, Failure> {
        let Some(credentials) = &self.credentials else {
            return Ok(request);
        };
        match credentials.access_token().await {
            Ok(token) => Ok(request.bearer_auth(token)),
            Err(e) => Err(Failure::Denied(format!(
                "cannot get a Google access token: {}",
                error_chain(&e)
            ))),
        }
    }
}

/// The failure of a response that is not a success.
async fn failure(response: Response) -> Failure {
    let status = response.status();
    let body = crate::http::read_prefix(response, crate::http::limits::ERROR_BODY).await;
    let reason = format!("HTTP {status}{}", detail(&body));
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Denied(reason),
        _ => Failure::Other(reason),
    }
}

/// `: MESSAGE` from a JSON API error body (`{"error": {"message": ...}}`), or the start of the
/// body; empty when there is nothing.
fn detail(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.trim().to_owned());
    if message.is_empty() {
        return String::new();
    }
    let mut end = message.len().min(MAX_DETAIL);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(": {}", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_prefers_the_json_message() {
        assert_eq!(
            detail(r#"{"error":{"code":404,"message":"No such object: b/o"}}"#),
            ": No such object: b/o"
        );
        assert_eq!(detail("Not Found\n"), ": Not Found");
        assert_eq!(detail(""), "");
    }

    #[test]
    fn object_names_are_percent_encoded_whole() {
        let api = JsonApi::new("http://127.0.0.1:4443", "bucket", None).expect("client");
        assert_eq!(
            api.bucket_url(),
            "http://127.0.0.1:4443/storage/v1/b/bucket"
        );
        assert_eq!(
            encode_query_value("some/prefix/a b.json"),
            "some%2Fprefix%2Fa%20b.json"
        );
    }
}
