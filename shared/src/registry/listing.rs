//! Listing what a registry holds: a repository's tags (and, from Google's registries, every
//! digest with its tags and media type, and the repositories below it), and the registry's
//! catalog of repositories.
//!
//! Both answers are paginated (`n`, `Link: <…>; rel="next"`) and read with the same bounds:
//! each page at most [`limits::TAG_PAGE`] bytes, at most [`limits::TAG_PAGES`] pages, and a
//! `Link` naming a page already read ends the listing with an error.
//!
//! Google Container Registry and Artifact Registry extend `tags/list` with `manifest` (digest →
//! `tag`, `mediaType`, …) and `child` (the repositories one level below), which list untagged
//! digests too; CNCF distribution answers `tags` only, and has no way to list untagged ones.

use std::collections::{BTreeMap, HashSet};

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Client, Target, describe, status_error};
use super::error::RegistryError;
use crate::http::{self, limits};
use crate::reference::{Digest, Repository, Tag};

/// What `tags/list` says about one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositoryListing {
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Google's extension: every digest, its tags and media type (empty elsewhere).
    pub manifests: BTreeMap<Digest, ListedManifest>,
    /// Google's extension: the names of the repositories one level below.
    pub children: Vec<String>,
    /// `manifests` names every digest of the repository, untagged ones included (Google's
    /// listings and ECR's inventory); false where only tags are known.
    pub complete: bool,
}

/// One digest of a Google `tags/list` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedManifest {
    /// Its tags (none when untagged).
    pub tags: Vec<Tag>,
    /// Its media type, when given.
    pub media_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct TagListPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    manifest: Option<BTreeMap<String, GoogleManifest>>,
    #[serde(default)]
    child: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct GoogleManifest {
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Client {
    /// Every tag of `repository`; empty when it does not exist. A listed name that is not a
    /// valid tag (no registry following the specification holds one) is skipped.
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<Tag>, RegistryError> {
        Ok(self.list_repository(repository).await?.tags)
    }

    /// Everything `tags/list` says about `repository`, all pages merged; empty when it does
    /// not exist.
    pub async fn list_repository(
        &self,
        repository: &Repository,
    ) -> Result<RepositoryListing, RegistryError> {
        let first = format!(
            "{}{}/tags/list?n=1000",
            self.base_url(repository.host()),
            repository.path()
        );
        let mut listing = RepositoryListing::default();
        self.pages(repository, first, |page: TagListPage| {
            for name in page.tags.unwrap_or_default() {
                if let Some(tag) = valid_tag(repository, &name) {
                    listing.tags.push(tag);
                }
            }
            listing.complete |= page.manifest.is_some();
            for (digest, manifest) in page.manifest.unwrap_or_default() {
                let Ok(digest) = digest.parse::<Digest>() else {
                    tracing::debug!(%repository, digest, "skipping a listed digest");
                    continue;
                };
                let entry = listing.manifests.entry(digest).or_default();
                entry.media_type = manifest.media_type;
                entry.tags.extend(
                    manifest
                        .tag
                        .iter()
                        .filter_map(|name| valid_tag(repository, name)),
                );
            }
            listing.children.extend(page.child.unwrap_or_default());
        })
        .await?;
        Ok(listing)
    }

    /// The inventory of `repository` from ECR's API (`DescribeImages`: every digest with its
    /// tags and media type, untagged ones included) when its host is an ECR host; `None` for
    /// other hosts, whose inventory is [`Client::list_repository`].
    pub async fn ecr_inventory(
        &self,
        repository: &Repository,
    ) -> Result<Option<RepositoryListing>, RegistryError> {
        let Some(images) = self.auth().ecr_images(repository).await? else {
            return Ok(None);
        };
        let mut listing = RepositoryListing {
            complete: true,
            ..RepositoryListing::default()
        };
        for image in images {
            let Ok(digest) = image.digest.parse::<Digest>() else {
                tracing::debug!(%repository, digest = image.digest, "skipping a listed digest");
                continue;
            };
            let tags: Vec<Tag> = image
                .tags
                .iter()
                .filter_map(|name| valid_tag(repository, name))
                .collect();
            listing.tags.extend(tags.iter().cloned());
            let entry = listing.manifests.entry(digest).or_default();
            entry.media_type = image.media_type;
            entry.tags.extend(tags);
        }
        Ok(Some(listing))
    }

    /// The repositories of `host` whose path is `prefix` or below it (`/v2/_catalog`), sorted.
    /// `within` names a repository under the prefix for the request's credentials (catalog
    /// access is granted per registry; a registry that refuses it answers an error).
    pub async fn catalog(
        &self,
        within: &Repository,
        prefix: &str,
    ) -> Result<Vec<Repository>, RegistryError> {
        let host = within.host();
        let first = format!("{}_catalog?n=1000", self.base_url(host));
        let prefix = prefix.trim_matches('/');
        let mut names = Vec::new();
        self.pages(within, first, |page: CatalogPage| {
            names.extend(page.repositories.unwrap_or_default());
        })
        .await?;
        let mut repositories: Vec<Repository> = names
            .into_iter()
            .filter(|name| {
                prefix.is_empty()
                    || name == prefix
                    || name
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .filter_map(|name| format!("{host}/{name}").parse().ok())
            .collect();
        repositories.sort();
        Ok(repositories)
    }

    /// Reads a paginated listing from `url` on, handing each page to `page`; a 404 on the first
    /// page is an empty listing.
    async fn pages<P: serde::de::DeserializeOwned>(
        &self,
        repository: &Repository,
        first: String,
        mut page: impl FnMut(P),
    ) -> Result<(), RegistryError> {
        let target = Target {
            repository,
            push: false,
            mount_from: None,
        };
        let mut url = first;
        let mut seen = HashSet::new();
        loop {
            let what = || describe(&Method::GET, &url);
            if !seen.insert(url.clone()) || seen.len() > limits::TAG_PAGES {
                return Err(RegistryError::Pagination {
                    what: what(),
                    reason: format!(
                        "the listing does not end (a page repeats, or more than {} pages)",
                        limits::TAG_PAGES
                    ),
                });
            }
            let response = self.send(&target, &what, &|http| http.get(&url)).await?;
            if response.status() == StatusCode::NOT_FOUND && seen.len() == 1 {
                return Ok(());
            }
            if !response.status().is_success() {
                return Err(status_error(what(), response).await);
            }
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body: P = http::read_json(response, limits::TAG_PAGE)
                .await
                .map_err(|source| RegistryError::Body {
                    what: what(),
                    source,
                })?;
            page(body);
            match next {
                Some(next) => url = self.resolve_location(repository.host(), &next, &what)?,
                None => return Ok(()),
            }
        }
    }
}

/// `name` as a tag, or `None` (logged) when it is not one.
fn valid_tag(repository: &Repository, name: &str) -> Option<Tag> {
    match name.parse::<Tag>() {
        Ok(tag) => Some(tag),
        Err(error) => {
            tracing::debug!(%repository, name, %error, "skipping a listed tag");
            None
        }
    }
}

/// The URL of a `Link: <URL>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(url, _)| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_pages_list_untagged_digests_and_children() {
        let page: TagListPage = serde_json::from_str(
            r#"{"child":["sub"],"manifest":{"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
                {"imageSizeBytes":"1","layerId":"","mediaType":"application/vnd.oci.image.index.v1+json",
                 "tag":["v1","latest"],"timeCreatedMs":"0","timeUploadedMs":"0"}},
                "name":"p/app","tags":["latest","v1"]}"#,
        )
        .expect("a Google answer");
        assert_eq!(page.child, Some(vec!["sub".to_owned()]));
        let manifests = page.manifest.expect("manifests");
        let (_, m) = manifests.iter().next().expect("one");
        assert_eq!(m.tag, ["v1", "latest"]);
        assert!(
            m.media_type
                .as_deref()
                .is_some_and(|t| t.ends_with("index.v1+json"))
        );
    }

    #[test]
    fn next_links_are_read() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link("nonsense"), None);
    }
}
