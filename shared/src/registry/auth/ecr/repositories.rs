//! ECR repositories created before the first push, as AWS users expect of a promoter.
//!
//! Unlike Google's registries and CNCF distribution, ECR does not create a repository on push:
//! a push to a repository that does not exist fails (`NAME_UNKNOWN`). So before the first write
//! to a repository of an ECR host, [`EcrCredentials::ensure_repository`] asks
//! `DescribeRepositories` for it and, when ECR answers `RepositoryNotFoundException`, calls
//! `CreateRepository` with the configured [`RepositorySettings`]: tag immutability `IMMUTABLE`
//! by default (production tags never move; a push that finds a tag taken is then refused by ECR
//! too) and scan-on-push as configured. Another worker creating it at the same time
//! (`RepositoryAlreadyExistsException`) is success. A repository found or created is
//! remembered for the life of the process, so each costs one call per process. The SDK's
//! standard retry mode retries `ThrottlingException` with backoff.

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};

use super::{EcrCredentials, EcrError, parse_host};

/// How a missing ECR repository is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Tags may not be moved once pushed (`IMMUTABLE`), the default.
    pub immutable_tags: bool,
    /// Each pushed image is scanned (basic scanning).
    pub scan_on_push: bool,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            immutable_tags: true,
            scan_on_push: false,
        }
    }
}

impl EcrCredentials {
    /// Creates missing repositories with `settings` (see the module's docs).
    #[must_use]
    pub fn creating_repositories(mut self, settings: RepositorySettings) -> Self {
        self.repository_settings = settings;
        self
    }

    /// Makes sure repository `name` of ECR host `host` exists, creating it when it does not;
    /// returns true when this call created it.
    pub async fn ensure_repository(&self, host: &str, name: &str) -> Result<bool, EcrError> {
        let key = (host.to_ascii_lowercase(), name.to_owned());
        if self.known_repositories().contains(&key) {
            return Ok(false);
        }
        let config = self.config().await;
        let (region, fips) = self.region_of(config, host)?;
        let client = self.client(config, &region, fips);
        // The account a host names; an extra host (a VPC endpoint) is the caller's own.
        let registry_id = parse_host(host).map(|h| h.account);
        let failed = |action: &'static str, source: String| EcrError::Repository {
            host: host.to_owned(),
            name: name.to_owned(),
            action,
            reason: source,
        };
        let described = client
            .describe_repositories()
            .repository_names(name)
            .set_registry_id(registry_id.clone())
            .send()
            .await;
        let created = match described {
            Ok(_) => false,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) =>
            {
                let mutability = if self.repository_settings.immutable_tags {
                    ImageTagMutability::Immutable
                } else {
                    ImageTagMutability::Mutable
                };
                let scanning = ImageScanningConfiguration::builder()
                    .scan_on_push(self.repository_settings.scan_on_push)
                    .build();
                let answer = client
                    .create_repository()
                    .repository_name(name)
                    .set_registry_id(registry_id)
                    .image_tag_mutability(mutability)
                    .image_scanning_configuration(scanning)
                    .send()
                    .await;
                match answer {
                    Ok(_) => {
                        tracing::info!(host, repository = name, "created the ECR repository");
                        true
                    }
                    Err(error)
                        if error
                            .as_service_error()
                            .is_some_and(|e| e.is_repository_already_exists_exception()) =>
                    {
                        false
                    }
                    Err(error) => {
                        return Err(failed(
                            "CreateRepository",
                            crate::error_chain::error_chain(&error),
                        ));
                    }
                }
            }
            Err(error) => {
                return Err(failed(
                    "DescribeRepositories",
                    crate::error_chain::error_chain(&error),
                ));
            }
        };
        self.known_repositories().insert(key);
        Ok(created)
    }

    fn known_repositories(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String)>> {
        self.repositories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
