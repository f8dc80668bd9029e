//! Blobs: existence checks, streaming downloads, cross-repository mounts and two-request
//! uploads (POST, then one streaming PUT with `?digest=`).

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::client::{Client, Target, describe, status_error};
use super::error::RegistryError;
use crate::reference::{Digest, Repository};

/// How a blob upload began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// The registry mounted the blob from another repository: nothing to upload.
    Mounted,
    /// An upload session to PUT the content to.
    Session(String),
}

/// A blob being downloaded.
pub struct Download {
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    /// The content, chunk by chunk.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>,
}

fn with_digest(url: &str, digest: &Digest) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}digest={digest}")
}

impl Client {
    /// True when `repository` holds blob `digest`.
    pub async fn blob_exists(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(repository, "blobs", digest.as_str());
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let what = || describe(&Method::HEAD, &url);
        let response = self.send(&target, &what, &|http| http.head(&url)).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(what(), response).await),
        }
    }

    /// Starts downloading blob `digest` (redirects to storage are followed).
    pub async fn blob_get(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Download, RegistryError> {
        let url = self.url(repository, "blobs", digest.as_str());
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let what = || describe(&Method::GET, &url);
        let transfer = self.transfer_timeout();
        let response = self
            .send(&target, &what, &|http| http.get(&url).timeout(transfer))
            .await?;
        if !response.status().is_success() {
            return Err(status_error(what(), response).await);
        }
        Ok(Download {
            length: response.content_length(),
            body: Box::pin(response.bytes_stream()),
        })
    }

    /// Starts an upload to `repository`, first trying to mount `digest` from the repository
    /// at path `from` of the same registry when given. A refused mount (202) starts an upload
    /// session.
    pub async fn upload_start(
        &self,
        repository: &Repository,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let mut url = format!(
            "{}{}/blobs/uploads/",
            self.base_url(repository.host()),
            repository.path()
        );
        if let Some((digest, from)) = mount {
            url.push_str(&format!("?mount={digest}&from={from}"));
        }
        let target = Target {
            repository,
            push: true,
            mount_from: mount.map(|(_, from)| from),
        };
        let what = || describe(&Method::POST, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| RegistryError::MissingHeader {
                        what: what(),
                        header: "Location",
                    })?;
                Ok(UploadStart::Session(self.resolve_location(
                    repository.host(),
                    location,
                    &what,
                )?))
            }
            _ => Err(status_error(what(), response).await),
        }
    }

    /// Finishes an upload session with one PUT carrying the whole content as a stream.
    ///
    /// Sent once: a stream cannot be replayed, so the caller retries the whole blob. When the
    /// stream ends in an error (the content did not match its digest), the request is aborted
    /// and the registry commits nothing.
    pub async fn upload_finish(
        &self,
        repository: &Repository,
        session: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), RegistryError> {
        let url = with_digest(session, digest);
        let target = Target {
            repository,
            push: true,
            mount_from: None,
        };
        let what = || describe(&Method::PUT, &url);
        let request = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .timeout(self.transfer_timeout())
            .body(body);
        let response = self.send_once(&target, request, &what).await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(status_error(what(), response).await);
        }
        Ok(())
    }

    /// Uploads a small blob held in memory (POST + PUT, retried as a whole).
    pub async fn upload_bytes(
        &self,
        repository: &Repository,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), RegistryError> {
        let UploadStart::Session(session) = self.upload_start(repository, None).await? else {
            return Ok(());
        };
        let url = with_digest(&session, digest);
        let target = Target {
            repository,
            push: true,
            mount_from: None,
        };
        let what = || describe(&Method::PUT, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.clone())
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND
            && self.blob_exists(repository, digest).await?
        {
            // A retried PUT on a session the first PUT completed (its answer was lost): the
            // registry forgot the session (404 BLOB_UPLOAD_UNKNOWN) but holds the blob.
            return Ok(());
        }
        if !response.status().is_success() {
            return Err(status_error(what(), response).await);
        }
        Ok(())
    }
}
