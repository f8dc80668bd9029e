//! State in Google Cloud Storage.
//!
//! Objects are read and written through Google's client library, [`google_cloud_storage`]:
//! conditional writes use `ifGenerationMatch` (`0` to create, the generation read to replace),
//! a `412 Precondition Failed` means someone else won, and versions are generations. Listing
//! and deleting go through the JSON API with plain requests ([`json_api`]): the library offers
//! them only over gRPC (its `StorageControl` client), a second transport the functions would
//! carry for two calls, and one GCS emulators do not serve.
//!
//! The endpoint is `https://storage.googleapis.com`, or `STORAGE_EMULATOR_HOST` (`host:port`
//! or a URL, as Google's client libraries read it) without authentication. Otherwise requests
//! carry the access token of [`GoogleCredentials`] (Application Default Credentials, Workload
//! Identity Federation included). Both transports retry as [`RetryPolicy::default`] does
//! (attempts, first and largest backoff, time budget).
//!
//! Opening reads no object. GCS answers a bare 404 for both a missing object and a missing
//! bucket on some paths (and fake-gcs-server on all), so the first 404 is followed by one
//! bucket lookup to tell them apart.

mod json_api;

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use google_cloud_auth::credentials::{Credentials, anonymous};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;

use super::{Object, StateError, Version};
use crate::error_chain::error_chain;
use crate::http::retry::RetryPolicy;
use crate::registry::auth::google::GoogleCredentials;
use json_api::JsonApi;

/// Google's storage endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// A state store in a GCS bucket, below an optional prefix.
pub struct GcsStore {
    /// Google's client: reads and conditional writes.
    objects: Storage,
    /// Listing, deleting and bucket lookups.
    json: JsonApi,
    bucket: String,
    /// `projects/_/buckets/BUCKET`, as the library names a bucket.
    bucket_path: String,
    /// The name prefix with its trailing `/`, or empty.
    prefix: String,
    url: String,
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
            Some(host) => Self::with_endpoint(&host, location).await,
            None => {
                Self::build(
                    DEFAULT_ENDPOINT,
                    location,
                    Some(GoogleCredentials::from_env(Vec::new())),
                )
                .await
            }
        }
    }

    /// Opens `BUCKET[/PREFIX]` on `endpoint` (`host:port` meaning `http://host:port`, or a URL)
    /// without authentication: an emulator.
    pub async fn with_endpoint(endpoint: &str, location: &str) -> Result<Self, StateError> {
        Self::build(&endpoint_url(endpoint), location, None).await
    }

    /// Opens `BUCKET[/PREFIX]` on `endpoint` (as in [`GcsStore::with_endpoint`]) with
    /// `credentials`: a private endpoint, or a test of the credentials against an emulator.
    pub async fn with_endpoint_and_credentials(
        endpoint: &str,
        location: &str,
        credentials: GoogleCredentials,
    ) -> Result<Self, StateError> {
        Self::build(&endpoint_url(endpoint), location, Some(credentials)).await
    }

    async fn build(
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
        let open_error = |reason: String| StateError::Remote {
            url: url.clone(),
            operation: "OPEN",
            key: String::new(),
            reason,
        };
        let library_credentials: Credentials = match &credentials {
            Some(google) => google.api_credentials().await.map_err(|e| {
                open_error(format!(
                    "cannot use Google credentials: {}",
                    error_chain(&e)
                ))
            })?,
            None => anonymous::Builder::new().build(),
        };
        let policy = RetryPolicy::default();
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(policy.base)
            .with_maximum_delay(policy.max)
            .build()
            .map_err(|e| open_error(format!("retry backoff: {}", error_chain(&e))))?;
        let objects = Storage::builder()
            .with_endpoint(endpoint)
            .with_credentials(library_credentials)
            .with_retry_policy(
                RetryableErrors
                    .with_attempt_limit(policy.attempts)
                    .with_time_limit(policy.budget),
            )
            .with_backoff_policy(backoff)
            .build()
            .await
            .map_err(|e| open_error(format!("cannot build the GCS client: {}", error_chain(&e))))?;
        let json = JsonApi::new(endpoint, &bucket, credentials)
            .map_err(|e| open_error(format!("cannot build an HTTP client: {}", error_chain(&e))))?;
        Ok(GcsStore {
            objects,
            json,
            bucket_path: format!("projects/_/buckets/{bucket}"),
            bucket,
            prefix,
            url,
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

    /// The error of a failed library call: refused credentials are [`StateError::Denied`].
    fn library_error(
        &self,
        operation: &'static str,
        key: &str,
        error: &google_cloud_storage::Error,
    ) -> StateError {
        match error.http_status_code() {
            Some(401 | 403) => StateError::Denied {
                url: self.url.clone(),
                key: key.to_owned(),
                reason: error_chain(error),
            },
            _ => self.remote(operation, key, error_chain(error)),
        }
    }

    /// After a 404: whether the bucket is what is missing (one lookup, until it is seen).
    async fn bucket_missing(&self, operation: &'static str, key: &str) -> Result<bool, StateError> {
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.json.bucket_exists().await {
            Ok(Some(true)) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Ok(Some(false)) => Ok(true),
            // No `storage.buckets.get` says nothing: assume the bucket is there.
            Ok(None) => Ok(false),
            Err(e) => Err(self.json_error(operation, key, e)),
        }
    }

    fn json_error(
        &self,
        operation: &'static str,
        key: &str,
        error: json_api::Failure,
    ) -> StateError {
        match error {
            json_api::Failure::Denied(reason) => StateError::Denied {
                url: self.url.clone(),
                key: key.to_owned(),
                reason,
            },
            json_api::Failure::MissingBucket => self.missing_bucket(),
            json_api::Failure::Other(reason) => self.remote(operation, key, reason),
        }
    }

    /// See [`super::StateStore::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        let name = format!("{}{key}", self.prefix);
        // The library's futures are large: boxed, so that every state call's future is not.
        let read = Box::pin(self.objects.read_object(&self.bucket_path, &name).send()).await;
        let mut response = match read {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => {
                return if self.bucket_missing("GET", key).await? {
                    Err(self.missing_bucket())
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(self.library_error("GET", key, &e)),
        };
        self.bucket_seen.store(true, Ordering::Relaxed);
        let generation = response.object().generation;
        let mut content = Vec::new();
        while let Some(chunk) = Box::pin(response.next()).await {
            let chunk = chunk.map_err(|e| self.library_error("GET", key, &e))?;
            content.extend_from_slice(&chunk);
        }
        Ok(Some(Object {
            bytes: Bytes::from(content),
            version: Version(generation.to_string()),
        }))
    }

    /// Uploads `bytes` as `key` if the object's generation is `generation` (`0`: absent).
    async fn upload(
        &self,
        key: &str,
        bytes: Bytes,
        generation: i64,
    ) -> Result<Option<Version>, StateError> {
        let name = format!("{}{key}", self.prefix);
        // The checksum given up front: GCS verifies it, and the upload is one metadata part and
        // one content part (without it the library adds a trailing checksum part, which
        // fake-gcs-server stores as content).
        let checksum = crc32c::crc32c(&bytes);
        let written = Box::pin(
            self.objects
                .write_object(&self.bucket_path, &name, bytes)
                .with_known_crc32c(checksum)
                .set_if_generation_match(generation)
                .set_content_type("application/octet-stream")
                .send_unbuffered(),
        )
        .await;
        match written {
            Ok(object) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                Ok(Some(Version(object.generation.to_string())))
            }
            Err(e) if e.http_status_code() == Some(412) => {
                tracing::debug!(store = %self.url, key, "conditional write lost");
                Ok(None)
            }
            Err(e) if e.http_status_code() == Some(404) => {
                if self.bucket_missing("PUT", key).await? {
                    Err(self.missing_bucket())
                } else if generation != 0 {
                    // The object vanished.
                    Ok(None)
                } else {
                    Err(self.library_error("PUT", key, &e))
                }
            }
            Err(e) => Err(self.library_error("PUT", key, &e)),
        }
    }

    /// See [`super::StateStore::create`].
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Option<Version>, StateError> {
        self.upload(key, bytes, 0).await
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
        match expected.0.parse::<i64>() {
            Ok(generation) if generation > 0 && expected.0.bytes().all(|b| b.is_ascii_digit()) => {
                self.upload(key, bytes, generation).await
            }
            _ => Ok(None),
        }
    }

    /// See [`super::StateStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let names = self
            .json
            .list(&full_prefix)
            .await
            .map_err(|e| self.json_error("LIST", prefix, e))?;
        self.bucket_seen.store(true, Ordering::Relaxed);
        let mut keys: Vec<String> = names
            .iter()
            .filter(|name| name.starts_with(&full_prefix))
            .filter_map(|name| name.strip_prefix(&self.prefix))
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// See [`super::StateStore::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        let name = format!("{}{key}", self.prefix);
        match self.json.delete(&name).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                if self.bucket_missing("DELETE", key).await? {
                    Err(self.missing_bucket())
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(self.json_error("DELETE", key, e)),
        }
    }
}

/// `host:port` as `http://host:port`; a URL as it is; no trailing `/`.
fn endpoint_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_without_scheme_is_http() {
        assert_eq!(endpoint_url("127.0.0.1:4443/"), "http://127.0.0.1:4443");
        assert_eq!(endpoint_url("https://gcs.example/"), "https://gcs.example");
        let store = GcsStore::with_endpoint("127.0.0.1:4443/", "bucket/some/prefix/")
            .await
            .expect("store");
        assert_eq!(store.url(), "gs://bucket/some/prefix");
        assert_eq!(store.bucket_path, "projects/_/buckets/bucket");
        assert_eq!(store.prefix, "some/prefix/");
    }
}
