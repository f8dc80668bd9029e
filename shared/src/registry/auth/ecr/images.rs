//! An ECR repository's inventory through the ECR API: `DescribeImages`, paginated at 1,000
//! images a call, names every digest of the repository with its tags and media type, untagged
//! digests included, which the registry API's `tags/list` cannot. Reconcile reads ECR
//! production this way: one call per 1,000 images instead of a `HEAD` per tag.

use super::{EcrCredentials, EcrError, parse_host};
use crate::error_chain::error_chain;

/// Images per `DescribeImages` call (ECR's largest page).
const PAGE: i32 = 1_000;

/// Most pages read (ECR allows 100,000 images per repository by default: 100 pages).
const MAX_PAGES: usize = 1_000;

/// One image of an ECR repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrImage {
    /// Its digest (`sha256:…`).
    pub digest: String,
    /// Its tags (none when untagged).
    pub tags: Vec<String>,
    /// The manifest's media type, when ECR gives it.
    pub media_type: Option<String>,
}

impl EcrCredentials {
    /// Every image of repository `name` on ECR host `host`; `None` when the repository does
    /// not exist.
    pub async fn describe_images(
        &self,
        host: &str,
        name: &str,
    ) -> Result<Option<Vec<EcrImage>>, EcrError> {
        let config = self.config().await;
        let (region, fips) = self.region_of(config, host)?;
        let client = self.client(config, &region, fips);
        let failed = |reason: String| EcrError::Repository {
            host: host.to_owned(),
            name: name.to_owned(),
            action: "DescribeImages",
            reason,
        };
        let mut pages = client
            .describe_images()
            .repository_name(name)
            .set_registry_id(parse_host(host).map(|h| h.account))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut images = Vec::new();
        let mut read = 0;
        while let Some(page) = pages.next().await {
            let output = match page {
                Ok(output) => output,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_repository_not_found_exception()) =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(failed(error_chain(&error))),
            };
            read += 1;
            if read > MAX_PAGES {
                return Err(failed(format!("more than {MAX_PAGES} pages of images")));
            }
            images.extend(output.image_details().iter().filter_map(|detail| {
                Some(EcrImage {
                    digest: detail.image_digest()?.to_owned(),
                    tags: detail.image_tags().to_vec(),
                    media_type: detail.image_manifest_media_type().map(str::to_owned),
                })
            }));
        }
        Ok(Some(images))
    }
}
