//! State in Google Cloud Storage, through the JSON API with plain HTTP requests.
//!
//! The endpoint is `https://storage.googleapis.com`, or `STORAGE_EMULATOR_HOST` (`host:port`
//! or a URL, as Google's client libraries read it) without authentication. Otherwise requests
//! carry an OAuth2 access token from [`GoogleCredentials`] (Application Default Credentials).
//!
//! Conditional writes use `ifGenerationMatch` on multipart uploads (`0` to create, the
//! generation read to replace); `412 Precondition Failed` means someone else won. Multipart
//! uploads are also the only kind on which fake-gcs-server honours the precondition. Versions
//! are generations.
//!
//! Opening makes no request. GCS answers a bare 404 for both a missing object and a missing
//! bucket on some paths (and fake-gcs-server on all), so the first 404 is followed by one
//! bucket lookup to tell them apart.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::{Object, StateError, Version};
use crate::error_chain::error_chain;
use crate::http::retry::RetryPolicy;
use crate::registry::auth::challenge::encode_query_value;
use crate::registry::auth::google::GoogleCredentials;

/// Google's storage endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Longest error-body excerpt kept in an error, in bytes.
const MAX_DETAIL: usize = 300;

/// A state store in a GCS bucket, below an optional prefix.
pub struct GcsStore {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing `/`.
    endpoint: String,
    bucket: String,
    /// The name prefix with its trailing `/`, or empty.
    prefix: String,
    url: String,
    /// `None` against an emulator.
    credentials: Option<GoogleCredentials>,
    /// The bucket was seen to exist (no more lookups after a 404).
    bucket_seen: AtomicBool,
}

impl GcsStore {
    /// Opens `BUCKET[/PREFIX]`: on `STORAGE_EMULATOR_HOST` without authentication if set, else
    /// on Google's endpoint with Application Default Credentials.
    pub async fn open(location: &str) -> Result<Self, StateError> {
        match std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
        {
            Some(host) => Self::with_endpoint(&host, location),
            None => {
                let credentials = GoogleCredentials::from_env(Vec::new());
                Self::build(DEFAULT_ENDPOINT, location, Some(credentials))
            }
        }
    }

    /// Opens `BUCKET[/PREFIX]` on `endpoint` (`host:port` meaning `http://host:port`, or a URL)
    /// without authentication: an emulator.
    pub fn with_endpoint(endpoint: &str, location: &str) -> Result<Self, StateError> {
        Self::build(&endpoint_url(endpoint), location, None)
    }

    /// Opens `BUCKET[/PREFIX]` on `endpoint` (as in [`GcsStore::with_endpoint`]) with
    /// `credentials`: a private endpoint, or a test of the credentials against an emulator.
    pub fn with_endpoint_and_credentials(
        endpoint: &str,
        location: &str,
        credentials: GoogleCredentials,
    ) -> Result<Self, StateError> {
        Self::build(&endpoint_url(endpoint), location, Some(credentials))
    }

    fn build(
        endpoint: &str,
        location: &str,
        credentials: Option<GoogleCredentials>,
    ) -> Result<Self, StateError> {
        let (bucket, prefix) = super::s3::split_location("gs", location)?;
        let url = if prefix.is_empty() {
            format!("gs://{bucket}")
        } else {
            format!("gs://{bucket}/{}", prefix.trim_end_matches('/'))
        };
        let http = crate::http::client(&crate::http::Timeouts::default()).map_err(|e| {
            StateError::Remote {
                url: url.clone(),
                operation: "OPEN",
                key: String::new(),
                reason: format!("cannot build an HTTP client: {}", error_chain(&e)),
            }
        })?;
        Ok(GcsStore {
            http,
            endpoint: endpoint.to_owned(),
            bucket,
            prefix,
            url,
            credentials,
            bucket_seen: AtomicBool::new(false),
        })
    }

    /// `gs://BUCKET[/PREFIX]`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn remote(&self, operation: &'static str, key: &str, reason: impl Into<String>) -> StateError {
        StateError::Remote {
            url: self.url.clone(),
            operation,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn missing_bucket(&self) -> StateError {
        StateError::MissingBucket {
            bucket: self.bucket.clone(),
            url: self.url.clone(),
        }
    }

    /// `ENDPOINT/storage/v1/b/BUCKET/o/NAME` with the full name percent-encoded.
    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            encode_query_value(&self.bucket),
            encode_query_value(&format!("{}{key}", self.prefix))
        )
    }

    /// A request with the access token, if any.
    async fn request(
        &self,
        method: Method,
        url: &str,
        operation: &'static str,
        key: &str,
    ) -> Result<RequestBuilder, StateError> {
        let request = self.http.request(method, url);
        let Some(credentials) = &self.credentials else {
            return Ok(request);
        };
        match credentials.access_token().await {
            Ok(token) => Ok(request.bearer_auth(token)),
            Err(e) => Err(self.remote(
                operation,
                key,
                format!("cannot get a Google access token: {}", error_chain(&e)),
            )),
        }
    }

    /// Sends `request` with the transport's retry policy (429, 5xx, connection errors), so that
    /// a passing Cloud Storage error does not fail a step (or a webhook: GitHub does not
    /// redeliver a failed one by itself).
    async fn send(
        &self,
        request: RequestBuilder,
        operation: &'static str,
        key: &str,
    ) -> Result<Response, StateError> {
        crate::http::retry::send(&RetryPolicy::default(), request)
            .await
            .map_err(|e| self.remote(operation, key, error_chain(&e)))
    }

    /// The error of a response that is not a success (and not one the caller handles).
    async fn status_error(
        &self,
        response: Response,
        operation: &'static str,
        key: &str,
    ) -> StateError {
        let status = response.status();
        let body = crate::http::read_prefix(response, crate::http::limits::ERROR_BODY).await;
        let reason = format!("HTTP {status}{}", detail(&body));
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StateError::Denied {
                url: self.url.clone(),
                key: key.to_owned(),
                reason,
            },
            _ => self.remote(operation, key, reason),
        }
    }

    /// After a 404: whether the bucket is what is missing (one lookup, until it is seen).
    async fn bucket_missing(&self, operation: &'static str, key: &str) -> Result<bool, StateError> {
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let url = format!(
            "{}/storage/v1/b/{}?fields=name",
            self.endpoint,
            encode_query_value(&self.bucket)
        );
        let request = self.request(Method::GET, &url, operation, key).await?;
        let response = self.send(request, operation, key).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(true),
            status => {
                // 403 (no `storage.buckets.get`) says nothing: assume the bucket is there.
                if status.is_success() {
                    self.bucket_seen.store(true, Ordering::Relaxed);
                }
                Ok(false)
            }
        }
    }

    /// See [`super::StateStore::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        let url = format!("{}?alt=media", self.object_url(key));
        let request = self.request(Method::GET, &url, "GET", key).await?;
        let response = self.send(request, "GET", key).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return if self.bucket_missing("GET", key).await? {
                Err(self.missing_bucket())
            } else {
                Ok(None)
            };
        }
        if !status.is_success() {
            return Err(self.status_error(response, "GET", key).await);
        }
        self.bucket_seen.store(true, Ordering::Relaxed);
        let generation = response
            .headers()
            .get("x-goog-generation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.remote("GET", key, error_chain(&e)))?;
        let generation = match generation {
            Some(generation) => generation,
            // Without the header, the metadata's generation (which may be newer than the
            // content read: a later conditional write then fails, which is safe).
            None => match self.metadata_generation(key).await? {
                Some(generation) => generation,
                None => return Ok(None),
            },
        };
        Ok(Some(Object {
            bytes,
            version: Version(generation),
        }))
    }

    /// The object's generation from its metadata; `None` when it is gone.
    async fn metadata_generation(&self, key: &str) -> Result<Option<String>, StateError> {
        let url = format!("{}?fields=generation", self.object_url(key));
        let request = self.request(Method::GET, &url, "GET", key).await?;
        let response = self.send(request, "GET", key).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.status_error(response, "GET", key).await);
        }
        let body: serde_json::Value = response.json().await.map_err(|e| {
            self.remote("GET", key, format!("object metadata: {}", error_chain(&e)))
        })?;
        generation_of(&body)
            .map(Some)
            .ok_or_else(|| self.remote("GET", key, "object metadata without a generation"))
    }

    /// Uploads `bytes` as `key` if the object's generation is `generation` (`0`: absent).
    async fn upload(
        &self,
        key: &str,
        bytes: Bytes,
        generation: &str,
    ) -> Result<Option<Version>, StateError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={}",
            self.endpoint,
            encode_query_value(&self.bucket),
            encode_query_value(generation)
        );
        let name = format!("{}{key}", self.prefix);
        let metadata =
            serde_json::json!({ "name": name, "contentType": "application/octet-stream" });
        let (boundary, body) = multipart_related(metadata.to_string().as_bytes(), &bytes);
        let request = self
            .request(Method::POST, &url, "PUT", key)
            .await?
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body);
        let response = self.send(request, "PUT", key).await?;
        match response.status() {
            StatusCode::PRECONDITION_FAILED => {
                tracing::debug!(store = %self.url, key, "conditional write lost");
                Ok(None)
            }
            StatusCode::NOT_FOUND => {
                if self.bucket_missing("PUT", key).await? {
                    Err(self.missing_bucket())
                } else if generation != "0" {
                    // The object vanished.
                    Ok(None)
                } else {
                    Err(self.status_error(response, "PUT", key).await)
                }
            }
            status if status.is_success() => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                let body: serde_json::Value = response.json().await.map_err(|e| {
                    self.remote("PUT", key, format!("upload answer: {}", error_chain(&e)))
                })?;
                generation_of(&body)
                    .map(|g| Some(Version(g)))
                    .ok_or_else(|| self.remote("PUT", key, "upload answer without a generation"))
            }
            _ => Err(self.status_error(response, "PUT", key).await),
        }
    }

    /// See [`super::StateStore::create`].
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        self.upload(key, bytes, "0").await
    }

    /// See [`super::StateStore::update`].
    pub async fn update(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Option<Version>, StateError> {
        // A generation is a positive integer: anything else cannot match (and `0` would mean
        // "absent").
        if expected.0.is_empty()
            || expected.0 == "0"
            || !expected.0.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(None);
        }
        self.upload(key, bytes, &expected.0).await
    }

    /// See [`super::StateStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let base = format!(
            "{}/storage/v1/b/{}/o?prefix={}&fields={}",
            self.endpoint,
            encode_query_value(&self.bucket),
            encode_query_value(&full_prefix),
            encode_query_value("items(name),nextPageToken")
        );
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = match &token {
                Some(token) => format!("{base}&pageToken={}", encode_query_value(token)),
                None => base.clone(),
            };
            let request = self.request(Method::GET, &url, "LIST", prefix).await?;
            let response = self.send(request, "LIST", prefix).await?;
            match response.status() {
                StatusCode::NOT_FOUND => return Err(self.missing_bucket()),
                status if !status.is_success() => {
                    return Err(self.status_error(response, "LIST", prefix).await);
                }
                _ => {}
            }
            self.bucket_seen.store(true, Ordering::Relaxed);
            let page: serde_json::Value = response.json().await.map_err(|e| {
                self.remote("LIST", prefix, format!("listing: {}", error_chain(&e)))
            })?;
            let names = page
                .get("items")
                .and_then(|items| items.as_array())
                .into_iter()
                .flatten();
            keys.extend(
                names
                    .filter_map(|item| item.get("name").and_then(|n| n.as_str()))
                    .filter(|name| name.starts_with(&full_prefix))
                    .filter_map(|name| name.strip_prefix(&self.prefix))
                    .map(str::to_owned),
            );
            match page.get("nextPageToken").and_then(|t| t.as_str()) {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// See [`super::StateStore::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        let url = self.object_url(key);
        let request = self.request(Method::DELETE, &url, "DELETE", key).await?;
        let response = self.send(request, "DELETE", key).await?;
        match response.status() {
            StatusCode::NOT_FOUND => {
                if self.bucket_missing("DELETE", key).await? {
                    Err(self.missing_bucket())
                } else {
                    Ok(())
                }
            }
            status if status.is_success() => Ok(()),
            _ => Err(self.status_error(response, "DELETE", key).await),
        }
    }
}

/// The `generation` of object metadata (a string in the JSON API; a number accepted too).
/// `host:port` as `http://host:port`; a URL as it is; no trailing `/`.
fn endpoint_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

fn generation_of(metadata: &serde_json::Value) -> Option<String> {
    match metadata.get("generation")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A `multipart/related` body of JSON metadata and the content, and its boundary (one that
/// occurs in neither part).
fn multipart_related(metadata: &[u8], content: &[u8]) -> (String, Vec<u8>) {
    let boundary = loop {
        let candidate = format!(
            "promoter-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let needle = candidate.as_bytes();
        let occurs = |part: &[u8]| part.windows(needle.len()).any(|w| w == needle);
        if !occurs(metadata) && !occurs(content) {
            break candidate;
        }
    };
    let mut body = Vec::with_capacity(metadata.len() + content.len() + 4 * boundary.len() + 160);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(metadata);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
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
    fn multipart_body_has_both_parts() {
        let (boundary, body) = multipart_related(br#"{"name":"a"}"#, b"content");
        let text = String::from_utf8(body).expect("utf-8");
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("\r\n\r\n{\"name\":\"a\"}\r\n"));
        assert!(text.ends_with(&format!("\r\n\r\ncontent\r\n--{boundary}--\r\n")));
    }

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
    fn endpoint_without_scheme_is_http() {
        let store =
            GcsStore::with_endpoint("127.0.0.1:4443/", "bucket/some/prefix/").expect("store");
        assert_eq!(store.endpoint, "http://127.0.0.1:4443");
        assert_eq!(store.url(), "gs://bucket/some/prefix");
        assert_eq!(
            store.object_url("a/b.json"),
            "http://127.0.0.1:4443/storage/v1/b/bucket/o/some%2Fprefix%2Fa%2Fb.json"
        );
    }
}
