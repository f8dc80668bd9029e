//! Manifests: HEAD, GET and PUT by tag or digest, with exact bytes and Content-Type.

use crate::reference::{Digest, Reference, Repository, Tag};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::client::{Client, Target, describe, status_error};
use super::error::RegistryError;
use crate::http::{self, limits};

/// Manifest media types the promoter copies.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
}

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest exactly as the registry served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The `Content-Type` it was served with, sent back unchanged on PUT.
    pub media_type: String,
    /// The exact bytes (the digest is computed over these).
    pub bytes: Bytes,
    /// The digest of the bytes.
    pub digest: Digest,
}

/// The children an index lists; anything else in the manifest is ignored.
#[derive(serde::Deserialize)]
struct IndexLinks {
    #[serde(default)]
    manifests: Vec<Link>,
}

#[derive(serde::Deserialize)]
struct Link {
    digest: Digest,
}

impl Manifest {
    /// The digests an index lists (none for an image manifest, or bytes that do not parse).
    pub fn index_children(&self) -> Vec<Digest> {
        serde_json::from_slice::<IndexLinks>(&self.bytes)
            .map(|links| links.manifests.into_iter().map(|l| l.digest).collect())
            .unwrap_or_default()
    }
}

/// What a manifest HEAD tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when the registry sends a valid one.
    pub digest: Option<Digest>,
    /// `Content-Type`.
    pub media_type: Option<String>,
}

impl Client {
    /// HEADs a manifest; `None` when absent.
    pub async fn manifest_head(
        &self,
        repository: &Repository,
        reference: impl Into<Reference>,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let reference = reference.into();
        let url = self.url(repository, "manifests", reference.as_str());
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let what = || describe(&Method::HEAD, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.head(&url).header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Ok(Some(ManifestHead {
                    digest: header("docker-content-digest").and_then(|d| d.parse().ok()),
                    media_type: header(CONTENT_TYPE.as_str()),
                }))
            }
            _ => Err(status_error(what(), response).await),
        }
    }

    /// The digest `tag` points at in `repository`, or `None` when absent.
    ///
    /// Uses HEAD, and GET when the registry sends no (valid) `Docker-Content-Digest`.
    pub async fn resolve(
        &self,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<Digest>, RegistryError> {
        match self.manifest_head(repository, tag).await? {
            None => Ok(None),
            Some(ManifestHead {
                digest: Some(digest),
                ..
            }) => Ok(Some(digest)),
            Some(_) => Ok(self.manifest_get(repository, tag).await?.map(|m| m.digest)),
        }
    }

    /// GETs a manifest, exact bytes and Content-Type; `None` when absent. A manifest fetched
    /// by digest is verified against it.
    pub async fn manifest_get(
        &self,
        repository: &Repository,
        reference: impl Into<Reference>,
    ) -> Result<Option<Manifest>, RegistryError> {
        let reference = reference.into();
        let url = self.url(repository, "manifests", reference.as_str());
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let what = || describe(&Method::GET, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.get(&url).header(ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(what(), response).await);
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::MissingHeader {
                what: what(),
                header: "Content-Type",
            })?;
        let bytes = http::read_capped(response, limits::MANIFEST)
            .await
            .map_err(|source| RegistryError::Body {
                what: what(),
                source,
            })?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = reference.digest()
            && digest != *expected
        {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(Some(Manifest {
            media_type,
            bytes,
            digest,
        }))
    }

    /// PUTs `manifest` under `reference` (its digest, or a tag), exact bytes and Content-Type.
    pub async fn manifest_put(
        &self,
        repository: &Repository,
        reference: impl Into<Reference>,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        let reference = reference.into();
        let url = self.url(repository, "manifests", reference.as_str());
        let target = Target {
            repository,
            push: true,
            mount_from: None,
        };
        let what = || describe(&Method::PUT, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.put(&url)
                    .header(CONTENT_TYPE, &manifest.media_type)
                    .header(CONTENT_LENGTH, manifest.bytes.len())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(what(), response).await);
        }
        if let Some(got) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && got != manifest.digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: manifest.digest.to_string(),
                actual: got.to_owned(),
            });
        }
        Ok(())
    }
}

impl Client {
    /// The referrers of `digest` through the OCI 1.1 referrers API (an image index), or `None`
    /// when the registry does not offer the API (distribution 2.8 answers 404).
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<Manifest>, RegistryError> {
        let url = self.url(repository, "referrers", digest.as_str());
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let what = || describe(&Method::GET, &url);
        let response = self
            .send(&target, &what, &|http| {
                http.get(&url).header(ACCEPT, media_type::OCI_INDEX)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND
            || status == StatusCode::METHOD_NOT_ALLOWED
            || status == StatusCode::BAD_REQUEST
        {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(what(), response).await);
        }
        let bytes = http::read_capped(response, limits::MANIFEST)
            .await
            .map_err(|source| RegistryError::Body {
                what: what(),
                source,
            })?;
        Ok(Some(Manifest {
            media_type: media_type::OCI_INDEX.to_owned(),
            digest: Digest::of(&bytes),
            bytes,
        }))
    }
}
