//! State in S3 or an S3-compatible store (SeaweedFS, moto, ...), through the AWS SDK.
//!
//! Configured the AWS way ([`aws_config::load_defaults`]): region, credentials chain, and
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` for other stores, which then get path-style
//! addressing (`http://HOST/BUCKET/KEY`). Conditional writes are S3's own: `If-None-Match: *`
//! to create, `If-Match: ETAG` to replace; `412 Precondition Failed` (or `409
//! ConditionalRequestConflict`, when two conditional writes overlap) means someone else won.
//! Versions are ETags, as S3 sends them (quotes included).
//!
//! Opening makes no request: a missing bucket or refused credentials show up on the first
//! operation.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId as _;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{Object, StateError, Version};
use crate::error_chain::error_chain;

/// The region used when none is configured: S3-compatible stores mostly ignore it, but requests
/// must be signed for one.
const FALLBACK_REGION: &str = "us-east-1";

/// Error codes that mean the credentials were refused.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
];

/// A state store in an S3 bucket, below an optional prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// The key prefix with its trailing `/`, or empty.
    prefix: String,
    url: String,
}

/// What a failed request means for the operation.
enum Failure {
    /// The condition did not hold (412, or 409 for overlapping conditional writes).
    Precondition,
    /// The object does not exist (`NoSuchKey`).
    NoSuchKey,
    /// Anything else, as the error to return.
    Error(StateError),
}

impl S3Store {
    /// Opens `BUCKET[/PREFIX]` with the configuration of the environment (region,
    /// credentials, `AWS_ENDPOINT_URL[_S3]`).
    pub async fn open(location: &str) -> Result<Self, StateError> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // `AWS_ENDPOINT_URL_S3` is resolved by the S3 client, not in `SdkConfig`: look at it
        // too to decide on path-style addressing.
        let s3_endpoint = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty())
            && std::env::var_os("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_none_or(|v| v != "true");
        Self::build(&config, location, s3_endpoint)
    }

    /// Opens `BUCKET[/PREFIX]` with an explicit configuration (tests: an endpoint, static
    /// credentials), without reading the environment.
    pub async fn with_config(
        config: aws_config::SdkConfig,
        location: &str,
    ) -> Result<Self, StateError> {
        Self::build(&config, location, false)
    }

    fn build(
        config: &aws_config::SdkConfig,
        location: &str,
        s3_endpoint: bool,
    ) -> Result<Self, StateError> {
        let (bucket, prefix) = split_location("s3", location)?;
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if config.endpoint_url().is_some() || s3_endpoint {
            builder = builder.force_path_style(true);
        }
        if config.region().is_none() {
            builder = builder.region(aws_sdk_s3::config::Region::new(FALLBACK_REGION));
        }
        let client = Client::from_conf(builder.build());
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{}", prefix.trim_end_matches('/'))
        };
        Ok(S3Store {
            client,
            bucket,
            prefix,
            url,
        })
    }

    /// `s3://BUCKET[/PREFIX]`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Sorts out a failed request of `operation` on `key`.
    fn failure<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().map(str::to_owned);
        let message = error.message().map(str::to_owned);
        match (status, code.as_deref()) {
            (_, Some("NoSuchBucket")) => {
                return Failure::Error(StateError::MissingBucket {
                    bucket: self.bucket.clone(),
                    url: self.url.clone(),
                });
            }
            (_, Some("PreconditionFailed" | "ConditionalRequestConflict"))
            | (Some(412 | 409), None) => {
                return Failure::Precondition;
            }
            (_, Some("NoSuchKey")) => return Failure::NoSuchKey,
            _ => {}
        }
        let reason = match &error {
            // The service's own words; the raw response adds nothing (and is long).
            SdkError::ServiceError(_) => {
                let said = match (&code, &message) {
                    (Some(code), Some(message)) => Some(format!("{code}: {message}")),
                    (Some(text), None) | (None, Some(text)) => Some(text.clone()),
                    (None, None) => None,
                };
                let status = status.map(|s| format!("HTTP {s}"));
                let mut reason = [status, said]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(id) = error.request_id() {
                    reason.push_str(&format!(" (request {id})"));
                }
                reason
            }
            // Transport, timeout, credentials, ...: the whole chain (never secrets).
            _ => error_chain(&error),
        };
        let denied =
            status == Some(403) || code.as_deref().is_some_and(|c| DENIED_CODES.contains(&c));
        Failure::Error(if denied {
            StateError::Denied {
                url: self.url.clone(),
                key: key.to_owned(),
                reason,
            }
        } else {
            StateError::Remote {
                url: self.url.clone(),
                operation,
                key: key.to_owned(),
                reason,
            }
        })
    }

    fn remote(&self, operation: &'static str, key: &str, reason: impl Into<String>) -> StateError {
        StateError::Remote {
            url: self.url.clone(),
            operation,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// See [`super::StateStore::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                return match self.failure("GET", key, error) {
                    Failure::NoSuchKey => Ok(None),
                    Failure::Error(e) => Err(e),
                    Failure::Precondition => {
                        Err(self.remote("GET", key, "unexpected precondition failure"))
                    }
                };
            }
        };
        let version = output
            .e_tag()
            .map(|etag| Version(etag.to_owned()))
            .ok_or_else(|| self.remote("GET", key, "the response has no ETag"))?;
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| self.remote("GET", key, format!("reading the body: {}", error_chain(&e))))?
            .into_bytes();
        Ok(Some(Object { bytes, version }))
    }

    /// Puts `bytes` at `key` under a condition: `If-None-Match: *` without `expected`,
    /// `If-Match: expected` with.
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StateError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes));
        let request = match expected {
            None => request.if_none_match("*"),
            Some(version) => request.if_match(&version.0),
        };
        match request.send().await {
            Ok(output) => output
                .e_tag()
                .map(|etag| Some(Version(etag.to_owned())))
                .ok_or_else(|| self.remote("PUT", key, "the response has no ETag")),
            Err(error) => match self.failure("PUT", key, error) {
                Failure::Precondition => {
                    tracing::debug!(store = %self.url, key, "conditional write lost");
                    Ok(None)
                }
                // `If-Match` on an object that vanished.
                Failure::NoSuchKey if expected.is_some() => Ok(None),
                Failure::NoSuchKey => Err(self.remote("PUT", key, "NoSuchKey on a create")),
                Failure::Error(e) => Err(e),
            },
        }
    }

    /// See [`super::StateStore::create`].
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        self.put(key, bytes, None).await
    }

    /// See [`super::StateStore::update`].
    pub async fn update(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Option<Version>, StateError> {
        self.put(key, bytes, Some(expected)).await
    }

    /// See [`super::StateStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let full_prefix = self.full_key(prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let result = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await;
            let page = match result {
                Ok(page) => page,
                Err(error) => {
                    return Err(match self.failure("LIST", prefix, error) {
                        Failure::Error(e) => e,
                        Failure::Precondition | Failure::NoSuchKey => {
                            self.remote("LIST", prefix, "unexpected answer to a listing")
                        }
                    });
                }
            };
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key())
                    .filter_map(|key| key.strip_prefix(&self.prefix))
                    .map(str::to_owned),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && !next.is_empty() => {
                    token = Some(next.to_owned())
                }
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// See [`super::StateStore::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => match self.failure("DELETE", key, error) {
                Failure::NoSuchKey => Ok(()),
                Failure::Error(e) => Err(e),
                Failure::Precondition => {
                    Err(self.remote("DELETE", key, "unexpected precondition failure"))
                }
            },
        }
    }
}

/// Splits `BUCKET[/PREFIX]` into the bucket and the prefix with a trailing `/` (or empty).
pub(super) fn split_location(scheme: &str, location: &str) -> Result<(String, String), StateError> {
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    if bucket.is_empty() {
        return Err(StateError::BadUrl {
            url: format!("{scheme}://{location}"),
            reason: format!("no bucket: use {scheme}://BUCKET[/PREFIX]"),
        });
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_owned(), prefix))
}
