//! The promoter's configuration: every `PROMOTER_*` setting in one type, and the one place that
//! builds what the steps use from it.
//!
//! A Lambda function fills [`Config`] from its environment ([`Config::from_env`]); the CLI fills
//! it from its command line, whose options read the same variables (clap's `env`). Either way
//! [`Deps::build`] is the only builder of the state store, the registry client, the signer,
//! the queues and the notifier, so a setting means the same everywhere.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http::Timeouts;
use crate::notify::Notifier;
use crate::plan::incremental::Needs;
use crate::queue::{MemoryQueue, Queue, SqsQueue};
use crate::registry::auth::docker_config::DockerConfig;
use crate::registry::auth::ecr::{EcrCredentials, RepositorySettings};
use crate::registry::auth::google::GoogleCredentials;
use crate::registry::auth::session::CredentialSources;
use crate::registry::limits::LimitConfig;
use crate::registry::{Client, ClientConfig};
use crate::sign::keys::VerifyingKey;
use crate::sign::{KeySource, SignatureFormat, Signer};
use crate::state::StateStore;

use super::deps::{Deps, Queues, Settings};
use super::error::StepError;

/// Everything the promoter is configured with.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Where state lives (`PROMOTER_STATE`): `memory://`, a folder or `file:///path`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`.
    pub state: String,
    /// How registries are reached.
    pub registries: RegistryConfig,
    /// Signing and the staging signature policy.
    pub signing: SigningConfig,
    /// The queues between the steps.
    pub queues: QueueUrls,
    /// The steps' plain settings.
    pub settings: Settings,
    /// How long HTTP requests may take (`PROMOTER_REQUEST_TIMEOUT`, seconds, for the
    /// whole-exchange deadline): registries, token endpoints and GitHub.
    pub timeouts: Timeouts,
}

/// How registries are reached.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Hosts spoken to over plain HTTP (`PROMOTER_INSECURE_REGISTRIES`; loopback always is).
    pub insecure_hosts: Vec<String>,
    /// ECR hosts whose credentials come from AWS (`PROMOTER_ECR_REGISTRIES`; `*.amazonaws.com`
    /// always do).
    pub ecr_registries: Vec<String>,
    /// Google hosts whose credentials come from Google's ADC (`PROMOTER_GOOGLE_REGISTRIES`;
    /// `gcr.io` and `*-docker.pkg.dev` always do).
    pub google_registries: Vec<String>,
    /// Requests in flight per registry host at most (`PROMOTER_MAX_CONCURRENT_REQUESTS`).
    pub max_concurrent_requests: usize,
    /// Requests per second per registry host at most (`PROMOTER_MAX_REQUESTS_PER_SECOND`).
    pub max_requests_per_second: Option<NonZeroU32>,
    /// How missing ECR repositories are created (`PROMOTER_ECR_TAG_MUTABILITY`,
    /// `PROMOTER_ECR_SCAN_ON_PUSH`; see [`ecr_repository_settings`]).
    pub ecr_repositories: RepositorySettings,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_hosts: Vec::new(),
            ecr_registries: Vec::new(),
            google_registries: Vec::new(),
            ecr_repositories: RepositorySettings::default(),
            max_concurrent_requests: LimitConfig::default().concurrency,
            max_requests_per_second: None,
        }
    }
}

/// Signing, and the signature staging digests must carry.
#[derive(Clone, Debug, Default)]
pub struct SigningConfig {
    /// The signing key (`PROMOTER_SIGN_KEY`): a key file or `awskms:///KEY`; none: no signing.
    pub key: Option<String>,
    /// `PREFIX=CANONICAL` names signed instead of the destination's (`PROMOTER_SIGN_IDENTITIES`).
    pub identities: Vec<(String, String)>,
    /// Sign each child of an index too (`PROMOTER_SIGN_INDEX_CHILDREN`).
    pub index_children: bool,
    /// The signature formats written (`PROMOTER_SIGNATURE_FORMAT`: bundle, legacy, both).
    pub format: SignatureFormat,
    /// Leave out the promotion record and verification summary (`PROMOTER_NO_ATTESTATIONS`).
    pub no_attestations: bool,
    /// A maintainer's public key every staging digest must be signed with
    /// (`PROMOTER_REQUIRE_SIGNATURE`).
    pub require_signature: Option<PathBuf>,
}

/// SQS queue URLs between the steps; an unset one is a queue in this process.
#[derive(Clone, Debug, Default)]
pub struct QueueUrls {
    /// validate-manifest → copy-digest (`PROMOTER_COPY_QUEUE_URL`).
    pub copy: Option<String>,
    /// copy-digest → sign (`PROMOTER_SIGN_QUEUE_URL`).
    pub sign: Option<String>,
    /// → notify (`PROMOTER_NOTIFY_QUEUE_URL`).
    pub notify: Option<String>,
}

/// How missing ECR repositories are created, from the environment: `PROMOTER_ECR_TAG_MUTABILITY`
/// (`IMMUTABLE`, the default: production tags never move, or `MUTABLE`) and
/// `PROMOTER_ECR_SCAN_ON_PUSH` (`true` scans each pushed image; default off).
pub fn ecr_repository_settings() -> Result<RepositorySettings, StepError> {
    let immutable_tags = match var("PROMOTER_ECR_TAG_MUTABILITY").as_deref() {
        None | Some("IMMUTABLE") => true,
        Some("MUTABLE") => false,
        Some(other) => {
            return Err(config_error(
                "PROMOTER_ECR_TAG_MUTABILITY",
                format!("{other:?} is neither IMMUTABLE nor MUTABLE"),
            ));
        }
    };
    Ok(RepositorySettings {
        immutable_tags,
        scan_on_push: var("PROMOTER_ECR_SCAN_ON_PUSH").is_some_and(|v| v == "true" || v == "1"),
    })
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn number<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, StepError>
where
    T::Err: std::fmt::Display,
{
    var(name)
        .map(|v| v.trim().parse::<T>().map_err(|e| config_error(name, e)))
        .transpose()
}

pub(super) fn config_error(variable: &'static str, reason: impl ToString) -> StepError {
    StepError::Config {
        variable,
        reason: reason.to_string(),
    }
}

/// Reads `PREFIX=CANONICAL`.
pub fn parse_identity(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((prefix, canonical)) if !prefix.is_empty() && !canonical.is_empty() => Ok((
            prefix.trim_end_matches('/').to_owned(),
            canonical.trim_end_matches('/').to_owned(),
        )),
        _ => Err(format!("{pair:?} is not PREFIX=CANONICAL")),
    }
}

impl Config {
    /// Reads every `PROMOTER_*` variable (see each field). Without `PROMOTER_STATE`, state is
    /// the folder `.promoter`, except under Lambda, whose working folder is read-only and lost.
    pub fn from_env() -> Result<Config, StepError> {
        let state = match var("PROMOTER_STATE") {
            Some(url) => url,
            None if var("AWS_LAMBDA_FUNCTION_NAME").is_some() => {
                return Err(config_error(
                    "PROMOTER_STATE",
                    "not set; a function keeps its state in s3://BUCKET/PREFIX or gs://BUCKET/PREFIX",
                ));
            }
            None => ".promoter".to_owned(),
        };
        let defaults = RegistryConfig::default();
        let registries = RegistryConfig {
            insecure_hosts: list("PROMOTER_INSECURE_REGISTRIES"),
            ecr_registries: list("PROMOTER_ECR_REGISTRIES"),
            google_registries: list("PROMOTER_GOOGLE_REGISTRIES"),
            max_concurrent_requests: number("PROMOTER_MAX_CONCURRENT_REQUESTS")?
                .unwrap_or(defaults.max_concurrent_requests),
            max_requests_per_second: number::<u32>("PROMOTER_MAX_REQUESTS_PER_SECOND")?
                .and_then(NonZeroU32::new),
            ecr_repositories: ecr_repository_settings()?,
        };
        let identities = list("PROMOTER_SIGN_IDENTITIES")
            .iter()
            .map(|pair| {
                parse_identity(pair).map_err(|e| config_error("PROMOTER_SIGN_IDENTITIES", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing = SigningConfig {
            key: var("PROMOTER_SIGN_KEY"),
            identities,
            index_children: var("PROMOTER_SIGN_INDEX_CHILDREN")
                .is_some_and(|v| v == "true" || v == "1"),
            require_signature: var("PROMOTER_REQUIRE_SIGNATURE").map(PathBuf::from),
            format: var("PROMOTER_SIGNATURE_FORMAT")
                .map(|v| v.parse())
                .transpose()
                .map_err(|e: String| config_error("PROMOTER_SIGNATURE_FORMAT", e))?
                .unwrap_or_default(),
            no_attestations: var("PROMOTER_NO_ATTESTATIONS")
                .is_some_and(|v| v == "true" || v == "1"),
        };
        let queues = QueueUrls {
            copy: var("PROMOTER_COPY_QUEUE_URL"),
            sign: var("PROMOTER_SIGN_QUEUE_URL"),
            notify: var("PROMOTER_NOTIFY_QUEUE_URL"),
        };
        let timeouts = number::<u64>("PROMOTER_REQUEST_TIMEOUT")?
            .map_or_else(Timeouts::default, |seconds| {
                Timeouts::with_request(Duration::from_secs(seconds.max(1)))
            });
        Ok(Config {
            state,
            registries,
            signing,
            queues,
            settings: settings_from_env()?,
            timeouts,
        })
    }
}

/// Plain settings from `PROMOTER_*` variables.
pub fn settings_from_env() -> Result<Settings, StepError> {
    let defaults = Settings::default();
    let lease_ttl = number::<u64>("PROMOTER_LEASE_SECONDS")?
        .map_or(defaults.lease_ttl, |s| Duration::from_secs(s.max(3)));
    Ok(Settings {
        branch: var("PROMOTER_BRANCH").unwrap_or(defaults.branch),
        github_webhook_secret: var("PROMOTER_GITHUB_WEBHOOK_SECRET"),
        github_api: var("PROMOTER_GITHUB_API")
            .map(|v| v.trim_end_matches('/').to_owned())
            .unwrap_or(defaults.github_api),
        github_token: var("PROMOTER_GITHUB_TOKEN"),
        manifests_dir: var("PROMOTER_MANIFESTS_DIR").unwrap_or_default(),
        audit_token: var("PROMOTER_AUDIT_TOKEN"),
        lease_ttl,
        full: var("PROMOTER_FULL_RUNS").is_some_and(|v| matches!(v.as_str(), "1" | "true")),
        chain_signing: chain_signing(
            var("PROMOTER_CHAIN_SIGNS"),
            var("PROMOTER_SIGNATURE_FORMAT"),
            var("PROMOTER_NO_ATTESTATIONS"),
        )?,
    })
}

/// What the chain's signing adds to each digest, from `PROMOTER_CHAIN_SIGNS`,
/// `PROMOTER_SIGNATURE_FORMAT` and `PROMOTER_NO_ATTESTATIONS`; `None` unless the first is true.
pub fn chain_signing(
    chain_signs: Option<String>,
    format: Option<String>,
    no_attestations: Option<String>,
) -> Result<Option<Needs>, StepError> {
    let yes = |v: &Option<String>| v.as_deref().is_some_and(|v| v == "true" || v == "1");
    if !yes(&chain_signs) {
        return Ok(None);
    }
    let format: SignatureFormat = format
        .map(|v| v.parse())
        .transpose()
        .map_err(|e: String| config_error("PROMOTER_SIGNATURE_FORMAT", e))?
        .unwrap_or_default();
    Ok(Some(Needs {
        signature: true,
        attestations: format.bundle() && !yes(&no_attestations),
    }))
}

impl Deps {
    /// Builds everything the steps use from `config`: the one place where the state store,
    /// registry client, signer, queues and notifier are made.
    pub async fn build(config: &Config) -> Result<Deps, StepError> {
        let store = StateStore::open(&config.state).await?;
        let client = Arc::new(registry_client(&config.registries, &config.timeouts).await?);
        let queues = queues(&config.queues).await;
        let signer = signer(&config.signing).await?;
        let required_signature = match &config.signing.require_signature {
            Some(path) => Some(
                VerifyingKey::from_pem_file(path)
                    .map_err(|e| config_error("PROMOTER_REQUIRE_SIGNATURE", e))?,
            ),
            None => None,
        };
        let notifier = Notifier::from_env()
            .await
            .map_err(|e| config_error("PROMOTER_*_WEBHOOK/SNS", e))?;
        Ok(Deps {
            store,
            client,
            queues,
            signer,
            required_signature,
            notifier,
            settings: config.settings.clone(),
            http: github_http_client(&config.timeouts)?,
            runs: Default::default(),
        })
    }

    /// Builds everything from the environment ([`Config::from_env`]), as a function does.
    pub async fn from_env() -> Result<Deps, StepError> {
        Deps::build(&Config::from_env()?).await
    }
}

/// The HTTP client used for GitHub: the one transport ([`crate::http::client`]), whose
/// deadline (60 s by default) stays well below a function's timeout, so that a stalled GitHub
/// fails the step while it can still say so.
pub fn github_http_client(timeouts: &Timeouts) -> Result<reqwest::Client, StepError> {
    crate::http::client(timeouts).map_err(|e| config_error("HTTP client", e))
}

/// The registry client: Docker's config for credentials, plus ECR's and Google's.
pub async fn registry_client(
    config: &RegistryConfig,
    timeouts: &Timeouts,
) -> Result<Client, StepError> {
    let docker = DockerConfig::load().map_err(|e| config_error("DOCKER_CONFIG", e))?;
    let client_config = ClientConfig {
        insecure_hosts: config.insecure_hosts.clone(),
        limits: LimitConfig {
            concurrency: config.max_concurrent_requests.max(1),
            requests_per_second: config.max_requests_per_second,
        },
        timeouts: *timeouts,
        ..ClientConfig::default()
    };
    let sources = CredentialSources {
        docker,
        ecr: Some(
            EcrCredentials::from_env(config.ecr_registries.clone())
                .await
                .creating_repositories(config.ecr_repositories),
        ),
        google: Some(GoogleCredentials::from_env(
            config.google_registries.clone(),
        )),
        ..CredentialSources::default()
    };
    Client::new(client_config, sources).map_err(StepError::Registry)
}

/// The queues: SQS where a URL is given, in this process otherwise.
async fn queues(urls: &QueueUrls) -> Queues {
    let urls = [&urls.copy, &urls.sign, &urls.notify];
    let aws = if urls.iter().any(|u| u.is_some()) {
        Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    } else {
        None
    };
    let make = |url: &Option<String>| match (url, &aws) {
        (Some(url), Some(config)) => Queue::Sqs(Box::new(SqsQueue::new(config, url.clone()))),
        _ => Queue::Memory(MemoryQueue::default()),
    };
    Queues {
        copy: make(urls[0]),
        sign: make(urls[1]),
        notify: make(urls[2]),
    }
}

/// The signer, when a key is configured.
pub async fn signer(config: &SigningConfig) -> Result<Option<Arc<Signer>>, StepError> {
    let Some(reference) = &config.key else {
        return Ok(None);
    };
    let key = KeySource::open(reference).await?;
    Ok(Some(Arc::new(
        Signer::new(key, config.identities.clone())
            .await?
            .with_children(config.index_children)
            .with_format(config.format)
            .with_attestations(!config.no_attestations),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chains_signing_is_planned_for_only_when_said() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(chain_signing(None, some("both"), None).ok(), Some(None));
        assert_eq!(
            chain_signing(some("true"), None, None).ok(),
            Some(Some(Needs {
                signature: true,
                attestations: true
            }))
        );
        assert_eq!(
            chain_signing(some("true"), some("legacy"), None).ok(),
            Some(Some(Needs {
                signature: true,
                attestations: false
            }))
        );
        assert_eq!(
            chain_signing(some("1"), some("bundle"), some("true")).ok(),
            Some(Some(Needs {
                signature: true,
                attestations: false
            }))
        );
        assert!(chain_signing(some("true"), some("sigstore"), None).is_err());
    }
}
